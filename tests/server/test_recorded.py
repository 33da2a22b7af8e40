"""The gateway fed by a fake Hyperliquid replaying real mainnet recordings
(tests/upstream/recorded.py): a raw client gets exactly the recorded values,
named as the gateway names them, nothing dropped and nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hlgateway.upstream.networks import Endpoint
from tests.helpers import Client, GatewayServer, eventually, make_settings, token
from tests.upstream.recorded import FILLS_USER, LEDGER_USER, RecordedUpstream


@pytest.fixture
async def recorded() -> AsyncIterator[RecordedUpstream]:
    fake = RecordedUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def gateway(recorded: RecordedUpstream) -> AsyncIterator[GatewayServer]:
    endpoint = Endpoint("recorded", recorded.ws_url, recorded.info_url)
    srv = GatewayServer(endpoint, make_settings())
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def trader(gateway: GatewayServer) -> AsyncIterator[Client]:
    client = await Client.connect(gateway.ws, token("trader", wallets=[FILLS_USER, LEDGER_USER]))
    await client.recv()
    yield client
    await client.close()


async def subscribe(client: Client, channel: str, **params: Any) -> dict[str, Any]:
    reply = await client.request({"type": "subscribe", "channel": channel, "params": params})
    assert reply["type"] == "subscribed", reply
    return reply


async def test_prices_of_recorded_perps_and_spot_pairs(
    recorded: RecordedUpstream, trader: Client
) -> None:
    reply = await subscribe(trader, "prices", symbols=["HYPE/USDC", "@107", "BTC", "kpepe"])
    assert reply["params"] == {"symbols": ["BTC", "HYPE/USDC", "kPEPE"]}
    msg = await trader.data("prices")
    mids = recorded.data.all_mids()
    assert {s: q["price"] for s, q in msg["data"].items()} == {
        "BTC": float(mids["BTC"]),  # 30135.0, July 2023
        "HYPE/USDC": float(mids["@107"]),  # 41.3315, November 2025
        "kPEPE": float(mids["kPEPE"]),
    }


async def test_context_candles_and_book_are_the_recorded_values(
    recorded: RecordedUpstream, trader: Client
) -> None:
    await subscribe(trader, "asset_context", symbol="@107")
    ctx = await trader.data("asset_context")
    hype = next(c for c in recorded.data.spot_ctxs if c["coin"] == "@107")
    data = ctx["data"]
    assert data["symbol"] == "HYPE/USDC"
    assert (data["markPrice"], data["midPrice"], data["prevDayPrice"]) == (
        float(hype["markPx"]),
        float(hype["midPx"]),
        float(hype["prevDayPx"]),
    )
    assert data["dayVolume"] == float(hype["dayNtlVlm"])
    assert data["circulatingSupply"] == float(hype["circulatingSupply"])

    await subscribe(trader, "candles", symbol="kPEPE", interval="1h")
    received: dict[int, dict[str, Any]] = {}
    while len(received) < len(recorded.data.candles):
        msg = await trader.data("candles")
        assert msg["data"]["symbol"] == "kPEPE" and msg["data"]["interval"] == "1h"
        received.update({c["t"]: c for c in msg["data"]["candles"]})
    for row in recorded.data.candles:
        candle = received[row["t"]]
        assert (candle["T"], candle["trades"]) == (row["T"], row["n"])
        assert [candle[k] for k in ("open", "high", "low", "close", "volume")] == [
            float(row[k]) for k in ("o", "h", "l", "c", "v")
        ]

    await subscribe(trader, "orderbook", symbol="DYDX", depth=50)
    book = await trader.data("orderbook")
    levels = recorded.data.book["levels"]
    assert book["data"]["bids"] == [[float(lv["px"]), float(lv["sz"])] for lv in levels[0]]
    assert book["data"]["asks"] == [[float(lv["px"]), float(lv["sz"])] for lv in levels[1]]


async def test_recorded_fills_and_ledger_arrive_once_and_exact(
    recorded: RecordedUpstream, trader: Client
) -> None:
    fills_reply = await subscribe(trader, "user_fills", userId="trader")
    ledger_reply = await subscribe(trader, "user_ledger", userId="trader")
    assert fills_reply["offset"] == 0 and ledger_reply["offset"] == 0
    await eventually(
        lambda: (
            recorded.subscribed("userFills", FILLS_USER)
            and recorded.subscribed("userFundings", FILLS_USER)
            and recorded.subscribed("userNonFundingLedgerUpdates", LEDGER_USER)
        )
    )
    await recorded.replay()

    data = recorded.data
    want_fills = len(data.fills)
    want_events = len(data.funding) + len(data.ledger)
    fills: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    while len(fills) < want_fills or len(events) < want_events:
        msg = await trader.recv_until(lambda m: m.get("type") == "data")
        if msg["channel"] == "user_fills":
            fills += msg["data"]["fills"]
        elif msg["channel"] == "user_ledger":
            events += msg["data"]["events"]
    assert len(fills) == want_fills and len({f["id"] for f in fills}) == want_fills
    assert len(events) == want_events and len({e["id"] for e in events}) == want_events

    by_key = {(f["hash"], f["orderId"], f["timestamp"], f["size"], f["price"]): f for f in fills}
    for row in data.fills:
        fill = by_key[(row["hash"], row["oid"], row["time"], float(row["sz"]), float(row["px"]))]
        assert fill["symbol"] == row["coin"] and fill["wallet"] == FILLS_USER
        assert fill["fee"] == float(row["fee"]) and fill["closedPnl"] == float(row["closedPnl"])
        assert fill["direction"] == row["dir"] and fill["crossed"] is row["crossed"]
        assert fill["startPosition"] == float(row["startPosition"])

    ledger = {e["id"]: e for e in events}
    for row in data.ledger:
        event = ledger[f"{row['hash']}:{row['delta']['type']}"]
        assert event["raw"] == row["delta"] and event["time"] == row["time"]
        assert event["wallet"] == LEDGER_USER
    for row in data.funding:
        event = ledger[f"funding:{row['delta']['coin']}:{row['time']}"]
        assert event["amount"] == float(row["delta"]["usdc"]) and event["wallet"] == FILLS_USER
        assert event["rate"] == float(row["delta"]["fundingRate"])
        assert event["size"] == float(row["delta"]["szi"])

"""Every kind of market, end to end: simulator -> upstream -> hub -> sockets.

Spot pairs by `BASE/QUOTE` and `@N`, builder-dex perps, the new channels
(`candles`, `bbo`, `asset_context`, `user_ledger`), complete fills, and
`GET /api/markets`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hlgateway.simulator import Simulator
from tests.conftest import FAST_SIM, sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    Client,
    GatewayServer,
    alice_token,
    eventually,
    make_settings,
)

# Cashflows often enough that a test sees each kind.
CASHFLOW_SIM = dataclasses.replace(
    FAST_SIM, funding_interval=1.0, transfer_interval=0.7, liquidation_interval=4.0
)


@pytest.fixture
async def cashflow_server() -> AsyncIterator[GatewayServer]:
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    srv = GatewayServer(sim_endpoint(sim), make_settings())
    await srv.start()
    yield srv
    await srv.stop()
    await sim.stop()


@pytest.fixture
async def alice(server: GatewayServer) -> AsyncIterator[Client]:
    client = await Client.connect(server.ws, alice_token())
    await client.recv()
    yield client
    await client.close()


async def subscribe(client: Client, channel: str, **params: Any) -> dict[str, Any]:
    reply = await client.request({"type": "subscribe", "channel": channel, "params": params})
    assert reply["type"] == "subscribed", reply
    return reply


async def refused(client: Client, channel: str, **params: Any) -> dict[str, Any]:
    reply = await client.request({"type": "subscribe", "channel": channel, "params": params})
    assert reply["type"] == "error", reply
    return reply


async def test_markets_api_lists_every_kind(server: GatewayServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.http + "/api/markets") as resp:
        assert resp.status == 200
        body = await resp.json()
    by_symbol = {m["symbol"]: m for m in body["markets"]}
    assert by_symbol["BTC"] == {
        "symbol": "BTC",
        "kind": "perp",
        "dex": "",
        "szDecimals": 5,
        "maxLeverage": 40,
        "aliases": [],
    }
    assert by_symbol["HYPE/USDC"]["kind"] == "spot"
    assert by_symbol["HYPE/USDC"]["aliases"] == ["@107"]
    assert by_symbol["HYPE/USDC"]["maxLeverage"] is None
    assert by_symbol["PURR/USDC"]["aliases"] == []
    assert by_symbol["xyz:XYZ100"]["kind"] == "dex-perp"
    assert by_symbol["xyz:XYZ100"]["dex"] == "xyz"
    # What an order names a market by: Hyperliquid's asset numbers, as the SDK counts them.
    async with aiohttp.ClientSession() as http, http.get(server.http + "/api/trading") as resp:
        assets = (await resp.json())["assets"]
    assert assets["BTC"] == 0 and assets["HYPE/USDC"] == 10_107 and assets["PURR/USDC"] == 10_000
    assert assets["xyz:XYZ100"] == 110_000 and assets["xyz:TSLA"] == 110_001


async def test_prices_of_every_kind_by_any_name(alice: Client) -> None:
    reply = await subscribe(alice, "prices", symbols=["HYPE/USDC", "@107", "btc", "xyz:XYZ100"])
    # @107 is HYPE/USDC: one symbol, answered by its canonical name.
    assert reply["params"] == {"symbols": ["BTC", "HYPE/USDC", "xyz:XYZ100"]}
    seen: set[str] = set()
    while seen != {"BTC", "HYPE/USDC", "xyz:XYZ100"}:
        msg = await alice.data("prices")
        assert set(msg["data"]) <= {"BTC", "HYPE/USDC", "xyz:XYZ100"}
        seen |= set(msg["data"])
        for quote in msg["data"].values():
            assert quote["price"] > 0 and quote["volume24h"] > 0


async def test_unknown_and_bad_params_are_refused(alice: Client) -> None:
    error = await refused(alice, "prices", symbols=["@999999"])
    assert error["code"] == "INVALID_PARAMS" and "Unknown symbol" in error["message"]
    error = await refused(alice, "candles", symbol="BTC", interval="2m")
    assert error["code"] == "INVALID_PARAMS" and "interval" in error["message"]
    error = await refused(alice, "candles", symbol="BTC")
    assert error["code"] == "INVALID_PARAMS"
    error = await refused(alice, "bbo", symbol="BTC", depth=3)
    assert error["code"] == "INVALID_PARAMS"


async def test_book_trades_and_bbo_of_a_spot_pair(alice: Client) -> None:
    reply = await subscribe(alice, "orderbook", symbol="@107", depth=3)
    assert reply["params"] == {"depth": 3, "symbol": "HYPE/USDC"}
    book = await alice.data("orderbook")
    assert book["data"]["symbol"] == "HYPE/USDC" and len(book["data"]["bids"]) == 3
    await subscribe(alice, "bbo", symbol="hype/usdc")
    bbo = await alice.data("bbo")
    assert bbo["params"] == {"symbol": "HYPE/USDC"}
    data = bbo["data"]
    assert set(data) == {"symbol", "bid", "ask", "timestamp"}
    assert data["bid"][0] < data["ask"][0] and data["bid"][1] > 0
    await subscribe(alice, "trades", symbol="xyz:TSLA")
    trades = await alice.data("trades", timeout=20)
    assert trades["data"]["symbol"] == "xyz:TSLA" and trades["data"]["trades"]


async def test_asset_context_of_a_perp_and_of_a_pair(alice: Client) -> None:
    await subscribe(alice, "asset_context", symbol="BTC")
    perp = await alice.data("asset_context")
    assert set(perp["data"]) == {
        "symbol", "markPrice", "midPrice", "oraclePrice", "funding", "premium",
        "openInterest", "dayVolume", "prevDayPrice", "timestamp",
    }  # fmt: skip
    await subscribe(alice, "asset_context", symbol="HYPE/USDC")
    spot = await alice.recv_until(
        lambda m: m.get("channel") == "asset_context" and m["data"]["symbol"] == "HYPE/USDC"
    )
    assert set(spot["data"]) == {
        "symbol", "markPrice", "midPrice", "dayVolume", "prevDayPrice", "circulatingSupply",
        "timestamp",
    }  # fmt: skip
    assert spot["data"]["markPrice"] > 0


async def test_candles_start_with_the_last_500(server: GatewayServer, alice: Client) -> None:
    reply = await subscribe(alice, "candles", symbol="@107", interval="1m")
    assert reply["params"] == {"interval": "1m", "symbol": "HYPE/USDC"}
    first = await alice.data("candles")
    candles = first["data"]["candles"]
    assert first["data"]["symbol"] == "HYPE/USDC" and first["data"]["interval"] == "1m"
    assert len(candles) == 500
    assert [c["t"] for c in candles] == sorted(c["t"] for c in candles)
    assert set(candles[-1]) == {"t", "T", "open", "high", "low", "close", "volume", "trades"}
    update = await alice.data("candles", timeout=15)
    assert len(update["data"]["candles"]) == 1
    assert update["data"]["candles"][0]["t"] >= candles[-1]["t"]
    # A later subscriber of the same topic gets the whole 500 too, then updates.
    bob = await Client.connect(server.ws, alice_token())
    try:
        await bob.recv()
        await subscribe(bob, "candles", symbol="HYPE/USDC", interval="1m")
        late = await bob.data("candles")
        assert len(late["data"]["candles"]) == 500
        assert late["data"]["candles"][-1]["t"] >= update["data"]["candles"][0]["t"]
    finally:
        await bob.close()


async def test_fills_name_spot_pairs_and_carry_every_field(alice: Client) -> None:
    await subscribe(alice, "user_fills", userId="alice")
    markets: set[str] = set()
    spot: list[dict[str, Any]] = []
    for _ in range(60):
        msg = await alice.data("user_fills", timeout=20)
        for fill in msg["data"]["fills"]:
            assert fill["wallet"] in (ALICE_WALLET, ALICE_WALLET_2)
            assert {"market", "feeToken", "direction", "startPosition", "crossed"} <= set(fill)
            assert not fill["symbol"].startswith("@"), fill
            markets.add(fill["market"])
            if fill["market"] == "spot":
                spot.append(fill)
        if markets == {"perp", "spot"}:
            break
    assert markets == {"perp", "spot"}
    for fill in spot:
        assert "/" in fill["symbol"] and fill["direction"] in ("Buy", "Sell")
        if fill["direction"] == "Buy":
            assert fill["feeToken"] == fill["symbol"].split("/")[0]


async def test_user_ledger_delivers_each_kind_once(cashflow_server: GatewayServer) -> None:
    client = await Client.connect(cashflow_server.ws, alice_token())
    try:
        await client.recv()
        reply = await subscribe(client, "user_ledger", userId="alice")
        assert reply["offset"] == 0 and reply["epoch"]
        kinds: set[str] = set()
        ids: list[tuple[str, str]] = []
        offsets: list[int] = []
        for _ in range(200):
            msg = await client.data("user_ledger", timeout=20)
            offsets.append(msg["offset"])
            for event in msg["data"]["events"]:
                assert {"id", "kind", "time", "amount", "token", "wallet", "raw"} <= set(event)
                ids.append((event["wallet"], event["id"]))
                kinds.add(event["kind"])
                if event["kind"] == "funding":
                    assert event["symbol"] and "rate" in event and "size" in event
                if event["kind"] == "withdraw":
                    assert event["amount"] < 0 and event["raw"]["type"] == "withdraw"
            if {"deposit", "withdraw", "funding", "liquidation"} <= kinds:
                break
        assert {"deposit", "withdraw", "funding", "liquidation"} <= kinds
        assert len(ids) == len(set(ids))
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    finally:
        await client.close()


async def test_liquidation_fills_carry_their_marker(cashflow_server: GatewayServer) -> None:
    client = await Client.connect(cashflow_server.ws, alice_token())
    try:
        await client.recv()
        await subscribe(client, "user_fills", userId="alice")
        for _ in range(300):
            msg = await client.data("user_fills", timeout=20)
            marked = [f for f in msg["data"]["fills"] if "liquidation" in f]
            if marked:
                break
        assert marked
        for fill in marked:
            assert fill["liquidation"]["method"] == "market"
            assert fill["liquidation"]["markPrice"] > 0
            assert fill["crossed"] is True
    finally:
        await client.close()


async def test_a_ledger_unsubscribed_and_recovered_later_misses_nothing_meanwhile() -> None:
    """As for fills: the stream's feed starts again where the wallet's ledger had been
    delivered to, so a client back with `since` gets the events of the time no feed
    ran, each once."""
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    srv = GatewayServer(sim_endpoint(sim), make_settings())
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    request = {"channel": "user_ledger", "params": {"userId": "alice"}}

    def ids(messages: list[dict[str, Any]]) -> list[str]:
        return [
            e["id"]
            for m in messages
            if m["type"] == "data" and m["channel"] == "user_ledger"
            for e in m["data"]["events"]
            if e["wallet"] == ALICE_WALLET and e["kind"] != "funding"
        ]

    def updates_since(ms: float) -> list[str]:
        updates = sim.ledger(ALICE_WALLET)["ledgerUpdates"]
        return [f"{u['hash']}:{u['delta']['type']}" for u in updates if u["time"] > ms]

    try:
        await client.recv()
        await client.request({"type": "subscribe", **request})
        await client.recv_until(lambda m: bool(ids(client.seen)))
        await client.request({"type": "unsubscribe", **request})
        before = [m for m in client.seen if m.get("channel") == "user_ledger" and "offset" in m]
        before = [m for m in before if m["type"] == "data"]
        first = min(
            e["time"] for m in before for e in m["data"]["events"] if e["wallet"] == ALICE_WALLET
        )
        stopped = time.time() * 1000
        await eventually(lambda: len(updates_since(stopped + 200)) >= 2, 20)
        delivered = ids(client.seen)
        client.seen.clear()
        since = {"offset": before[-1]["offset"], "epoch": before[-1]["epoch"]}
        reply = await client.request({"type": "subscribe", **request, "since": since})
        assert reply["recovered"] is True
        expected = updates_since(first - 1)
        got: list[str] = []

        def received() -> bool:
            got[:] = delivered + ids(client.seen)
            return set(expected) <= set(got)

        await client.recv_until(lambda m: received(), timeout=20)
        assert [i for i in got if i in expected] == expected  # each once, in order
        assert len(got) == len(set(got))
    finally:
        await client.close()
        await srv.stop()
        await sim.stop()

"""Spot, builder-dex, candle, context and cashflow streams on the simulator's real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hlgateway.simulator import Simulator

from .conftest import FAST, USER, USER_LOWER, channel, info, recv, recv_until, subscribe

# Cashflows often enough that a few seconds see each kind.
CASHFLOW = dataclasses.replace(
    FAST, funding_interval=1.0, transfer_interval=0.5, liquidation_interval=3.0
)


@pytest.fixture
async def csim() -> AsyncIterator[Simulator]:
    simulator = Simulator(CASHFLOW)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_all_mids_per_dex(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "allMids"})
        main = await recv(ws)
        assert {"BTC", "PURR/USDC", "@107"} <= set(main["data"]["mids"])
        assert "dex" not in main["data"]
        ack = await subscribe(ws, {"type": "allMids", "dex": "xyz"})
        assert ack["data"]["subscription"] == {"type": "allMids", "dex": "xyz"}
        frame, _ = await recv_until(ws, lambda f: f["channel"] == "allMids" and "dex" in f["data"])
        assert frame["data"]["dex"] == "xyz"
        assert set(frame["data"]["mids"]) == {"xyz:XYZ100", "xyz:TSLA"}


async def test_spot_pair_context_is_on_its_own_channel(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "activeAssetCtx", "coin": "@107"})
        frame = await recv(ws)
        assert frame["channel"] == "activeSpotAssetCtx"
        assert frame["data"]["coin"] == "@107"
        assert {"markPx", "midPx", "prevDayPx", "dayNtlVlm", "circulatingSupply"} <= set(
            frame["data"]["ctx"]
        )
        await subscribe(ws, {"type": "activeAssetCtx", "coin": "xyz:TSLA"})
        dex, _ = await recv_until(ws, channel("activeAssetCtx"))
        assert dex["data"]["coin"] == "xyz:TSLA" and "funding" in dex["data"]["ctx"]


async def test_candles_are_the_snapshots_latest(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "candle", "coin": "BTC", "interval": "1m"})
        first = await recv(ws)
        assert first["channel"] == "candle"
        candle = first["data"]
        assert candle["s"] == "BTC" and candle["i"] == "1m"
        assert candle["T"] - candle["t"] == 59_999
        live, _ = await recv_until(ws, channel("candle"))
        assert live["data"]["t"] >= candle["t"]
        rows = await info(
            session,
            sim,
            {
                "type": "candleSnapshot",
                "req": {"coin": "BTC", "interval": "1m", "startTime": 0, "endTime": 2**62},
            },
        )
        # The REST snapshot ends with the candle the stream is updating.
        assert rows[-1]["t"] >= live["data"]["t"]


async def test_cashflows_snapshot_then_live_and_rest_agrees(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(csim.ws_url) as ws:
        await subscribe(ws, {"type": "userNonFundingLedgerUpdates", "user": USER})
        snapshot = await recv(ws)
        assert snapshot["channel"] == "userNonFundingLedgerUpdates"
        assert snapshot["data"]["isSnapshot"] is True and snapshot["data"]["user"] == USER_LOWER
        await subscribe(ws, {"type": "userFundings", "user": USER})
        fundings_snapshot, _ = await recv_until(ws, channel("userFundings"))
        assert fundings_snapshot["data"]["isSnapshot"] is True
        ledger: list[dict[str, Any]] = list(snapshot["data"]["nonFundingLedgerUpdates"])
        fundings: list[dict[str, Any]] = list(fundings_snapshot["data"]["fundings"])
        kinds: set[str] = {e["delta"]["type"] for e in ledger}
        async with asyncio.timeout(60):  # a liquidation comes every 3 s on average
            while not ({"deposit", "liquidation"} <= kinds and len(fundings) >= 2):
                frame, _ = await recv_until(
                    ws,
                    lambda f: f["channel"] in ("userFundings", "userNonFundingLedgerUpdates"),
                    timeout=10,
                )
                assert "isSnapshot" not in frame["data"]
                if frame["channel"] == "userFundings":
                    fundings += frame["data"]["fundings"]
                else:
                    entries = frame["data"]["nonFundingLedgerUpdates"]
                    ledger += entries
                    kinds |= {e["delta"]["type"] for e in entries}
        assert all(
            set(f) == {"time", "coin", "usdc", "szi", "fundingRate", "nSamples"} for f in fundings
        )
        rest = await info(
            session, csim, {"type": "userNonFundingLedgerUpdates", "user": USER, "startTime": 0}
        )
        assert rest[: len(ledger)] == ledger
        rest_fundings = await info(
            session, csim, {"type": "userFunding", "user": USER, "startTime": 0}
        )
        as_ws = [
            {"time": e["time"], **{k: v for k, v in e["delta"].items() if k != "type"}}
            for e in rest_fundings
        ]
        assert as_ws[: len(fundings)] == fundings
        ledger_view = csim.ledger(USER)
        assert ledger_view["ledgerUpdates"][: len(ledger)] == ledger
        assert ledger_view["fundings"][: len(fundings)] == fundings


async def test_builder_dex_clearinghouse(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        ack = await subscribe(ws, {"type": "clearinghouseState", "user": USER, "dex": "xyz"})
        assert ack["data"]["subscription"]["dex"] == "xyz"
        frame, _ = await recv_until(ws, channel("clearinghouseState"))
        assert frame["data"]["dex"] == "xyz" and frame["data"]["user"] == USER_LOWER
        for row in frame["data"]["clearinghouseState"]["assetPositions"]:
            assert row["position"]["coin"].startswith("xyz:")

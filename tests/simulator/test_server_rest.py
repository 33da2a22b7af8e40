"""``POST /info`` on real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import aiohttp

from hlgateway.simulator import Simulator
from tests.helpers import eventually

from .conftest import FAST, USER, USER_LOWER, channel, info, recv_until, subscribe

FRONTEND_KEYS = {
    "coin", "side", "limitPx", "sz", "oid", "timestamp", "triggerCondition", "isTrigger",
    "triggerPx", "children", "isPositionTpsl", "reduceOnly", "orderType", "origSz", "tif", "cloid",
}  # fmt: skip


async def post(session: aiohttp.ClientSession, sim: Simulator, data: Any) -> tuple[int, str]:
    async with session.post(sim.http_url + "/info", data=data) as resp:
        return resp.status, await resp.text()


async def test_market_endpoints(sim: Simulator, session: aiohttp.ClientSession) -> None:
    meta = await info(session, sim, {"type": "meta"})
    names = [asset["name"] for asset in meta["universe"]]
    assert "kPEPE" in names and len(names) >= 10
    assert all({"name", "szDecimals", "maxLeverage"} <= set(a) for a in meta["universe"])
    table_ids = {table[0] for table in meta["marginTables"]}
    assert {a["marginTableId"] for a in meta["universe"]} <= table_ids

    spot = await info(session, sim, {"type": "spotMeta"})
    token_index = {t["index"] for t in spot["tokens"]}
    for pair in spot["universe"]:
        assert set(pair["tokens"]) <= token_index

    mids = await info(session, sim, {"type": "allMids"})
    pairs = {pair["name"] for pair in spot["universe"]}
    assert {"PURR/USDC", "@107"} <= pairs
    # The main dex's mids: its perps and every spot pair (not the builder dexes').
    assert set(mids) == set(names) | pairs and all(isinstance(v, str) for v in mids.values())

    book = await info(session, sim, {"type": "l2Book", "coin": "kPEPE"})
    assert book["coin"] == "kPEPE" and len(book["levels"]) == 2
    assert len(book["levels"][0]) == 20 and isinstance(book["time"], int)
    assert await info(session, sim, {"type": "l2Book", "coin": "KPEPE"}) is None
    coarse = await info(session, sim, {"type": "l2Book", "coin": "ETH", "nSigFigs": 2})
    assert all(float(lvl["px"]) % 100 == 0 for lvl in coarse["levels"][0])

    meta2, ctxs = await info(session, sim, {"type": "metaAndAssetCtxs"})
    assert meta2 == meta and len(ctxs) == len(names)
    assert all(isinstance(ctx["markPx"], str) for ctx in ctxs)
    dexes = await info(session, sim, {"type": "perpDexs"})
    assert dexes[0] is None and [d["name"] for d in dexes[1:]] == ["xyz"]


async def test_account_endpoints(sim: Simulator, session: aiohttp.ClientSession) -> None:
    empty = await info(session, sim, {"type": "clearinghouseState", "user": USER})
    assert empty["assetPositions"] == [] and empty["marginSummary"]["accountValue"] == "0.0"
    assert await info(session, sim, {"type": "userFills", "user": USER}) == []
    assert await info(session, sim, {"type": "orderStatus", "user": USER, "oid": 1}) == {
        "status": "unknownOid"
    }

    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "userFills", "user": USER})
        await recv_until(ws, channel("userFills"))  # snapshot
        await recv_until(ws, channel("userFills"), timeout=3)  # at least one live fill
        wallet = sim.world.accounts.wallet(USER)
        assert wallet is not None

        fills = await info(session, sim, {"type": "userFills", "user": USER_LOWER})
        times = [f["time"] for f in fills]
        assert fills and times == sorted(times, reverse=True)  # newest first
        assert len(fills) == len(wallet.fills())

        start, end = wallet.fills()[1].time, wallet.fills()[-2].time
        window = await info(
            session,
            sim,
            {"type": "userFillsByTime", "user": USER, "startTime": start, "endTime": end},
        )
        expected = [f.tid for f in wallet.fills() if start <= f.time <= end]
        assert [f["tid"] for f in window] == expected  # oldest first
        open_ended = await info(
            session, sim, {"type": "userFillsByTime", "user": USER, "startTime": start}
        )
        assert len(open_ended) >= len(window)

        state = await info(session, sim, {"type": "clearinghouseState", "user": USER})
        assert float(state["marginSummary"]["accountValue"]) > 0

        open_orders = await info(session, sim, {"type": "openOrders", "user": USER})
        frontend = await info(session, sim, {"type": "frontendOpenOrders", "user": USER})
        assert [o["oid"] for o in open_orders] == [o["oid"] for o in frontend]
        for row in open_orders:
            assert {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz"} <= set(row)
        assert all(set(row) == FRONTEND_KEYS for row in frontend)

        history = await info(session, sim, {"type": "historicalOrders", "user": USER})
        assert history and all(set(h) == {"order", "status", "statusTimestamp"} for h in history)
        assert all(set(h["order"]) == FRONTEND_KEYS for h in history)
        assert {h["status"] for h in history} <= {"open", "filled", "canceled"}
        oids = [h["order"]["oid"] for h in history]
        assert len(oids) == len(set(oids))

        target = history[-1]
        status = await info(
            session, sim, {"type": "orderStatus", "user": USER, "oid": target["order"]["oid"]}
        )
        assert status == {"status": "order", "order": target}
        with_cloid = [h for h in history if h["order"]["cloid"] is not None]
        if with_cloid:
            by_cloid = await info(
                session,
                sim,
                {"type": "orderStatus", "user": USER, "oid": with_cloid[0]["order"]["cloid"]},
            )
            assert by_cloid["status"] == "order"


async def test_bad_requests(sim: Simulator, session: aiohttp.ClientSession) -> None:
    prefix = "Failed to deserialize the JSON body into the target type"
    status, text = await post(session, sim, b'{"type":"vaultDetails"}')
    assert status == 422 and text == prefix + ": unknown variant `vaultDetails`"
    for body in (
        b"[]",
        b"{}",
        b'{"type": 1}',
        b'{"type":"clearinghouseState"}',
        b'{"type":"clearinghouseState","user":"0x12"}',
        b'{"type":"userFillsByTime","user":"0x' + b"ab" * 20 + b'"}',
        b'{"type":"orderStatus","user":"0x' + b"ab" * 20 + b'","oid":"abc"}',
        b'{"type":"l2Book"}',
        b'{"type":"l2Book","coin":"BTC","nSigFigs":9}',
        b'{"type":"meta","dex":"nope"}',
    ):
        status, text = await post(session, sim, body)
        assert status == 422 and text.startswith(prefix), (body, status, text)
    status, text = await post(session, sim, b"{not json")
    assert status == 400 and text == "Failed to parse the request body as JSON"
    status, _ = await post(session, sim, b"\xff\xfe")
    assert status == 400
    # None of that hurt the server.
    assert (await info(session, sim, {"type": "allMids"}))["BTC"]


async def test_concurrent_clients(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async def one(i: int) -> None:
        async with session.ws_connect(sim.ws_url) as ws:
            await subscribe(ws, {"type": "l2Book", "coin": "SOL"})
            await subscribe(ws, {"type": "userFills", "user": f"0x{i:040x}"})
            await recv_until(ws, channel("l2Book"))
            await info(session, sim, {"type": "allMids"})

    await asyncio.gather(*(one(i) for i in range(8)))


async def test_rest_queries_can_count_as_watching(session: aiohttp.ClientSession) -> None:
    sim = Simulator(dataclasses.replace(FAST, track_rest_queries=True, track_grace=0.5))
    await sim.start()
    try:
        # Not subscribed anywhere, only polled: with the option, the wallet trades.
        first = await info(session, sim, {"type": "userFills", "user": USER})
        assert first, "the first query sees the invented recent history"
        assert sim.world.accounts.tracked_users() == [USER_LOWER]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(later := await info(session, sim, {"type": "userFills", "user": USER})) <= len(
            first
        ):
            assert loop.time() < deadline, "no new fills while polled"
            await asyncio.sleep(0.05)
        assert later[-len(first) :] == first  # newest first: the old ones at the end
        other = "0x" + "5e" * 20
        await info(session, sim, {"type": "allMids", "user": other})  # not a user request
        assert sim.world.accounts.wallet(other) is None
        # Polling stops: the grace runs out and so does the flow.
        await eventually(lambda: sim.world.accounts.tracked_users() == [])
    finally:
        await sim.stop()


async def test_rest_queries_do_not_track_by_default(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    assert await info(session, sim, {"type": "historicalOrders", "user": USER}) == []
    assert sim.world.accounts.wallet(USER) is None


async def test_the_exchange_clock_can_run_behind_the_wall_clock(
    session: aiohttp.ClientSession,
) -> None:
    # Hyperliquid stamps with its own clock: a client's may be ahead of it.
    sim = Simulator(dataclasses.replace(FAST, clock_offset=-30.0))
    await sim.start()
    try:
        book = await info(session, sim, {"type": "l2Book", "coin": "ETH"})
        assert book["time"] <= time.time() * 1000 - 30_000  # never the wall clock's time
    finally:
        await sim.stop()

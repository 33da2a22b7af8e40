"""The control API (``/control/*`` and the same ``Simulator`` methods) on real sockets.

The simulator runs on the test's own event loop, so its clock (``loop.time()``)
is the test's: stall and refusal deadlines are checked against arrival times
exactly, without sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import aiohttp
import pytest

from hlgateway.cli import build_parser
from hlgateway.simulator import Simulator
from hlgateway.simulator.chaos import GARBAGE_FRAMES
from tests.helpers import eventually

from .conftest import (
    CONTROL,
    USER,
    USER_LOWER,
    Frame,
    channel,
    control,
    ok,
    recv,
    recv_until,
    subscribe,
)


def link_ids(sim: Simulator) -> list[int]:
    return [link["id"] for link in sim.links()]


async def closed_kind(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMsgType:
    """Read until the link ends; return how it ended."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return msg.type


async def connect_when_accepted(
    session: aiohttp.ClientSession, sim: Simulator, timeout: float = 5.0
) -> tuple[aiohttp.ClientWebSocketResponse, list[int]]:
    """Retry the upgrade until it is accepted; return the link and the refusals seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    refusals: list[int] = []
    while True:
        try:
            return await session.ws_connect(sim.ws_url), refusals
        except aiohttp.WSServerHandshakeError as exc:
            refusals.append(exc.status)
            if loop.time() > deadline:
                raise AssertionError(f"still refused after {timeout}s: {refusals[-3:]}") from None
            await asyncio.sleep(0.02)


async def test_control_api_is_off_by_default(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(sim.http_url + "/control/links") as resp:
        assert resp.status == 404


def test_cli_simulate_control_flag() -> None:
    parser = build_parser()
    assert parser.parse_args(["simulate", "--control"]).control is True
    assert parser.parse_args(["simulate"]).control is False


async def test_links(csim: Simulator, session: aiohttp.ClientSession) -> None:
    assert await ok(session, csim, "GET", "links") == {"links": []}
    async with session.ws_connect(csim.ws_url) as one, session.ws_connect(csim.ws_url) as two:
        await subscribe(one, {"type": "l2Book", "coin": "BTC"})
        await subscribe(two, {"type": "orderUpdates", "user": USER})
        links = csim.links()
        assert [link["id"] for link in links] == sorted(link["id"] for link in links)
        assert len({link["id"] for link in links}) == 2
        first, second = links
        assert first["remote"] == "127.0.0.1" and isinstance(first["port"], int)
        assert first["subscriptions"] == [
            {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "mantissa": None, "fast": False}
        ]
        assert second["subscriptions"] == [{"type": "orderUpdates", "user": USER_LOWER}]
        assert first["stalled"] == [] and first["silent"] is False
        assert await ok(session, csim, "GET", "links") == {"links": links}
        # Ids are stable: a new link gets a new, larger id; old ones keep theirs.
        async with session.ws_connect(csim.ws_url):
            ids = link_ids(csim)
            assert ids[:2] == [first["id"], second["id"]] and ids[2] > second["id"]


async def test_drop_one_link_then_all(csim: Simulator, session: aiohttp.ClientSession) -> None:
    one = await session.ws_connect(csim.ws_url)
    two = await session.ws_connect(csim.ws_url)
    await subscribe(one, {"type": "allMids"})
    first, second = link_ids(csim)
    assert await ok(session, csim, "POST", "drop", {"link": first}) == {"dropped": 1}
    assert link_ids(csim) == [second]  # forgotten at once
    assert await closed_kind(one) in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert one.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE  # 1006: no close frame
    await two.send_json({"method": "ping"})
    await recv_until(two, channel("pong"))
    assert await ok(session, csim, "POST", "drop", {"link": first}) == {"dropped": 0}
    assert csim.drop() == 1
    assert await closed_kind(two) in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert two.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE
    assert await ok(session, csim, "POST", "drop", {}) == {"dropped": 0}
    async with session.ws_connect(csim.ws_url) as three:
        await subscribe(three, {"type": "allMids"})
        assert csim.drop_connections() == 1  # the old name still works
    await eventually(lambda: csim.connection_count() == 0)
    assert csim.stats()["drops"]["control"] == 3


async def test_stall_withholds_one_stream_keeps_the_link_and_resumes(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    async with session.ws_connect(csim.ws_url) as ws:
        await subscribe(ws, {"type": "l2Book", "coin": "BTC"})
        await subscribe(ws, {"type": "l2Book", "coin": "ETH"})
        seconds = 1.0
        asked_at = loop.time()
        answer = await ok(
            session, csim, "POST", "stall", {"type": "l2Book", "coin": "BTC", "seconds": seconds}
        )
        until = asked_at + seconds  # the server's deadline is at or after this
        assert answer == {"stalled": 1, "links": 1}
        [link] = csim.links()
        assert [s["coin"] for s in link["stalled"]] == ["BTC"] and link["silent"] is False
        # Everything queued before the stall arrives before this pong; after it,
        # no BTC book may arrive before the stall ends, while ETH and pongs flow.
        await ws.send_json({"method": "ping"})
        await recv_until(ws, channel("pong"))
        eth_during = 0
        while True:
            frame = await recv(ws)
            now = loop.time()
            if frame["channel"] == "l2Book" and frame["data"]["coin"] == "BTC":
                assert now >= until, until - now
                break
            if frame["channel"] == "l2Book" and now < until:
                eth_during += 1
            if eth_during == 2:
                await ws.send_json({"method": "ping"})  # pongs answer during a stall
                pong, _ = await recv_until(ws, channel("pong"))
                assert pong == {"channel": "pong"}
        assert eth_during >= 2
        assert csim.connection_count() == 1
        assert csim.links()[0]["stalled"] == []
        assert csim.stats()["stalls"]["withheldFrames"] >= 1


async def test_stall_matching_rules(csim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(csim.ws_url) as one, session.ws_connect(csim.ws_url) as two:
        for ws in (one, two):
            await subscribe(ws, {"type": "orderUpdates", "user": USER})
            await subscribe(ws, {"type": "l2Book", "coin": "BTC", "nSigFigs": 3})
        first, second = link_ids(csim)
        shouting = "0x" + USER[2:].upper()
        answer = await ok(
            session,
            csim,
            "POST",
            "stall",
            {"type": "orderUpdates", "user": shouting, "seconds": 30, "link": second},
        )
        assert answer == {"stalled": 1, "links": 1}
        stalled = {link["id"]: link["stalled"] for link in csim.links()}
        assert stalled == {first: [], second: [{"type": "orderUpdates", "user": USER_LOWER}]}
        # Subset match over every link; exact values otherwise (coins are case-sensitive).
        assert csim.stall({"type": "l2Book", "nSigFigs": 3}, 30) == 2
        assert csim.stall({"type": "l2Book", "coin": "btc"}, 30) == 0
        assert csim.stall({"nSigFigs": 4}, 30) == 0
        assert csim.stall({"type": "trades"}, 30, link=first) == 0
        assert csim.stall({"type": "l2Book"}, 30, link=10_000) == 0
        # An unsubscribe ends the stall; a new subscription starts unstalled.
        await two.send_json(
            {"method": "unsubscribe", "subscription": {"type": "orderUpdates", "user": USER}}
        )
        await recv_until(two, channel("subscriptionResponse"))
        await subscribe(two, {"type": "orderUpdates", "user": USER})
        stalled = {link["id"]: [s["type"] for s in link["stalled"]] for link in csim.links()}
        assert stalled == {first: ["l2Book"], second: ["l2Book"]}
        for body in (
            {"seconds": 5},  # nothing to match and not "all": ambiguous
            {"all": True, "type": "l2Book", "seconds": 5},
            {"type": "l2Book"},
            {"type": "l2Book", "seconds": 0},
            {"type": "l2Book", "seconds": -1},
            {"type": "l2Book", "seconds": "5"},
            {"type": "l2Book", "seconds": 5, "link": "1"},
            {"type": {"nested": 1}, "seconds": 5},
            {"all": "yes", "seconds": 5},
        ):
            status, answer = await control(session, csim, "POST", "stall", body)
            assert status == 400 and isinstance(answer["error"], str), body
        with pytest.raises(ValueError):
            csim.stall({"type": "l2Book"}, float("nan"))


async def test_stall_all_silences_pongs_too(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    async with session.ws_connect(csim.ws_url) as ws, session.ws_connect(csim.ws_url) as other:
        await subscribe(ws, {"type": "allMids"})
        await recv_until(ws, channel("allMids"))  # the initial one
        first, second = link_ids(csim)
        seconds = 1.5
        answer = await ok(
            session, csim, "POST", "stall", {"all": True, "seconds": seconds, "link": first}
        )
        until = loop.time() + seconds  # at or after the server's deadline
        assert answer == {"stalled": 1, "links": 1}
        silent = {link["id"]: link["silent"] for link in csim.links()}
        assert silent == {first: True, second: False}
        await ws.send_json({"method": "ping"})  # no pong will ever come for this one
        await other.send_json({"method": "ping"})  # the other link is untouched
        await recv_until(other, channel("pong"))
        seen: list[Frame] = []
        while True:  # wait for data to come back after the silence
            frame = await recv(ws)
            if loop.time() >= until and frame["channel"] == "allMids":
                break
            seen.append(frame)
        assert all(f["channel"] == "allMids" for f in seen)  # only what was queued before
        assert csim.connection_count() == 2  # silent, but open
        await ws.send_json({"method": "ping"})
        frame, before = await recv_until(ws, channel("pong"))
        assert all(f["channel"] == "allMids" for f in before)
        assert csim.stats()["stalls"]["silencedLinks"] == 1


async def test_garbage_frames(csim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(csim.ws_url) as ws, session.ws_connect(csim.ws_url) as other:
        first, _ = link_ids(csim)
        assert await ok(session, csim, "POST", "garbage", {"count": 4, "link": first}) == {
            "sent": 4
        }
        received = [await ws.receive(timeout=5) for _ in range(4)]
        text, wrong_shape, binary, unknown = received
        assert text.type is aiohttp.WSMsgType.TEXT
        with pytest.raises(json.JSONDecodeError):
            json.loads(text.data)
        assert wrong_shape.type is aiohttp.WSMsgType.TEXT
        assert json.loads(wrong_shape.data) == {"channel": "l2Book", "data": "garbage"}
        assert binary.type is aiohttp.WSMsgType.BINARY
        assert unknown.type is aiohttp.WSMsgType.TEXT
        assert json.loads(unknown.data)["channel"] == "noSuchChannel"
        await ws.send_json({"method": "ping"})
        assert await recv(ws) == {"channel": "pong"}  # the link carries on
        # Every link, cycling through the kinds; the other link got nothing before.
        assert csim.garbage(len(GARBAGE_FRAMES) + 1) == 2 * (len(GARBAGE_FRAMES) + 1)
        first_other = await other.receive(timeout=5)
        assert first_other.data == GARBAGE_FRAMES[0]
        for body in ({"count": -1}, {"count": "3"}, {"count": 10**9}, {"lots": 1}):
            status, _ = await control(session, csim, "POST", "garbage", body)
            assert status == 400, body
        assert csim.stats()["garbage"] == 4 + 2 * (len(GARBAGE_FRAMES) + 1)


async def test_refuse_then_recover(csim: Simulator, session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    async with session.ws_connect(csim.ws_url) as ws:
        before_ms = csim.world.now_ms
        refused_until = loop.time() + 0.5  # at or before the server's deadline
        answer = await ok(session, csim, "POST", "refuse", {"seconds": 0.5})
        assert answer["until"] >= before_ms + 500
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(csim.ws_url)
        assert refused.value.status == 503
        await ws.send_json({"method": "ping"})  # existing links are untouched
        await recv_until(ws, channel("pong"))
        # REST stays up while upgrades are refused.
        async with session.post(csim.http_url + "/info", json={"type": "allMids"}) as resp:
            assert resp.status == 200
        back, refusals = await connect_when_accepted(session, csim)
        assert loop.time() >= refused_until
        assert set(refusals) <= {503}
        await back.close()
    csim.refuse(60)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await session.ws_connect(csim.ws_url)
    csim.refuse(0)  # ends a refusal at once
    async with session.ws_connect(csim.ws_url):
        pass
    assert csim.stats()["connections"]["refused"]["unavailable"] >= 2
    assert csim.stats()["refusals"] == 3


async def test_restart_drops_refuses_recovers_and_the_world_carries_on(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    ws = await session.ws_connect(csim.ws_url)
    await subscribe(ws, {"type": "userFills", "user": USER})
    snapshot, _ = await recv_until(ws, channel("userFills"))
    before = len(snapshot["data"]["fills"])
    model_ms = csim.world.now_ms
    answer = await ok(session, csim, "POST", "restart", {"down": 0.5})
    assert answer["dropped"] == 1 and answer["until"] >= model_ms + 500
    assert csim.links() == []
    assert await closed_kind(ws) in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE
    assert USER_LOWER in csim.world.accounts.tracked_users()  # within the track grace
    back, refusals = await connect_when_accepted(session, csim)
    assert refusals and set(refusals) == {503}
    async with back:
        await subscribe(back, {"type": "userFills", "user": USER})
        again, _ = await recv_until(back, channel("userFills"))
        assert again["data"]["isSnapshot"] is True
        assert again["data"]["fills"][:before] == snapshot["data"]["fills"]
        assert csim.world.now_ms > model_ms
    await eventually(lambda: csim.connection_count() == 0)
    assert csim.restart(0)["dropped"] == 0
    async with session.ws_connect(csim.ws_url):  # down for 0 s: straight back
        pass
    assert csim.stats()["restarts"] == 2


async def test_ledger_equals_what_a_subscriber_received(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    assert await ok(session, csim, "GET", f"ledger?user={USER}") == {
        "user": USER_LOWER,
        "tracked": False,
        "trackedSince": None,
        "fills": [],
        "orders": [],
        "fundings": [],
        "ledgerUpdates": [],
    }
    async with session.ws_connect(csim.ws_url) as ws:
        # orderUpdates first: it starts tracking, so it sees every live transition.
        await subscribe(ws, {"type": "orderUpdates", "user": USER})
        await subscribe(ws, {"type": "userFills", "user": USER})
        updates: list[dict[str, Any]] = []
        fills: list[dict[str, Any]] = []

        async def read_one() -> None:
            frame, _ = await recv_until(ws, lambda f: f["channel"] in ("orderUpdates", "userFills"))
            if frame["channel"] == "orderUpdates":
                updates.extend(frame["data"])
            else:
                fills.extend(frame["data"]["fills"])

        while len(fills) < 3 or not {"open", "filled"} <= {u["status"] for u in updates}:
            await read_one()
        ledger = await ok(session, csim, "GET", f"ledger?user={USER.upper().replace('X', 'x')}")
        assert ledger["user"] == USER_LOWER and ledger["tracked"] is True
        since = ledger["trackedSince"]
        live = [o for o in ledger["orders"] if not o["prehistory"]]
        assert all(o["statusTimestamp"] > since for o in live)
        assert all(o["statusTimestamp"] <= since for o in ledger["orders"] if o["prehistory"])
        # Everything in the ledger was queued before it was read: catch up, then compare.
        while len(updates) < len(live) or len(fills) < len(ledger["fills"]):
            await read_one()
        flat = [
            {
                "oid": u["order"]["oid"],
                "coin": u["order"]["coin"],
                "side": u["order"]["side"],
                "status": u["status"],
                "sz": u["order"]["sz"],
                "origSz": u["order"]["origSz"],
                "limitPx": u["order"]["limitPx"],
                "statusTimestamp": u["statusTimestamp"],
                "timestamp": u["order"]["timestamp"],
                "cloid": u["order"]["cloid"],
                "prehistory": False,
            }
            for u in updates
        ]
        assert flat[: len(live)] == live
        assert fills[: len(ledger["fills"])] == ledger["fills"]
        # The method is the same ledger, a moment later.
        now = csim.ledger(USER)
        assert now["orders"][: len(ledger["orders"])] == ledger["orders"]
        assert now["fills"][: len(ledger["fills"])] == ledger["fills"]
    for query in ("ledger", "ledger?user=0x12", "ledger?user=" + USER + "&x=1"):
        status, answer = await control(session, csim, "GET", query)
        assert status == 400 and answer["error"], query


async def test_flow_continues_during_the_track_grace(
    csim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(csim.ws_url) as ws:
        await subscribe(ws, {"type": "userFills", "user": USER})
        await recv_until(ws, channel("userFills"))
        await subscribe(ws, {"type": "orderUpdates", "user": USER})
    await eventually(lambda: csim.connection_count() == 0)
    left = csim.ledger(USER)
    # Nobody subscribes now, yet the wallet keeps trading and the ledger keeps it all.
    await eventually(lambda: len(csim.ledger(USER)["fills"]) >= len(left["fills"]) + 2, timeout=8)
    during = csim.ledger(USER)
    assert during["tracked"] is True
    assert during["orders"][: len(left["orders"])] == left["orders"]
    gap_fills = during["fills"][len(left["fills"]) :]
    async with session.ws_connect(csim.ws_url) as ws:
        await subscribe(ws, {"type": "userFills", "user": USER})
        snapshot, _ = await recv_until(ws, channel("userFills"))
        got = snapshot["data"]["fills"]
        # The snapshot on re-subscribe holds what happened while nobody listened.
        assert got[: len(during["fills"])] == during["fills"]
        assert gap_fills and all(f in got for f in gap_fills)


async def test_tracking_stops_after_the_grace(session: aiohttp.ClientSession) -> None:
    sim = Simulator(dataclasses.replace(CONTROL, track_grace=0.3))
    await sim.start()
    try:
        async with session.ws_connect(sim.ws_url) as ws:
            await subscribe(ws, {"type": "orderUpdates", "user": USER})
        await eventually(lambda: sim.connection_count() == 0)
        assert sim.ledger(USER)["tracked"] is True
        await eventually(lambda: not sim.ledger(USER)["tracked"])
        assert sim.world.accounts.tracked_users() == []
    finally:
        await sim.stop()


async def test_rest_reflects_the_ledger(session: aiohttp.ClientSession) -> None:
    sim = Simulator(dataclasses.replace(CONTROL, track_grace=1.0))
    await sim.start()
    try:
        async with session.ws_connect(sim.ws_url) as ws:
            await subscribe(ws, {"type": "orderUpdates", "user": USER})
            await recv_until(ws, channel("orderUpdates"))
        # The wallet trades on through the grace, then stops: a still ledger to check.
        await eventually(lambda: not sim.ledger(USER)["tracked"])
        ledger = await ok(session, sim, "GET", f"ledger?user={USER}")

        async def info(body: dict[str, Any]) -> Any:
            async with session.post(sim.http_url + "/info", json=body) as resp:
                assert resp.status == 200
                return await resp.json()

        by_time = await info({"type": "userFillsByTime", "user": USER, "startTime": 0})
        assert by_time == ledger["fills"][:2000]
        latest: dict[int, dict[str, Any]] = {}
        for row in ledger["orders"]:
            latest[row["oid"]] = row  # dicts keep first-insertion (placement) order
        history = await info({"type": "historicalOrders", "user": USER})
        assert len(history) == min(2000, len(latest))
        expected = list(reversed(latest.values()))[:2000]  # newest first
        got = [
            (
                h["order"]["oid"],
                h["status"],
                h["order"]["sz"],
                h["order"]["origSz"],
                h["statusTimestamp"],
            )
            for h in history
        ]
        assert got == [
            (o["oid"], o["status"], o["sz"], o["origSz"], o["statusTimestamp"]) for o in expected
        ]
        open_orders = await info({"type": "openOrders", "user": USER})
        assert [o["oid"] for o in open_orders] == [
            o["oid"] for o in expected if o["status"] == "open"
        ]
        for row in expected[:5]:
            status = await info({"type": "orderStatus", "user": USER, "oid": row["oid"]})
            assert status["status"] == "order"
            assert status["order"]["status"] == row["status"]
            assert status["order"]["order"]["sz"] == row["sz"]
    finally:
        await sim.stop()


async def test_stats(csim: Simulator, session: aiohttp.ClientSession) -> None:
    stats = await ok(session, csim, "GET", "stats")
    assert stats == csim.stats()
    assert set(stats) == {
        "connections", "drops", "restarts", "refusals", "stalls", "garbage",
        "limitErrors", "actions", "trackedUsers",
    }  # fmt: skip
    assert stats["connections"] == {
        "accepted": 0,
        "open": 0,
        "refused": {"maxConnections": 0, "newConnectionRate": 0, "unavailable": 0},
    }
    async with session.ws_connect(csim.ws_url):
        assert csim.stats()["connections"]["accepted"] == 1


async def test_bad_control_requests_get_400_and_change_nothing(
    csim: Simulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = csim.http_url + "/control/"
    cases: list[tuple[str, str, bytes | None]] = [
        ("GET", "nope", None),
        ("GET", "", None),
        ("GET", "drop", None),  # the right name with the wrong method
        ("POST", "links", b"{}"),
        ("DELETE", "stats", None),
        ("POST", "drop", b"{not json"),
        ("POST", "drop", b"[1]"),
        ("POST", "drop", b'"x"'),
        ("POST", "drop", b'{"link": true}'),
        ("POST", "drop", b'{"link": 1.5}'),
        ("POST", "drop", b'{"everything": 1}'),
        ("POST", "refuse", b"{}"),
        ("POST", "refuse", b'{"seconds": -2}'),
        ("POST", "refuse", b'{"seconds": 1e999}'),
        ("POST", "restart", b'{"down": null}'),
        ("POST", "restart", b'{"down": 1, "up": 2}'),
        ("POST", "drop", b"[" * 10_000 + b"]" * 10_000),
        ("POST", "drop", b"{" + b" " * 70_000 + b"}"),
        ("POST", "stall", b"\xff\xfe"),
    ]
    async with session.ws_connect(csim.ws_url) as ws:
        for method, op, body in cases:
            async with session.request(method, url + op, data=body) as resp:
                assert resp.status == 400, (method, op, resp.status)
                answer = await resp.json()
                assert set(answer) == {"error"} and answer["error"], (method, op)
        await ws.send_json({"method": "ping"})
        await recv_until(ws, channel("pong"))
        assert csim.connection_count() == 1
    assert csim.stats()["drops"]["control"] == 0 and csim.stats()["refusals"] == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

"""The WebSocket endpoint on real sockets (127.0.0.1, free port) with aiohttp's client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import aiohttp
import pytest

from hlgateway.simulator import Simulator
from tests.helpers import eventually

from .conftest import (
    FAST,
    USER,
    USER_LOWER,
    Frame,
    channel,
    recv,
    recv_until,
    subscribe,
)

WS_FILL_KEYS = {
    "coin", "px", "sz", "side", "time", "startPosition", "dir", "closedPnl",
    "hash", "oid", "crossed", "fee", "tid", "feeToken", "twapId",
}  # fmt: skip
OPTIONAL_FILL_KEYS = {"builderFee", "liquidation"}  # only when they apply
ORDER_KEYS = {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "cloid"}
CTX_KEYS = {
    "funding", "openInterest", "prevDayPx", "dayNtlVlm", "premium", "oraclePx",
    "markPx", "midPx", "impactPxs", "dayBaseVlm",
}  # fmt: skip


def is_decimal_string(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return "e" not in value.lower()


async def error_for(ws: aiohttp.ClientWebSocketResponse, message: Any) -> str:
    if isinstance(message, str):
        await ws.send_str(message)
    else:
        await ws.send_json(message)
    frame, _ = await recv_until(ws, channel("error"))
    assert set(frame) == {"channel", "data"}
    text = frame["data"]
    assert isinstance(text, str)
    return text


async def test_ack_shapes_are_normalized(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        ack = await subscribe(ws, {"type": "l2Book", "coin": "BTC"})
        assert ack == {
            "channel": "subscriptionResponse",
            "data": {
                "method": "subscribe",
                "subscription": {
                    "type": "l2Book",
                    "coin": "BTC",
                    "nSigFigs": None,
                    "mantissa": None,
                    "fast": False,
                },
            },
        }
        ack = await subscribe(ws, {"type": "userFills", "user": USER})
        assert ack["data"]["subscription"] == {
            "type": "userFills",
            "user": USER_LOWER,
            "aggregateByTime": False,
        }
        await ws.send_json(
            {"method": "unsubscribe", "subscription": {"type": "trades", "coin": "x"}}
        )
        assert (await recv_until(ws, channel("error")))[0]["data"].startswith(
            "Invalid subscription"
        )
        await ws.send_json(
            {"method": "unsubscribe", "subscription": {"type": "l2Book", "coin": "BTC"}}
        )
        ack, _ = await recv_until(ws, channel("subscriptionResponse"))
        assert ack["data"]["method"] == "unsubscribe"
        assert ack["data"]["subscription"]["nSigFigs"] is None
        assert sim.active_subscriptions() == [
            {"type": "userFills", "user": USER_LOWER, "aggregateByTime": False}
        ]


async def test_ping_pong(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await ws.send_json({"method": "ping"})
        assert await recv(ws) == {"channel": "pong"}


async def test_error_frames_use_hyperliquid_wording(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        prefix = "Error parsing JSON into valid websocket request: "
        assert await error_for(ws, "not json") == prefix + "not json"
        assert await error_for(ws, "[1,2]") == prefix + "[1,2]"
        assert (await error_for(ws, {"method": "subscribe"})).startswith(prefix)
        assert (await error_for(ws, {"method": "dance"})).startswith(prefix)
        assert (await error_for(ws, {"method": "post", "id": "x", "request": {}})).startswith(
            prefix
        )
        await ws.send_bytes(b"\x00\x01")
        assert (await recv_until(ws, channel("error")))[0]["data"].startswith(prefix)

        invalid = await error_for(ws, {"method": "subscribe", "subscription": {"type": "nope"}})
        assert invalid == 'Invalid subscription {"type":"nope"}'
        invalid = await error_for(
            ws, {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "KPEPE"}}
        )
        assert invalid.startswith("Invalid subscription ")

        await subscribe(ws, {"type": "trades", "coin": "kPEPE"})
        again = await error_for(
            ws, {"method": "subscribe", "subscription": {"type": "trades", "coin": "kPEPE"}}
        )
        assert again == 'Already subscribed: {"type":"trades","coin":"kPEPE"}'
        gone = await error_for(
            ws, {"method": "unsubscribe", "subscription": {"type": "trades", "coin": "SOL"}}
        )
        assert gone == 'Already unsubscribed: {"type":"trades","coin":"SOL"}'
        # The link survives all of that.
        await ws.send_json({"method": "ping"})
        await recv_until(ws, channel("pong"))


async def test_users_compare_case_insensitively(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "orderUpdates", "user": USER})
        text = await error_for(
            ws,
            {"method": "subscribe", "subscription": {"type": "orderUpdates", "user": USER_LOWER}},
        )
        assert text.startswith("Already subscribed: ")
        await ws.send_json(
            {
                "method": "unsubscribe",
                "subscription": {"type": "orderUpdates", "user": "0x" + USER[2:].upper()},
            }
        )
        ack, _ = await recv_until(ws, channel("subscriptionResponse"))
        assert ack["data"] == {
            "method": "unsubscribe",
            "subscription": {"type": "orderUpdates", "user": USER_LOWER},
        }


async def test_user_fills_snapshot_first_then_live(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "userFills", "user": USER})
        snapshot = await recv(ws)
        assert snapshot["channel"] == "userFills"
        data = snapshot["data"]
        assert data["isSnapshot"] is True and data["user"] == USER_LOWER
        assert data["fills"], "the first subscription sees invented recent history"
        seen = {f["tid"] for f in data["fills"]}
        last_time = max(f["time"] for f in data["fills"])
        loop = asyncio.get_running_loop()
        last_arrival = loop.time()
        live: list[dict[str, Any]] = []
        while len(live) < 3:
            frame, _ = await recv_until(ws, channel("userFills"), timeout=FAST.max_fill_gap + 1)
            now = loop.time()
            assert now - last_arrival <= FAST.max_fill_gap + 0.3
            last_arrival = now
            assert "isSnapshot" not in frame["data"]
            assert frame["data"]["user"] == USER_LOWER
            live += frame["data"]["fills"]
        for fill in data["fills"] + live:
            assert WS_FILL_KEYS <= set(fill) <= WS_FILL_KEYS | OPTIONAL_FILL_KEYS, fill
            assert fill["twapId"] is None
            spot = fill["coin"] in ("PURR/USDC", "@107", "@142")
            # Spot fees are paid in the token received: the base on a buy.
            fee_token = {"PURR/USDC": "PURR", "@107": "HYPE", "@142": "UBTC"}.get(fill["coin"])
            if spot and fill["side"] == "B":
                assert fill["feeToken"] == fee_token and fill["dir"] == "Buy"
            else:
                assert fill["feeToken"] == "USDC"
            assert fill["side"] in ("B", "A") and isinstance(fill["crossed"], bool)
            for key in ("px", "sz", "startPosition", "closedPnl", "fee"):
                assert is_decimal_string(fill[key]), (key, fill)
            assert fill["hash"].startswith("0x") and len(fill["hash"]) == 66
        assert not seen & {f["tid"] for f in live}
        assert min(f["time"] for f in live) >= last_time
        wallet = sim.world.accounts.wallet(USER)
        assert wallet is not None
        assert [f.tid for f in wallet.fills()][: len(seen) + len(live)] == [
            f["tid"] for f in data["fills"] + live
        ]


async def test_order_updates_and_user_events(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "orderUpdates", "user": USER})
        await subscribe(ws, {"type": "userEvents", "user": USER})
        statuses: set[str] = set()
        updates: list[dict[str, Any]] = []
        events: list[Frame] = []
        while not ({"open", "filled"} <= statuses and events):
            frame, _ = await recv_until(
                ws, lambda f: f["channel"] in ("orderUpdates", "user"), timeout=3
            )
            if frame["channel"] == "user":
                events.append(frame)
                continue
            assert isinstance(frame["data"], list) and frame["data"]
            for update in frame["data"]:
                assert set(update) == {"order", "status", "statusTimestamp"}
                assert set(update["order"]) == ORDER_KEYS
                assert "user" not in update
                statuses.add(update["status"])
                updates.append(update)
        for event in events:
            assert set(event["data"]) == {"fills"}
            assert all(
                WS_FILL_KEYS <= set(f) <= WS_FILL_KEYS | OPTIONAL_FILL_KEYS
                for f in event["data"]["fills"]
            )
        wallet = sim.world.accounts.wallet(USER)
        assert wallet is not None
        ledger = [(u.oid, u.status, u.status_timestamp) for u in wallet.order_history()]
        received = [(u["order"]["oid"], u["status"], u["statusTimestamp"]) for u in updates]
        start = ledger.index(received[0])
        assert ledger[start : start + len(received)] == received


async def test_clearinghouse_state_on_subscribe_and_on_change(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "clearinghouseState", "user": USER})
        first = await recv(ws)
        assert first["channel"] == "clearinghouseState"
        assert first["data"]["dex"] == "" and first["data"]["user"] == USER_LOWER
        state = first["data"]["clearinghouseState"]
        assert set(state) == {
            "marginSummary", "crossMarginSummary", "crossMaintenanceMarginUsed",
            "withdrawable", "assetPositions", "time",
        }  # fmt: skip
        assert set(state["marginSummary"]) == {
            "accountValue", "totalNtlPos", "totalRawUsd", "totalMarginUsed",
        }  # fmt: skip
        second, _ = await recv_until(ws, channel("clearinghouseState"), timeout=3)
        changed = second["data"]["clearinghouseState"]
        assert {k: v for k, v in changed.items() if k != "time"} != {
            k: v for k, v in state.items() if k != "time"
        }


async def test_market_data_pushes(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "allMids"})
        await subscribe(ws, {"type": "l2Book", "coin": "kPEPE"})
        await subscribe(ws, {"type": "l2Book", "coin": "BTC", "nSigFigs": 2})
        await subscribe(ws, {"type": "trades", "coin": "ETH"})
        await subscribe(ws, {"type": "bbo", "coin": "SOL"})
        await subscribe(ws, {"type": "activeAssetCtx", "coin": "DOGE"})
        counts: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline and not (
            counts.get("allMids", 0) >= 3
            and counts.get("l2Book", 0) >= 6
            and counts.get("trades", 0) >= 1
            and counts.get("bbo", 0) >= 2
            and counts.get("activeAssetCtx", 0) >= 2
        ):
            frame = await recv(ws)
            name = frame["channel"]
            counts[name] = counts.get(name, 0) + 1
            data = frame["data"]
            if name == "allMids":
                assert set(data) == {"mids"} and "kPEPE" in data["mids"]
                assert all(is_decimal_string(v) for v in data["mids"].values())
            elif name == "l2Book":
                bids, asks = data["levels"]
                assert [float(b["px"]) for b in bids] == sorted(
                    (float(b["px"]) for b in bids), reverse=True
                )
                assert [float(a["px"]) for a in asks] == sorted(float(a["px"]) for a in asks)
                assert float(bids[0]["px"]) < float(asks[0]["px"])
                if data["coin"] == "kPEPE":
                    assert len(bids) == 20 and len(asks) == 20
                else:
                    assert data["coin"] == "BTC" and len(bids) <= 2
                    assert all(float(lvl["px"]) % 1000 == 0 for lvl in bids + asks)
                assert isinstance(data["time"], int)
            elif name == "trades":
                assert data and all(t["coin"] == "ETH" for t in data)
                assert set(data[0]) == {"coin", "side", "px", "sz", "time", "hash", "tid", "users"}
            elif name == "bbo":
                assert data["coin"] == "SOL" and len(data["bbo"]) == 2
            elif name == "activeAssetCtx":
                assert data["coin"] == "DOGE" and set(data["ctx"]) == CTX_KEYS
        assert counts.get("trades", 0) >= 1 and counts.get("activeAssetCtx", 0) >= 2, counts
        assert counts.get("l2Book", 0) >= 6 and counts.get("allMids", 0) >= 3, counts


async def test_connections_are_cleaned_up(session: aiohttp.ClientSession) -> None:
    sim = Simulator(dataclasses.replace(FAST, track_grace=0))
    await sim.start()
    try:
        await _connections_are_cleaned_up(sim, session)
    finally:
        await sim.stop()


async def _connections_are_cleaned_up(sim: Simulator, session: aiohttp.ClientSession) -> None:
    first = await session.ws_connect(sim.ws_url)
    second = await session.ws_connect(sim.ws_url)
    await subscribe(first, {"type": "allMids"})
    await subscribe(first, {"type": "userFills", "user": USER})
    await subscribe(second, {"type": "orderUpdates", "user": USER_LOWER})
    assert sim.connection_count() == 2
    assert len(sim.active_subscriptions()) == 3
    assert USER_LOWER in sim.world.accounts.tracked_users()
    await first.close()
    await eventually(lambda: sim.connection_count() == 1)
    assert sim.active_subscriptions() == [{"type": "orderUpdates", "user": USER_LOWER}]
    assert USER_LOWER in sim.world.accounts.tracked_users()
    await second.close()
    await eventually(lambda: sim.connection_count() == 0)
    assert sim.active_subscriptions() == []
    assert sim.world.accounts.tracked_users() == []


async def test_stop_closes_client_links(session: aiohttp.ClientSession) -> None:
    sim = Simulator(FAST)
    await sim.start()
    url = sim.ws_url
    ws = await session.ws_connect(url)
    await subscribe(ws, {"type": "allMids"})
    await sim.stop()
    msg = await recv_until_closed(ws)
    assert msg in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert sim.connection_count() == 0
    async with aiohttp.ClientSession() as other:
        try:
            await other.ws_connect(url)
        except aiohttp.ClientError:
            pass
        else:  # pragma: no cover - the listener must be gone
            raise AssertionError("listener still accepting after stop()")


async def recv_until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMsgType:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return msg.type


async def test_drop_connections_cuts_links(sim: Simulator, session: aiohttp.ClientSession) -> None:
    ws = await session.ws_connect(sim.ws_url)
    await subscribe(ws, {"type": "allMids"})
    assert sim.drop_connections() == 1
    kind = await recv_until_closed(ws)
    assert kind in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    await eventually(lambda: sim.connection_count() == 0)


async def test_limits(session: aiohttp.ClientSession) -> None:
    config = dataclasses.replace(FAST, max_users=2, max_subscriptions=4)
    sim = Simulator(config)
    await sim.start()
    try:
        async with session.ws_connect(sim.ws_url) as ws:
            await subscribe(ws, {"type": "userFills", "user": "0x" + "01" * 20})
            await subscribe(ws, {"type": "orderUpdates", "user": "0x" + "02" * 20})
            await subscribe(ws, {"type": "userEvents", "user": "0x" + "01" * 20})
            text = await error_for(
                ws, {"method": "subscribe", "subscription": {"type": "userFills", "user": USER}}
            )
            assert text == "Cannot track more than 2 total users."
            await subscribe(ws, {"type": "allMids"})
            text = await error_for(
                ws, {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}}
            )
            assert text == "Cannot subscribe to more than 4 channels."
    finally:
        await sim.stop()

    sim = Simulator(dataclasses.replace(FAST, max_messages_per_minute=3))
    await sim.start()
    try:
        async with session.ws_connect(sim.ws_url) as ws:
            for _ in range(3):
                await ws.send_json({"method": "ping"})
                await recv_until(ws, channel("pong"))
            text = await error_for(ws, {"method": "ping"})
            assert text == "Cannot send more than 3 messages per minute."
    finally:
        await sim.stop()


async def test_idle_connections_are_dropped(session: aiohttp.ClientSession) -> None:
    sim = Simulator(dataclasses.replace(FAST, idle_timeout=0.3))
    await sim.start()
    try:
        ws = await session.ws_connect(sim.ws_url)
        await recv_until_closed(ws)
        await eventually(lambda: sim.connection_count() == 0)
        # A subscribed connection keeps receiving data and so stays up.
        busy = await session.ws_connect(sim.ws_url)
        await subscribe(busy, {"type": "allMids"})
        for _ in range(10):
            await recv_until(busy, channel("allMids"))
        assert sim.connection_count() == 1
        await busy.close()
    finally:
        await sim.stop()


async def test_post_requests_over_ws(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(sim.ws_url) as ws:
        await ws.send_json(
            {
                "method": "post",
                "id": 7,
                "request": {"type": "info", "payload": {"type": "l2Book", "coin": "ETH"}},
            }
        )
        frame, _ = await recv_until(ws, channel("post"))
        assert frame["data"]["id"] == 7
        response = frame["data"]["response"]
        assert response["type"] == "info"
        assert response["payload"]["type"] == "l2Book"
        assert response["payload"]["data"]["coin"] == "ETH"
        await ws.send_json(
            {"method": "post", "id": 8, "request": {"type": "info", "payload": {"type": "x"}}}
        )
        frame, _ = await recv_until(ws, channel("post"))
        assert frame["data"] == {
            "id": 8,
            "response": {
                "type": "error",
                "payload": "Failed to deserialize the JSON body into the target type: "
                "unknown variant `x`",
            },
        }
        await ws.send_json(
            {"method": "post", "id": 9, "request": {"type": "action", "payload": {}}}
        )
        frame, _ = await recv_until(ws, channel("post"))
        assert frame["data"]["response"]["type"] == "error"


async def test_garbage_never_breaks_the_server(
    sim: Simulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    user = "0x" + "ab" * 20
    nasty: list[str] = [
        "",
        " ",
        "null",
        "0",
        '"ping"',
        "[" * 5_000 + "]" * 5_000,
        '{"method":"subscribe","subscription":' + "[" * 5_000 + "]" * 5_000 + "}",
        '{"method":null}',
        '{"method":"subscribe","subscription":null}',
        '{"method":"subscribe","subscription":[]}',
        '{"method":"subscribe","subscription":{"type":null}}',
        '{"method":"subscribe","subscription":{"type":"l2Book","coin":null}}',
        '{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC","nSigFigs":5.0}}',
        '{"method":"subscribe","subscription":{"type":"l2Book","coin":"' + "x" * 100_000 + '"}}',
        '{"method":"subscribe","subscription":{"type":"userFills","user":12}}',
        '{"method":"subscribe","subscription":{"type":"userFills","user":"' + user + '\\u0000"}}',
        '{"method":"unsubscribe","subscription":{"type":"trades","coin":"\\ud800"}}',
        '{"method":"post","id":1}',
        '{"method":"post","id":1,"request":{"type":"info","payload":null}}',
        '{"method":"post","id":1,"request":{"type":"info","payload":{"type":"l2Book","coin":[]}}}',
        '{"method":"post","id":1e400,"request":{}}',
        '{"method":"ping","extra":' + "9" * 5_000 + "}",
        "NaN",
        "\u2603",
    ]
    async with session.ws_connect(sim.ws_url) as ws:
        for text in nasty:
            await ws.send_str(text)
            frame, _ = await recv_until(ws, lambda f: f["channel"] in ("error", "post", "pong"))
            if frame["channel"] == "error":
                assert len(frame["data"]) < 2_100
        await ws.send_json({"method": "ping"})
        await recv_until(ws, channel("pong"))
        await subscribe(ws, {"type": "l2Book", "coin": "BTC"})
        await recv_until(ws, channel("l2Book"))
    async with session.get(sim.http_url + "/ws") as resp:  # not an upgrade request
        assert resp.status == 400
    await eventually(lambda: sim.connection_count() == 0)
    # Every bad input took a handled path, none an unexpected exception.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

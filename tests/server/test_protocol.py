"""Every row of the spec's envelope table, the error codes and the error window, on real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import (
    Client,
    GatewayServer,
    alice_token,
    eventually,
    make_settings,
    token,
)


@pytest.fixture
async def alice(server: GatewayServer) -> AsyncIterator[Client]:
    client = await Client.connect(server.ws, alice_token())
    assert (await client.recv())["type"] == "welcome"
    yield client
    await client.close()


async def test_subscribe_and_unsubscribe_echo_canonical_params_and_id(alice: Client) -> None:
    reply = await alice.request(
        {"type": "subscribe", "channel": "prices", "params": {"symbols": ["eth", "BTC"]}, "id": 1}
    )
    assert reply["type"] == "subscribed" and reply["id"] == 1
    assert reply["channel"] == "prices" and reply["params"] == {"symbols": ["BTC", "ETH"]}
    assert isinstance(reply["timestamp"], int)
    data = await alice.data("prices")
    assert data["params"] == {"symbols": ["BTC", "ETH"]}
    reply = await alice.request(
        {
            "type": "unsubscribe",
            "channel": "prices",
            "params": {"symbols": ["ETH", "BTC"]},
            "id": "u",
        }
    )
    assert (reply["type"], reply["id"], reply["params"]) == (
        "unsubscribed",
        "u",
        {"symbols": ["BTC", "ETH"]},
    )
    # No data for it afterwards: another prices subscription, fed by the same upstream
    # ticks, receives three messages while the unsubscribed one receives none.
    await alice.request({"type": "subscribe", "channel": "prices", "params": {"symbols": ["SOL"]}})
    for _ in range(3):
        await alice.data("prices")
    after = alice.seen[alice.seen.index(reply) + 1 :]
    assert all(m["params"] == {"symbols": ["SOL"]} for m in after if m["type"] == "data")


async def test_ping_pong(alice: Client) -> None:
    reply = await alice.request({"type": "ping", "id": "p1"})
    assert reply["type"] == "pong" and reply["id"] == "p1" and isinstance(reply["timestamp"], int)
    await alice.send({"type": "ping"})
    assert (await alice.recv())["type"] == "pong"


async def test_rooms_and_admin_publish(server: GatewayServer, alice: Client) -> None:
    assert (await alice.request({"type": "join_room", "room": "desk"}))["type"] == "room_joined"
    outsider = await Client.connect(server.ws, token("eve"))
    await outsider.recv()
    async with alice.session.post(
        f"{server.http}/api/rooms/desk/publish",
        json={"data": {"note": "hello desk"}},
        headers={"Authorization": f"Bearer {token('root', role='admin')}"},
    ) as resp:
        assert resp.status == 202
        assert (await resp.json())["delivered"] == 1
    msg = await alice.data("room")
    assert msg["params"] == {"room": "desk"} and msg["data"] == {"note": "hello desk"}
    for headers, status in (
        ({"Authorization": f"Bearer {token('bob')}"}, 403),
        ({}, 401),
        ({"Authorization": "Bearer garbage"}, 401),
    ):
        async with alice.session.post(
            f"{server.http}/api/rooms/desk/publish", json={"data": 1}, headers=headers
        ) as resp:
            assert resp.status == status
    left = await alice.request({"type": "leave_room", "room": "desk"})
    assert left["type"] == "room_left" and left["room"] == "desk"
    await outsider.request({"type": "ping"})
    assert [m["type"] for m in outsider.seen] == ["welcome", "pong"]
    await outsider.close()


async def test_auth_refresh(alice: Client) -> None:
    reply = await alice.request({"type": "auth", "token": alice_token(ttl_seconds=600)})
    assert reply["type"] == "authenticated" and isinstance(reply["expiresAt"], int)
    bad = await alice.request({"type": "auth", "token": "junk"})
    assert bad["type"] == "error" and bad["code"] == "FORBIDDEN"


BAD_INPUT = [
    ("not json", "INVALID_MESSAGE"),
    ("[1,2,3]", "INVALID_MESSAGE"),
    ('{"type":42,"id":"e1"}', "INVALID_MESSAGE"),
    ('{"type":"subscribe","channel":7,"id":"e1"}', "INVALID_MESSAGE"),
    ('{"type":"teleport","id":"e1"}', "UNKNOWN_TYPE"),
    ('{"type":"subscribe","channel":"klines","id":"e1"}', "UNKNOWN_CHANNEL"),
    (
        '{"type":"subscribe","channel":"orderbook","params":{"symbol":"BTC","depth":99},"id":"e1"}',
        "INVALID_PARAMS",
    ),
    (
        '{"type":"subscribe","channel":"prices","params":{"symbols":["NOPECOIN"]},"id":"e1"}',
        "INVALID_PARAMS",
    ),
    (
        '{"type":"subscribe","channel":"user_fills","params":{"userId":"bob"},"id":"e1"}',
        "FORBIDDEN",
    ),
    (
        '{"type":"unsubscribe","channel":"trades","params":{"symbol":"BTC"},"id":"e1"}',
        "NOT_SUBSCRIBED",
    ),
]


@pytest.mark.parametrize(("raw", "code"), BAD_INPUT)
async def test_bad_input_gets_a_coded_error_and_the_connection_lives(
    alice: Client, raw: str, code: str
) -> None:
    await alice.send(raw)
    error = await alice.recv()
    assert error["type"] == "error" and error["code"] == code, error
    assert error["message"] and isinstance(error["timestamp"], int)
    if '"id":"e1"' in raw:
        assert error.get("id") == "e1"
    if code in ("UNKNOWN_CHANNEL", "INVALID_PARAMS", "FORBIDDEN", "NOT_SUBSCRIBED"):
        assert error["channel"] == json.loads(raw)["channel"]
    assert (await alice.request({"type": "ping"}))["type"] == "pong"


async def test_binary_frames_are_invalid_messages(alice: Client) -> None:
    await alice.ws.send_bytes(b'{"type":"ping"}')
    error = await alice.recv()
    assert error["code"] == "INVALID_MESSAGE"


async def test_more_than_ten_bad_messages_a_minute_close_with_1008(alice: Client) -> None:
    for _ in range(11):
        await alice.send("{bad")
    code, reason = await alice.closed()
    assert (code, reason) == (1008, "Too many errors")
    assert sum(1 for m in alice.seen if m["type"] == "error") == 11


async def test_oversized_message_closes_with_1009(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings(max_message_bytes=1024))
    await srv.start()
    try:
        client = await Client.connect(srv.ws, alice_token())
        await client.recv()
        await client.send({"type": "ping", "pad": "x" * 2048})
        code, _ = await client.closed()
        assert code == 1009
        await client.close()
    finally:
        await srv.stop()


async def test_token_expiry_closes_with_4001_unless_refreshed(server: GatewayServer) -> None:
    lapsing = await Client.connect(server.ws, alice_token(ttl_seconds=1))
    refreshed = await Client.connect(server.ws, alice_token(ttl_seconds=1))
    await lapsing.recv()
    await refreshed.recv()
    reply = await refreshed.request({"type": "auth", "token": alice_token(ttl_seconds=60)})
    assert reply["type"] == "authenticated"
    assert await lapsing.closed(timeout=5) == (4001, "Token expired")
    # The sweep that closed `lapsing` saw the same first deadline on `refreshed`: it outlives it.
    assert (await refreshed.request({"type": "ping"}))["type"] == "pong"
    await lapsing.close()
    await refreshed.close()


async def test_a_refresh_to_an_earlier_expiry_closes_then(server: GatewayServer) -> None:
    # The sweeper visits a connection when it is due (server/timing_wheel.py): a refreshed
    # token that expires sooner than the first must move that visit earlier.
    client = await Client.connect(server.ws, alice_token(ttl_seconds=600))
    await client.recv()
    reply = await client.request({"type": "auth", "token": alice_token(ttl_seconds=1)})
    assert reply["type"] == "authenticated"
    assert await client.closed(timeout=5) == (4001, "Token expired")
    await client.close()


async def test_heartbeat_drops_a_client_that_never_answers(simulator: Simulator) -> None:
    srv = GatewayServer(
        sim_endpoint(simulator),
        make_settings(heartbeat_interval=0.2, heartbeat_timeout=0.5),
    )
    await srv.start()
    try:
        # autoping=False: this client never answers the server's pings.
        silent = await Client.connect(srv.ws, alice_token(), autoping=False)
        # The lively one answers each ping itself, so it can count them.
        lively = await Client.connect(srv.ws, alice_token(), autoping=False)
        await silent.recv()
        await lively.recv()
        pings = 0

        async def answer() -> None:
            nonlocal pings
            async for msg in lively.ws:
                if msg.type is aiohttp.WSMsgType.PING:
                    await lively.ws.pong(msg.data)
                    pings += 1

        answering = asyncio.ensure_future(answer())
        code, _ = await silent.closed(timeout=5)
        assert code is not None
        await eventually(lambda: len(srv.gateway.connections) == 1)
        (kept,) = srv.gateway.connections.values()
        # The sweep pings a connection only after judging it alive (the timeout is
        # checked first): three more pings span more than a timeout, each a verdict.
        seen = pings
        await eventually(lambda: pings >= seen + 3, 10)
        assert list(srv.gateway.connections.values()) == [kept]
        answering.cancel()
        await silent.close()
        await lively.close()
    finally:
        await srv.stop()


async def test_health(server: GatewayServer, alice: Client) -> None:
    await alice.request({"type": "subscribe", "channel": "trades", "params": {"symbol": "BTC"}})
    # The reply does not wait for the upstream link the subscription opened.
    await eventually(lambda: server.gateway.upstream.status == "connected")
    async with alice.session.get(f"{server.http}/health") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "healthy"
    assert body["websocket"]["clients"] == 1 and body["websocket"]["subscriptions"] == 1
    assert body["upstream"]["status"] == "connected" and body["upstream"]["network"] == "sim"
    assert "token" not in json.dumps(body).lower()

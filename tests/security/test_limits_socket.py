"""Each limit on real sockets: how it is answered, and its /health counter."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.helpers import Client, alice_token, bob_token, eventually
from tests.security.conftest import MakeServer


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    """Try an upgrade; the HTTP status it got (101 if it upgraded)."""
    try:
        client = await Client.connect(url, alice_token(), headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await client.close()
    return 101


async def test_new_connections_per_ip_per_minute_get_429(edge_server: MakeServer) -> None:
    srv = await edge_server(new_connections_per_minute=3)
    assert [await handshake_status(srv.ws) for _ in range(4)] == [101, 101, 101, 429]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{srv.ws}?token={alice_token()}") as resp,
    ):
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
    health = await srv.health()
    assert health["limits"]["connectionsRefused"]["newConnectionsPerIp"] == 2


async def test_open_connections_per_ip(edge_server: MakeServer) -> None:
    srv = await edge_server(max_connections_per_ip=2, new_connections_per_minute=0)
    first = await Client.connect(srv.ws, alice_token())
    second = await Client.connect(srv.ws, bob_token())
    assert await handshake_status(srv.ws) == 429
    await first.close()
    await eventually(lambda: len(srv.gateway.connections) < 2)
    assert await handshake_status(srv.ws) == 101
    await second.close()
    assert (await srv.health())["limits"]["connectionsRefused"]["openConnectionsPerIp"] == 1


async def test_a_full_process_answers_503_with_retry_after(edge_server: MakeServer) -> None:
    # HLGATEWAY_MAX_CONNECTIONS: the clients one process holds (server/capacity.py).
    srv = await edge_server(max_connections=2, max_connections_per_ip=0)
    first = await Client.connect(srv.ws, alice_token())
    second = await Client.connect(srv.ws, bob_token())
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{srv.ws}?token={alice_token()}",
            headers={"Connection": "Upgrade", "Upgrade": "websocket"},
        ) as resp,
    ):
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert "server full" in await resp.text()
    # The two held are served on as before.
    await second.request({"type": "ping"})
    await first.close()
    await eventually(lambda: len(srv.gateway.connections) < 2)
    assert await handshake_status(srv.ws) == 101
    await second.close()
    assert (await srv.health())["limits"]["connectionsRefused"]["serverFull"] == 1


async def test_open_connections_per_user_close_with_1008(edge_server: MakeServer) -> None:
    srv = await edge_server(max_connections_per_user=1)
    first = await Client.connect(srv.ws, alice_token())
    assert (await first.recv())["type"] == "welcome"
    second = await Client.connect(srv.ws, alice_token())
    assert await second.closed() == (1008, "Too many connections")
    assert second.seen == []  # no welcome, no data
    bob = await Client.connect(srv.ws, bob_token())  # another user is not affected
    assert (await bob.recv())["type"] == "welcome"
    await first.close()
    await eventually(lambda: len(srv.gateway.connections) == 1)
    third = await Client.connect(srv.ws, alice_token())
    assert (await third.recv())["type"] == "welcome"
    for c in (second, bob, third):
        await c.close()
    assert (await srv.health())["limits"]["connectionsRefused"]["openConnectionsPerUser"] == 1


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(edge_server: MakeServer) -> None:
    behind = await edge_server(new_connections_per_minute=1, trusted_proxies=("127.0.0.1",))
    xff = {"X-Forwarded-For": "203.0.113.1"}
    assert await handshake_status(behind.ws, xff) == 101
    assert await handshake_status(behind.ws, {"X-Forwarded-For": "203.0.113.2"}) == 101
    assert await handshake_status(behind.ws, xff) == 429
    # Without a trusted proxy the header is the client's word and is ignored.
    direct = await edge_server(new_connections_per_minute=1)
    assert await handshake_status(direct.ws, xff) == 101
    assert await handshake_status(direct.ws, {"X-Forwarded-For": "203.0.113.2"}) == 429


async def test_message_flood_gets_rate_limited_then_1008(edge_server: MakeServer) -> None:
    srv = await edge_server(message_rate=0.01, message_burst=3, error_limit=5)
    client = await Client.connect(srv.ws, alice_token())
    await client.recv()
    client.seen.clear()
    for i in range(20):
        await client.send({"type": "ping", "id": i})
    assert await client.closed() == (1008, "Rate limit exceeded")
    kinds = [m.get("code", m["type"]) for m in client.seen]
    assert kinds == ["pong"] * 3 + ["RATE_LIMITED"] * 6
    assert [m["id"] for m in client.seen] == list(range(9))  # each refusal names its request
    await client.close()
    limits = (await srv.health())["limits"]
    assert limits["requestsRefused"]["rateLimited"] == 6
    assert limits["connectionsCut"]["rateLimited"] == 1


async def test_subscriptions_and_rooms_per_connection(edge_server: MakeServer) -> None:
    srv = await edge_server(max_subscriptions=2, max_rooms=1)
    client = await Client.connect(srv.ws, alice_token())
    await client.recv()
    replies = []
    for symbol in ("BTC", "ETH", "SOL"):
        replies.append(
            await client.request(
                {"type": "subscribe", "channel": "trades", "params": {"symbol": symbol}}
            )
        )
    replies.append(await client.request({"type": "join_room", "room": "a"}))
    replies.append(await client.request({"type": "join_room", "room": "b"}))
    assert [r.get("code", r["type"]) for r in replies] == [
        "subscribed",
        "subscribed",
        "TOO_MANY_SUBSCRIPTIONS",
        "room_joined",
        "TOO_MANY_SUBSCRIPTIONS",
    ]
    assert srv.gateway.hub.subscription_count == 3
    await client.close()
    refused = (await srv.health())["limits"]["requestsRefused"]
    assert (refused["tooManySubscriptions"], refused["tooManyRooms"]) == (1, 1)


async def test_oversized_message_is_1009_and_counted(edge_server: MakeServer) -> None:
    srv = await edge_server(max_message_bytes=1024)
    client = await Client.connect(srv.ws, alice_token())
    await client.recv()
    await client.send({"type": "ping", "pad": "x" * 4096})
    code, _ = await client.closed()
    assert code == 1009
    await client.close()
    await eventually(lambda: not srv.gateway.connections)
    assert (await srv.health())["limits"]["connectionsCut"]["messageTooBig"] == 1


async def test_slowloris_request_heads_are_cut(edge_server: MakeServer) -> None:
    srv = await edge_server(request_head_timeout=0.5)
    well_behaved = await Client.connect(srv.ws, alice_token())
    await well_behaved.recv()
    loop = asyncio.get_running_loop()

    # Each duration starts before the connect, so before the server can have accepted
    # (its deadline runs from the accept): a busy loop cannot make a cut look early.
    async def dribble() -> float:
        """Send an upgrade request one header line every 0.1 s, forever; when was it cut?"""
        start = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for i in range(100):
                await asyncio.sleep(0.1)
                writer.write(f"X-Slow-{i}: a\r\n".encode())
                await writer.drain()
                if reader.at_eof():
                    break
            # The cut is an EOF, or a reset: the server aborts with a line it has
            # not read yet, or a line written after its close is answered with RST.
            await reader.read()
        except ConnectionError:
            pass
        writer.close()
        return loop.time() - start

    async def silent() -> float:
        start = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return loop.time() - start

    durations = await asyncio.gather(dribble(), dribble(), silent())
    # Not before the deadline; and cut, not left to dribble its 10 s (the counter
    # below says who cut them): 5 s is a bound, not a measurement.
    assert all(0.45 < d < 5 for d in durations), durations
    # The deadline cut nobody else: the upgraded client still talks.
    assert (await well_behaved.request({"type": "ping"}))["type"] == "pong"
    await well_behaved.close()
    assert (await srv.health())["limits"]["connectionsCut"]["slowRequestHeads"] == 3


async def test_keep_alive_http_requests_still_work(edge_server: MakeServer) -> None:
    srv = await edge_server(request_head_timeout=0.5)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"{srv.http}/health") as resp:
                assert resp.status == 200
                json.loads(await resp.text())


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        ("https://evil.example", (), 403),
        ("null", (), 403),
        ("https://App.Example:443/", ("https://app.example",), 101),
        ("https://app.example:8443", ("https://app.example",), 403),
        ("http://app.example", ("https://app.example",), 403),
    ],
)
async def test_origin_allow_list(
    edge_server: MakeServer, origin: str, allowed: tuple[str, ...], status: int
) -> None:
    srv = await edge_server(allowed_origins=allowed)
    assert await handshake_status(srv.ws, {"Origin": origin}) == status
    if status == 403:
        assert (await srv.health())["limits"]["connectionsRefused"]["origin"] == 1


async def test_missing_origin_can_be_refused(edge_server: MakeServer) -> None:
    strict = await edge_server(allow_missing_origin=False)
    assert await handshake_status(strict.ws) == 403
    assert await handshake_status(strict.ws, {"Origin": f"http://127.0.0.1:{strict.port}"}) == 101
    assert (await strict.health())["limits"]["connectionsRefused"]["missingOrigin"] == 1
    lenient = await edge_server()  # the default: bots without Origin are welcome
    assert await handshake_status(lenient.ws) == 101

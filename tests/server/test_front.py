"""The front protocol over real sockets: our own WebSocket handshake, the close
handshake, failing a connection, the hand-over of every other request to aiohttp,
and what an open connection costs (no task of its own)."""

from __future__ import annotations

import asyncio
import json
import struct

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State

from bench.fuzz.frames import CLOSE, PING, TEXT, frame, handshake
from tests.helpers import Client, GatewayServer, alice_token, eventually

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def server(unlimited_server: GatewayServer) -> GatewayServer:
    return unlimited_server


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def raw_connect(srv: GatewayServer, then: bytes = b"") -> Stream:
    """Handshake by hand; `then` goes out in the same write as the request head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(handshake(srv.port, alice_token()) + then)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    opcode, welcome = await read_frame(reader)
    assert opcode == TEXT and json.loads(welcome)["type"] == "welcome"
    return reader, writer


async def test_frames_sent_with_the_request_head_are_read(server: GatewayServer) -> None:
    ping = frame(TEXT, b'{"type":"ping","id":"early"}')
    reader, writer = await raw_connect(server, then=ping)
    opcode, pong = await read_frame(reader)
    assert opcode == TEXT and json.loads(pong)["type"] == "pong"
    writer.close()


async def test_client_close_is_echoed_then_the_server_hangs_up(server: GatewayServer) -> None:
    reader, writer = await raw_connect(server)
    writer.write(frame(PING, b"hi"))
    assert await read_frame(reader) == (0xA, b"hi")
    writer.write(frame(CLOSE, struct.pack("!H", 4321) + b"bye"))
    assert await read_frame(reader) == (CLOSE, struct.pack("!H", 4321))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed TCP
    await eventually(lambda: not server.gateway.connections)
    writer.close()


async def test_a_protocol_violation_fails_the_connection_at_once(server: GatewayServer) -> None:
    reader, writer = await raw_connect(server)
    writer.write(frame(TEXT, b'{"type":"ping"}', masked=False))  # clients must mask
    opcode, payload = await read_frame(reader)
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1002
    # No close handshake to wait for: the server hangs up right after its close frame.
    assert await asyncio.wait_for(reader.read(), 2) == b""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.http}/health") as resp,
    ):
        health = await resp.json()
    assert health["limits"]["connectionsCut"]["protocolErrors"] == 1
    writer.close()


async def test_other_requests_go_to_aiohttp_one_per_connection(server: GatewayServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http}/health") as resp:
            assert resp.status == 200 and resp.headers["Connection"] == "close"
        async with session.get(f"{server.http}/nope") as resp:
            assert resp.status == 404 and resp.headers["Connection"] == "close"
        # The same session then upgrades: on a new connection, answered by the front.
        ws = await session.ws_connect(f"{server.ws}?token={alice_token()}")
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.close()


async def test_an_open_connection_costs_no_task(server: GatewayServer) -> None:
    before = asyncio.all_tasks()
    streams = [await raw_connect(server) for _ in range(20)]
    client = await Client.connect(server.ws, alice_token())  # and one through aiohttp's client
    await client.recv()
    assert len(server.gateway.connections) == 21
    # Tasks the gateway may start meanwhile for its own reasons (upstream REST refreshes)
    # are not per connection; nothing from the server edge or aiohttp's request handler is.
    new = asyncio.all_tasks() - before
    origins = {task.get_coro().cr_code.co_filename for task in new}  # type: ignore[union-attr]
    assert not [f for f in origins if "/server/" in f or "web_protocol" in f], origins
    assert len(new) < 21
    for _, writer in streams:
        writer.close()
    await client.close()
    await eventually(lambda: not server.gateway.connections)


async def test_a_bug_in_the_handshake_costs_that_socket_only(
    server: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(token: str | None) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.gateway.verifier, "verify", broken)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(handshake(server.port, alice_token()))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 500 ")
    writer.close()
    monkeypatch.undo()
    assert server.edge.admission.open_from("127.0.0.1") == 0  # given back
    client = await Client.connect(server.ws, alice_token())  # the next one is served
    assert (await client.recv())["type"] == "welcome"
    await client.close()


async def test_the_clients_close_in_the_same_read_as_our_reason_to_close(
    server: GatewayServer,
) -> None:
    """Eleven refused messages (the error window closes with 1008) and the client's own
    close in one write: the server sees that close although it stopped reading messages,
    and ends with a FIN, not with the abort that waits for a close that never comes."""
    reader, writer = await raw_connect(server)
    junk = frame(TEXT, b"{not json")
    writer.write(junk * 11 + frame(CLOSE, struct.pack("!H", 1000)))
    codes = []
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == CLOSE:
            codes.append(struct.unpack("!H", payload[:2])[0])
            break
    assert codes == [1008]
    assert await asyncio.wait_for(reader.read(), 5) == b""  # FIN: an abort would be a reset
    writer.close()


@pytest.mark.parametrize("size", [1024 * 1024, 8 * 1024 * 1024])
async def test_an_oversized_message_gets_a_close_the_client_can_read(
    server: GatewayServer, size: int
) -> None:
    """The server refuses the message from its header, while the client is still
    sending: it writes its close, half-closes and reads on (discarding) until the
    client has sent it all and closed; an immediate close would reset the
    connection, and the reset can destroy the close frame before it is read."""
    reader, writer = await raw_connect(server)
    writer.write(frame(TEXT, b"x" * size))
    drained = asyncio.ensure_future(writer.drain())
    opcode, payload = await read_frame(reader)
    assert opcode == CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1009
    assert payload[2:] == b"message too big"
    await asyncio.wait_for(drained, 10)  # the server read every byte we sent
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # FIN, not a reset
    await eventually(lambda: not server.gateway.connections)
    writer.close()


async def test_an_oversized_message_from_a_library_client(server: GatewayServer) -> None:
    """As a new user would meet it: the websockets library sends 8 MiB and reads 1009."""
    url = f"{server.ws}?token={alice_token()}"
    ws = await connect(url, max_size=None, compression=None)
    assert json.loads(await ws.recv())["type"] == "welcome"
    with pytest.raises(ConnectionClosedError) as closed:
        await ws.send("x" * (8 * 1024 * 1024))
        await ws.recv()
    assert ws.state is State.CLOSED  # nothing left to close
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1009, "message too big")

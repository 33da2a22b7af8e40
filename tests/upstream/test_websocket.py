"""The upstream's client WebSocket (websockets' sans-I/O client under an asyncio
Protocol), against a real aiohttp WebSocket server on a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from websockets.utils import accept_key

from hlgateway.upstream import websocket
from hlgateway.upstream.websocket import HandshakeFailed, UpstreamSocket
from tests.helpers import eventually


@dataclass
class Server:
    url: str
    received: list[str] = field(default_factory=list)
    ends: list[aiohttp.WSMessage] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    # What the server does on each text frame it gets (default: echo it).
    on_text: Callable[[web.WebSocketResponse, str], object] | None = None


@contextlib.asynccontextmanager
async def raw_server(frames: bytes) -> AsyncIterator[tuple[str, bytearray]]:
    """A server that accepts the handshake, writes `frames` (raw, unmasked) and
    keeps the connection open; what the client sends after the handshake is
    collected in the bytearray."""
    heard = bytearray()
    served: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(asyncio.current_task())  # type: ignore[arg-type]
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode()
            + b"\r\n\r\n"
            + frames
        )
        try:
            while chunk := await reader.read(65536):
                heard.extend(chunk)
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/ws", heard
    finally:
        listener.close()
        # Each test cuts its socket: the server's side ends by itself.
        await asyncio.wait_for(asyncio.gather(*served, return_exceptions=True), 5)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    box: list[Server] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("refuse"):
            return web.Response(status=403, text="no")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        state = box[0]
        state.sockets.append(ws)
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                state.ends.append(msg)
                return ws
            state.received.append(msg.data)
            if state.on_text is None:
                await ws.send_str(msg.data)
            else:
                result = state.on_text(ws, msg.data)
                if asyncio.iscoroutine(result):
                    await result

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.append(Server(f"ws://127.0.0.1:{site.port}/ws"))
    yield box[0]
    await runner.cleanup()


def ignore(_: str) -> None:
    pass


async def opened(url: str, got: list[str], **kwargs: object) -> UpstreamSocket:
    socket = UpstreamSocket(url, got.append, **kwargs)  # type: ignore[arg-type]
    await socket.open()
    return socket


async def test_text_frames_both_ways_and_a_clean_close(server: Server) -> None:
    got: list[str] = []
    socket = await opened(server.url, got)
    assert not socket.closed and socket.local_port
    socket.send('{"method":"ping"}')
    socket.send("ünïcode")
    await eventually(lambda: len(got) == 2)
    assert got == ['{"method":"ping"}', "ünïcode"]  # in order, as sent
    await socket.close()
    assert socket.closed
    await eventually(lambda: bool(server.ends))
    assert server.ends[0].type is aiohttp.WSMsgType.CLOSE  # a closing handshake, 1000
    assert server.ends[0].data == 1000


async def test_a_fragmented_text_message_arrives_whole_and_binary_is_skipped() -> None:
    async with raw_server(
        b"\x82\x02\x00\x01"  # binary: not ours, counted
        + b"\x01\x03hel"  # text, not final
        + b"\x80\x02lo"  # its continuation, final
        + b"\x81\x02ok"
    ) as (url, _):
        got: list[str] = []
        garbage: list[None] = []
        socket = await opened(url, got, on_garbage=lambda: garbage.append(None))
        await eventually(lambda: got == ["hello", "ok"])
        assert len(garbage) == 1
        socket.abort()


async def test_a_ping_from_the_server_is_answered() -> None:
    async with raw_server(b"\x89\x04ping") as (url, heard):
        socket = await opened(url, [])
        # The client's pong: final, opcode 0xA, masked, payload "ping".
        await eventually(lambda: heard[:2] == b"\x8a\x84")
        mask, payload = heard[2:6], heard[6:10]
        assert bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) == b"ping"
        socket.abort()


async def test_a_server_close_ends_the_socket(server: Server) -> None:
    got: list[str] = []
    socket = await opened(server.url, got)
    await eventually(lambda: bool(server.sockets))
    await server.sockets[0].close(code=1001, message=b"going away")
    await asyncio.wait_for(socket.wait_closed(), 5)
    assert socket.closed
    socket.send("nobody listens")  # a no-op, not an error


async def test_abort_cuts_without_a_closing_handshake(server: Server) -> None:
    got: list[str] = []
    socket = await opened(server.url, got)
    assert socket.abort() is True
    await asyncio.wait_for(socket.wait_closed(), 5)
    await eventually(lambda: bool(server.ends))
    # The server saw the TCP connection go without a close frame from us.
    assert server.ends[0].type is not aiohttp.WSMsgType.CLOSE


async def test_a_refused_handshake_is_an_oserror(server: Server) -> None:
    socket = UpstreamSocket(server.url + "?refuse=1", ignore)
    with pytest.raises(HandshakeFailed):
        await socket.open()
    with pytest.raises(OSError):  # nobody listens there: a link retries it like any
        await UpstreamSocket("ws://127.0.0.1:1/ws", ignore).open()


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request, answers nothing
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        socket = UpstreamSocket(f"ws://127.0.0.1:{port}/ws", ignore)
        with pytest.raises(TimeoutError):
            await socket.open(timeout=0.2)
        assert socket.closed
    finally:
        listener.close()


async def test_frames_wait_their_turn_in_order_when_the_count_is_full(server: Server) -> None:
    """`send_now` says no: the frame and every later one wait for the gate, in order;
    nothing jumps the queue even when `send_now` has room again."""
    room = [False]
    turns: asyncio.Queue[None] = asyncio.Queue()
    gated: list[int] = []

    def send_now() -> bool:
        return room[0]

    async def send_gate() -> None:
        await turns.get()
        gated.append(1)

    got: list[str] = []
    socket = await opened(server.url, got, send_now=send_now, send_gate=send_gate)
    socket.send("1")
    room[0] = True
    socket.send("2")  # room now, but "1" is still waiting: behind it
    await asyncio.sleep(0)
    assert got == [] and server.received == []
    turns.put_nowait(None)
    turns.put_nowait(None)
    await eventually(lambda: got == ["1", "2"])
    assert len(gated) == 2
    socket.send("3")  # nothing waiting and room: at once, no gate
    await eventually(lambda: got == ["1", "2", "3"])
    assert len(gated) == 2
    await socket.close()


async def test_a_peer_that_never_closes_after_its_close_frame_is_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server's close frame is echoed; if the server then keeps the TCP connection
    open, the socket is cut after CLOSE_TIMEOUT rather than held for ever."""
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT", 0.05)
    async with raw_server(b"\x88\x02\x03\xe8") as (url, _):  # a close frame, 1000
        socket = await opened(url, [])
        await asyncio.wait_for(socket.wait_closed(), 5)
        assert socket.closed

"""A client WebSocket to Hyperliquid without a task between the socket and the link.

The `websockets` library's sans-I/O client (`ClientProtocol`: the handshake,
framing, masking, ping replies and the closing handshake) under an asyncio
`Protocol`: a text frame is handed to the link inside the loop's read callback,
and a frame sent is written to the socket at once. Over aiohttp's client each
way cost a wake of another task (a reader task, a sender task), a whole loop
turn spent behind whatever else is ready: for a post's round trip through the
gateway two more turns on the critical path (docs/benchmarks.md, "Order entry").

Sends are paced by Hyperliquid's per-IP message count: a frame goes out at once
when `send_now()` has room; otherwise it waits, with every later frame behind
it (order kept), for `send_gate()` in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # as the REST session's total timeout (upstream/pool.py)
CLOSE_TIMEOUT = 2.0  # how long a closing handshake may take before the socket is cut

TextSink = Callable[[str], None]
Gate = Callable[[], Awaitable[None]]


def _always() -> bool:
    return True


async def _open_gate() -> None:
    return None


class HandshakeFailed(OSError):
    """The server did not accept the WebSocket handshake (an OSError: a link retries it)."""


class UpstreamSocket(asyncio.Protocol):
    """One client WebSocket (`LinkTransport`): `open()` it, then `send()` text frames;
    text frames received go to `on_text`; a binary frame (Hyperliquid sends none) or
    text that is not UTF-8 calls `on_garbage` and is skipped."""

    def __init__(
        self,
        url: str,
        on_text: TextSink,
        *,
        send_now: Callable[[], bool] = _always,
        send_gate: Gate = _open_gate,
        on_garbage: Callable[[], None] = lambda: None,
    ) -> None:
        self._uri = parse_uri(url)
        self._on_text = on_text
        self._on_garbage = on_garbage
        self._send_now = send_now
        self._send_gate = send_gate
        # No size limit, as before (aiohttp's max_msg_size=0): snapshots can be large.
        self._ws = ClientProtocol(self._uri, max_size=None)
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[None] = loop.create_future()
        self._parts: list[bytes] | None = None  # a fragmented text message, so far
        self._backlog: deque[str] = deque()
        self._pacer: asyncio.Task[None] | None = None
        self._cut_timer: asyncio.TimerHandle | None = None

    # -- opening and closing ---------------------------------------------------------
    async def open(
        self,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        local_addr: tuple[str, int] | None = None,
        timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """Connect and complete the handshake; raises OSError or TimeoutError if not."""
        uri = self._uri
        loop = asyncio.get_running_loop()
        secure: ssl.SSLContext | None = None
        if isinstance(ssl_context, ssl.SSLContext):
            secure = ssl_context if uri.secure else None
        elif uri.secure:
            secure = _context(verify=ssl_context)
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: self,
                uri.host,
                uri.port,
                ssl=secure,
                server_hostname=uri.host if secure is not None else None,
                local_addr=local_addr,
            )
            try:
                await self._opened  # its setters check done(): a cancelled wait is safe
            except BaseException:
                self.abort()
                raise

    @property
    def local_port(self) -> int | None:
        """The socket's own port (which connection this is, at the other end)."""
        if self._transport is None:
            return None
        sockname = self._transport.get_extra_info("sockname")
        return int(sockname[1]) if sockname else None

    @property
    def closed(self) -> bool:
        return self._ended.done() or self._ws.state is not State.OPEN

    async def wait_closed(self) -> None:
        """Until the TCP connection is gone, for whatever reason."""
        await asyncio.shield(self._ended)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """The closing handshake (1000); the socket is cut if it takes over `timeout`."""
        if self._transport is None or self._ended.done():
            return
        if self._ws.state is State.OPEN:
            self._ws.send_close(1000)
            self._write_out()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._ended)
        except TimeoutError:
            self.abort()

    def abort(self) -> bool:
        """Cut the TCP connection now, without a closing handshake."""
        if self._transport is not None:
            self._transport.abort()
        return True

    # -- sending -----------------------------------------------------------------------
    def send(self, text: str, *, counted: bool = False) -> None:
        """Write a text frame now, or behind the ones waiting for the message count.
        `counted`: its message was taken from the count already (a post's, at admission)."""
        if self.closed:
            return
        if not self._backlog and (counted or self._send_now()):
            self._write_text(text)
            return
        self._backlog.append(text)
        if self._pacer is None:
            self._pacer = asyncio.get_running_loop().create_task(self._pace())

    async def _pace(self) -> None:
        try:
            while self._backlog:
                await self._send_gate()
                if self.closed:
                    return
                self._write_text(self._backlog.popleft())
        finally:
            self._pacer = None

    def _write_text(self, text: str) -> None:
        self._ws.send_text(text.encode())
        self._write_out()

    def _write_out(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the protocol's end of stream
                transport.write_eof()
            else:
                transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act as one.
        self._transport = cast(asyncio.Transport, transport)
        self._ws.send_request(self._ws.connect())
        self._write_out()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._write_out()  # pongs, a close echoed
        for event in self._ws.events_received():
            if not isinstance(event, Frame):  # the handshake's answer
                self._handshake_done()
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or (opcode is Opcode.CONT and self._parts is not None):
                self._text_frame(bytes(event.data), event.fin)
            elif opcode is Opcode.BINARY:
                self._on_garbage()
        if self._ws.close_expected() and self._cut_timer is None:
            # A close frame came (or the stream broke): the server ends the TCP
            # connection; one that does not is cut.
            self._cut_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def _text_frame(self, data: bytes, fin: bool) -> None:
        if not fin:
            self._parts = [*(self._parts or []), data]
            return
        if self._parts is not None:
            data, self._parts = b"".join([*self._parts, data]), None
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._on_garbage()
            return
        self._on_text(text)

    def _handshake_done(self) -> None:
        if self._opened.done():
            return
        failure = self._ws.handshake_exc
        if failure is None:
            self._opened.set_result(None)
        else:
            self._fail_open(HandshakeFailed(f"WebSocket handshake failed: {failure}"))

    def _fail_open(self, exc: Exception) -> None:
        self._opened.set_exception(exc)
        # Marked retrieved: `open()` may have given up already (its timeout), and an
        # unretrieved exception would be logged when the future is collected.
        self._opened.exception()

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._write_out()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._opened.done():
            self._fail_open(ConnectionResetError("closed during the WebSocket handshake"))
        if not self._ended.done():
            self._ended.set_result(None)
        if self._pacer is not None:
            self._pacer.cancel()
        if self._cut_timer is not None:
            self._cut_timer.cancel()
        self._backlog.clear()


def _context(*, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

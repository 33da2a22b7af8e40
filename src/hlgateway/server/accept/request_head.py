"""Every accepted socket starts here: read the request head, then either answer
the WebSocket handshake ourselves or hand the socket to aiohttp.

`GET /ws` is the gateway's hot path and its memory: answered here, a
connection becomes a `Connection` protocol on the same transport, with no
HTTP request object, parser, task or coroutine kept alive for its lifetime.
Everything else (/health, /metrics, /client.js, the admin API) is aiohttp's:
the bytes read so far are passed on to a fresh aiohttp protocol unchanged.

The request-head deadline (slowloris defence) starts here too: a socket that
does not deliver a complete head in time is cut.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from hlgateway.server.accept.admit import admit
from hlgateway.server.connection import Connection
from hlgateway.websocket.closing import Closing, Step
from hlgateway.websocket.control import close_frame
from hlgateway.websocket.handshake import (
    HEAD_LIMIT,
    HandshakeError,
    RequestHead,
    http_response,
    parse_head,
    parse_request_line,
    switching_protocols,
)
from hlgateway.websocket.reader import CloseReceived, FrameReader, Violation

if TYPE_CHECKING:
    from hlgateway.gateway import Gateway
    from hlgateway.server.accept.defences import Edge

log = logging.getLogger(__name__)

WS_PATH = "/ws"
REFUSAL_GRACE = 2.0  # seconds a refused client has to answer our 1008 close


class Front:
    """The listening socket's protocol factory."""

    def __init__(
        self, gateway: Gateway, edge: Edge, http: Callable[[], asyncio.BaseProtocol]
    ) -> None:
        self.gateway = gateway
        self.edge = edge
        self.http = http  # aiohttp's web.Server: one RequestHandler per connection

    def __call__(self) -> FrontProtocol:
        return FrontProtocol(self)


class FrontProtocol(asyncio.Protocol):
    __slots__ = (
        "_buffer",
        "_closing",
        "_front",
        "_ip",
        "_reader",
        "_since",
        "_timer",
        "_transport",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0
        self._ip: str | None = None  # counted in by admission: leave when the socket ends
        # Refused after the 101: reading the client's answer to our close.
        self._reader: FrameReader | None = None
        self._closing: Closing | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act as one.
        self._transport = cast(asyncio.Transport, transport)
        self._since = time.monotonic()
        timeout = self._front.edge.head_deadline.timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:
            self._refused_client_says(data)
            return
        buffer = self._buffer
        buffer += data
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            if len(buffer) > HEAD_LIMIT:
                self._refuse(HandshakeError(414, "Request line too long"))
            return
        line = parse_request_line(bytes(buffer[:line_end]))
        if line is None or line.path != WS_PATH:
            self._hand_to_http()
            return
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buffer) > HEAD_LIMIT:
                self._refuse(HandshakeError(431, "Request head too large"))
            return
        self._cancel_timer()
        head, pending = bytes(buffer[:head_end]), bytes(buffer[head_end + 4 :])
        self._buffer = bytearray()
        try:
            self._upgrade(parse_head(head), pending)
        except HandshakeError as exc:
            self._refuse(exc)
        except Exception:  # a bug must cost this socket only
            log.exception("internal error in the WebSocket handshake")
            if self._transport is not None and self._ip is None:
                self._refuse(HandshakeError(500, "Internal error"))
            elif self._transport is not None:
                self._transport.abort()

    def _upgrade(self, head: RequestHead, pending: bytes) -> None:
        transport = self._transport
        assert transport is not None
        front = self._front
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        admitted = admit(head, host, front.gateway, front.edge)
        self._ip = admitted.ip  # ours to give back until a Connection takes the socket
        transport.write(switching_protocols(admitted.key, admitted.deflate))
        if admitted.principal is None:
            # Accepted at the HTTP level, then closed at once: browsers can read the reason.
            closing = self._closing = Closing(close_timeout=REFUSAL_GRACE)
            closing.close(1008, admitted.refusal)
            transport.write(close_frame(1008, admitted.refusal))
            self._reader = FrameReader(125)
            self._perform(closing.close_written(time.monotonic()))
            return
        try:
            connection = Connection(
                front.gateway,
                transport,
                admitted.principal,
                front.edge,
                ip=admitted.ip,
                deflate=admitted.deflate,
            )
        except Exception:
            front.edge.admission.leave_user(admitted.principal.user_id)
            transport.abort()  # after a 101 there is no HTTP answer left to give
            raise
        # From here the Connection gives the IP and the user back when the socket ends.
        self._ip = None
        self._transport = None
        connection.start(pending)

    def _refused_client_says(self, data: bytes) -> None:
        closing = self._closing
        assert self._reader is not None and closing is not None
        if closing.hanging_up:
            self._perform(closing.discard(len(data)))
            return
        for event in self._reader.feed(data):
            if isinstance(event, CloseReceived):
                self._perform(closing.receive_close(event.code, event.reason, time.monotonic()))
            elif isinstance(event, Violation):
                self._perform(closing.fail(event.code, event.reason, time.monotonic()))

    def _perform(self, step: Step) -> None:
        """A step of the refused connection's closing (our close is already written)."""
        closing, transport = self._closing, self._transport
        if closing is None or transport is None or step is Step.NOTHING:
            return
        self._cancel_timer()
        if step is Step.HANG_UP and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        if step is Step.CLOSE_NOW:
            transport.close()
        elif step is Step.ABORT:
            transport.abort()
        elif closing.deadline is not None:  # AWAIT_CLOSE, HANG_UP
            delay = max(0.0, closing.deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._refusal_deadline)

    def _refusal_deadline(self) -> None:
        self._timer = None
        if self._closing is not None:
            self._perform(self._closing.timed_out(time.monotonic()))

    def _refuse(self, error: HandshakeError) -> None:
        # The request line is not logged: it may carry a token.
        log.info("WebSocket handshake refused: %d %s", error.status, error.text)
        self._cancel_timer()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(http_response(error.status, error.text, error.headers))
            transport.close()

    def _hand_to_http(self) -> None:
        """Not the WebSocket: aiohttp serves it, from the first byte."""
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        front = self._front
        protocol = front.http()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        # The head deadline goes on for aiohttp's part (its middleware re-arms it per request).
        left = front.edge.head_deadline.timeout - (time.monotonic() - self._since)
        front.edge.head_deadline.arm(protocol, max(0.0, left))
        pending, self._buffer = bytes(self._buffer), bytearray()
        self._transport = None
        cast(asyncio.Protocol, protocol).data_received(pending)

    def _head_too_slow(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._front.edge.stats["slowRequestHeads"] += 1
        log.info("cut a connection that sent no complete request in time")
        transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._closing is not None:
            self._closing.lost()
        self._transport = None
        if self._ip is not None:
            self._front.edge.admission.leave_ip(self._ip)
            self._ip = None

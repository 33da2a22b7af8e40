"""One WebSocket client at the edge, as a plain asyncio protocol.

After the handshake (server/accept/request_head.py) the socket's bytes come here: the frame
reader turns them into messages for the Session; output goes through the
Outbox; heartbeat and token expiry are swept by the gateway. Whether and how
the connection ends is decided by one `Closing` state (websocket/closing.py),
held by the outbox, which performs its steps. No task, no
coroutine and no queue per connection: an idle client costs its transport and
these few objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from hlgateway.auth import Principal
from hlgateway.protocol import encoding
from hlgateway.protocol.errors import CloseCode, ErrorCode
from hlgateway.server.outbox import Outbox
from hlgateway.session import Close, Session
from hlgateway.websocket.control import PING_FRAME, pong_frame
from hlgateway.websocket.frames import Frame
from hlgateway.websocket.handshake import Deflate
from hlgateway.websocket.reader import (
    Binary,
    CloseReceived,
    Event,
    FrameReader,
    Ping,
    Text,
    Violation,
)

if TYPE_CHECKING:
    from hlgateway.gateway import Gateway
    from hlgateway.server.accept.defences import Edge

log = logging.getLogger(__name__)

MESSAGE_TOO_BIG = 1009


class Connection(asyncio.Protocol):
    __slots__ = (
        "_edge",
        "_ended",
        "_expired",
        "_gateway",
        "_ip",
        "_last_ping",
        "_last_seen",
        "_reader",
        "_transport",
        "client_id",
        "due_tick",
        "outbox",
        "session",
    )

    def __init__(
        self,
        gateway: Gateway,
        transport: asyncio.Transport,
        principal: Principal,
        edge: Edge,
        *,
        ip: str,
        deflate: Deflate | None = None,
    ) -> None:
        self.client_id = gateway.new_client_id()
        self._gateway = gateway
        self._edge = edge
        self._transport = transport
        self._ip = ip
        settings = gateway.settings
        self._reader = FrameReader(
            settings.max_message_bytes,
            deflate=deflate is not None,
            no_context_takeover=deflate is not None and deflate.client_no_context_takeover,
        )
        # Frames are written straight to the transport, built once for everyone.
        self.outbox = Outbox(
            transport,
            gateway.flusher,
            gateway.outbox_stats,
            max_bytes=settings.outbox_max_bytes,
            buffer_limit=settings.socket_buffer_bytes,
            write_timeout=settings.write_timeout,
            deflate_wbits=deflate.wbits if deflate is not None else 0,
        )
        self.session = Session(
            self.client_id,
            principal,
            catalog=gateway.catalog,
            hub=gateway.hub,
            out=self.outbox,
            verifier=gateway.verifier,
            limits=edge.session_limits,
            stats=edge.stats,
            broker=gateway.broker,
            compression_threshold=settings.compression_threshold,
            on_verdict=self._on_verdict,
            relay=gateway.relay,
            urgent=self.outbox.write_first,
        )
        self._last_seen = self._last_ping = time.monotonic()
        self._expired = False
        self.due_tick = 0  # the sweeper's wheel: the tick this connection is filed under
        self._ended = False

    def start(self, pending: bytes = b"") -> None:
        """Take the socket over from the handshake; `pending`: bytes that came after the head."""
        self._gateway.register(self)
        self._transport.set_protocol(self)
        log.info(
            "client %s connected (user %s)",
            self.client_id,
            self.session.principal.user_id,
            extra=self._log_context(),
        )
        self.session.welcome(self._gateway.upstream.endpoint.info_url)
        if pending:
            self.data_received(pending)

    @property
    def ip(self) -> str:
        return self._ip

    def _log_context(self) -> dict[str, str]:
        """The fields JSON log lines carry (hlgateway.logs)."""
        return {
            "client_id": self.client_id,
            "ip": self._ip,
            "user": self.session.principal.user_id,
        }

    # -- input ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._last_seen = time.monotonic()
        closing = self.outbox.closing
        if closing.hanging_up:
            # After our FIN: read on so the kernel does not reset the connection
            # and lose our close frame, but only so much (a lingering close).
            self.outbox.perform(closing.discard(len(data)))
            return
        for event in self._reader.feed(data):
            self._on_event(event)

    def _on_event(self, event: Event) -> None:
        """One client frame. Once we are closing, only the client's close matters:
        it often arrives in the same read as the frame that made us close."""
        if isinstance(event, CloseReceived):
            self.outbox.close_received(event.code, event.reason)
            return
        if isinstance(event, Violation):
            too_big = event.code == MESSAGE_TOO_BIG
            self.session.stats["messageTooBig" if too_big else "protocolErrors"] += 1
            # Failing the connection (RFC 6455 7.1.7): say why, then hang up; the
            # client's bytes can no longer be read, so there is no handshake to wait for.
            self.outbox.fail(event.code, event.reason)
            return
        if not self.outbox.closing.open:
            return
        if isinstance(event, Text):
            expires_at = self.session.expires_at
            verdict = self._handle(event.data)
            if self.session.expires_at != expires_at and not self._ended:
                self._gateway.reschedule(self)  # a refreshed token: its expiry moved
        elif isinstance(event, Binary):
            verdict = self.session.reject(
                ErrorCode.INVALID_MESSAGE, "Messages must be JSON text frames"
            )
        elif isinstance(event, Ping):
            if self.session.allow_control():
                self._transport.write(pong_frame(event.payload))
            else:
                self.session.stats["pingsIgnored"] += 1
            return
        else:  # Pong: it only proves the client is alive (_last_seen)
            return
        if verdict is not None:
            self.outbox.close(verdict.code, verdict.reason)

    def _on_verdict(self, verdict: Close) -> None:
        """A verdict the session reached after waiting (a held subscribe)."""
        self.outbox.close(verdict.code, verdict.reason)

    def _handle(self, data: str) -> Close | None:
        """The session never raises for bad input; should it ever raise, this client alone ends."""
        try:
            return self.session.handle(data)
        except Exception:
            log.exception("client %s: internal error handling a message", self.client_id)
            self.session.stats["internalErrors"] += 1
            self.outbox.deliver(Frame(encoding.error(ErrorCode.INTERNAL, "Internal error")))
            return Close(CloseCode.INTERNAL, "Internal error")

    def eof_received(self) -> bool:
        # The client half-closed: nothing more to read, close our side too.
        self.outbox.perform(self.outbox.closing.client_eof())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.outbox.cancel()
        self.session.close()
        self._gateway.unregister(self)
        self._edge.admission.leave_user(self.session.principal.user_id)
        self._edge.admission.leave_ip(self._ip)
        log.info("client %s disconnected", self.client_id, extra=self._log_context())

    # -- driven by the gateway --------------------------------------------
    def sweep(self, now: float, wall_ms: int) -> None:
        """Heartbeat and token expiry, driven by the gateway's one sweeper task
        when `next_due` says (server/timing_wheel.py).

        No timer tasks per connection: at 10k idle connections they were the
        largest part of a connection's memory.
        """
        settings = self._gateway.settings
        expires_at = self.session.expires_at
        if expires_at is not None and wall_ms >= expires_at and not self._expired:
            # An `auth` refresh moves expires_at; this reads it fresh every sweep.
            self._expired = True
            self.session.stats["tokenExpired"] += 1
            self.outbox.close(CloseCode.TOKEN_EXPIRED, "Token expired")
        if now - self._last_seen > settings.heartbeat_timeout:
            log.info("client %s unresponsive: dropped", self.client_id, extra=self._log_context())
            self.abort()
        elif now - self._last_ping >= settings.heartbeat_interval:
            self._last_ping = now
            if not self._transport.is_closing():
                self._transport.write(PING_FRAME)

    def next_due(self, now: float, wall_ms: int) -> float:
        """When `sweep` next has something to do (the caller's monotonic clock)."""
        settings = self._gateway.settings
        due = min(
            self._last_ping + settings.heartbeat_interval,
            self._last_seen + settings.heartbeat_timeout,
        )
        expires_at = self.session.expires_at
        if expires_at is not None and not self._expired:
            due = min(due, now + (expires_at - wall_ms) / 1000)
        return due

    def going_away(self) -> None:
        shutdown = encoding.message("shutdown", message="Server is shutting down")
        self.outbox.deliver(Frame(shutdown))
        self.outbox.close(CloseCode.GOING_AWAY, "Server shutting down")

    def abort(self) -> None:
        self._transport.abort()

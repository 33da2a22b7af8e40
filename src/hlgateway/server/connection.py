"""One WebSocket client at the edge: reads frames into its Session; its output
goes through its Outbox; heartbeat and token expiry are swept by the gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from hlgateway.auth import Principal
from hlgateway.protocol import encoding
from hlgateway.protocol.errors import CloseCode, ErrorCode
from hlgateway.protocol.frames import Frame
from hlgateway.server.outbox import Outbox, wait_closed
from hlgateway.session import Close, Session

if TYPE_CHECKING:
    from hlgateway.gateway import Gateway
    from hlgateway.server.edge import Edge

log = logging.getLogger(__name__)

PING_FRAME = b"\x89\x00"  # a protocol ping, no payload; unmasked as server frames are


class Connection:
    def __init__(
        self,
        gateway: Gateway,
        request: web.Request,
        ws: web.WebSocketResponse,
        principal: Principal,
        edge: Edge | None = None,
    ) -> None:
        self.client_id = gateway.new_client_id()
        self._gateway = gateway
        self._edge = edge
        self._request = request
        self._ws = ws
        settings = gateway.settings
        transport = request.transport
        assert transport is not None, "a prepared WebSocket has a transport"
        # Frames are written straight to the transport, built once for everyone;
        # aiohttp still handles the handshake, reading, pings and the close.
        wbits = int(ws.compress) if settings.compression and ws.compress else 0
        self.outbox = Outbox(
            ws,
            transport,
            gateway.flusher,
            gateway.outbox_stats,
            max_bytes=settings.outbox_max_bytes,
            buffer_limit=settings.socket_buffer_bytes,
            write_timeout=settings.write_timeout,
            deflate_wbits=wbits,
        )
        self.session = Session(
            self.client_id,
            principal,
            catalog=gateway.catalog,
            hub=gateway.hub,
            out=self.outbox,
            verifier=gateway.verifier,
            limits=edge.session_limits if edge is not None else gateway.limits,
            stats=edge.stats if edge is not None else None,
        )
        self._last_seen = self._last_ping = time.monotonic()
        self._expired = False
        self.closed = asyncio.Event()

    async def run(self) -> None:
        gateway = self._gateway
        gateway.connections[self.client_id] = self
        log.info("client %s connected (user %s)", self.client_id, self.session.principal.user_id)
        try:
            self.session.welcome()
            await self._read()
            # Let queued replies (an error before a policy close, say) and the close go out.
            await wait_closed(self.outbox, 6.0)
        finally:
            self.outbox.cancel()
            self.session.close()
            gateway.connections.pop(self.client_id, None)
            self.closed.set()
            log.info("client %s disconnected (code %s)", self.client_id, self._ws.close_code)

    async def _read(self) -> None:
        ws = self._ws
        while True:
            msg = await ws.receive()
            self._last_seen = time.monotonic()
            if msg.type is WSMsgType.TEXT:
                verdict = self._handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                verdict = self.session.reject(
                    ErrorCode.INVALID_MESSAGE, "Messages must be JSON text frames"
                )
            elif msg.type is WSMsgType.PING:
                if self.session.allow_control():
                    await ws.pong(msg.data)
                else:
                    self.session.stats["pingsIgnored"] += 1
                continue
            elif msg.type is WSMsgType.PONG:
                continue
            else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp answers 1009/1007/1002 itself)
                if msg.type is WSMsgType.ERROR:
                    self._count_error(msg.data)
                self.outbox.close(CloseCode.NORMAL, "")
                return
            if verdict is not None:
                self._close(verdict)
                return

    def _handle(self, data: str) -> Close | None:
        """The session never raises for bad input; should it ever raise, this client alone ends."""
        try:
            return self.session.handle(data)
        except Exception:
            log.exception("client %s: internal error handling a message", self.client_id)
            self.session.stats["internalErrors"] += 1
            self.outbox.deliver(Frame(encoding.error(ErrorCode.INTERNAL, "Internal error")))
            return Close(CloseCode.INTERNAL, "Internal error")

    def _count_error(self, error: object) -> None:
        too_big = isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG
        self.session.stats["messageTooBig" if too_big else "protocolErrors"] += 1

    def _close(self, verdict: Close) -> None:
        self.outbox.close(verdict.code, verdict.reason)

    def sweep(self, now: float, wall_ms: int) -> None:
        """Heartbeat and token expiry, driven by the gateway's one sweeper task.

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
            log.info("client %s unresponsive: dropped", self.client_id)
            self.abort()
        elif now - self._last_ping >= settings.heartbeat_interval:
            self._last_ping = now
            transport = self._request.transport
            if transport is not None and not transport.is_closing():
                transport.write(PING_FRAME)

    def going_away(self) -> None:
        shutdown = encoding.message("shutdown", message="Server is shutting down")
        self.outbox.deliver(Frame(shutdown))
        self.outbox.close(CloseCode.GOING_AWAY, "Server shutting down")

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()

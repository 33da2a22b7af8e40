"""The edge's defences, built once per app from the settings.

`Edge` holds the admission accounting, the session limits, the trusted proxy
list and the refusal counters that `/health` shows. `HeadDeadline` is the
slowloris defence: every HTTP connection must deliver a complete request head
within `request_head_timeout` of being accepted (or of its previous request,
on keep-alive), or its socket is cut. aiohttp alone would wait for a dribbling
request head for as long as its keep-alive timeout (an hour).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from hlgateway.config import Settings
from hlgateway.server.admission import Admission, AdmissionLimits, IPNetwork, parse_networks
from hlgateway.session import SessionLimits

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HeadDeadline:
    """Arms a timer per accepted connection; a request reaching the app disarms it."""

    def __init__(self, timeout: float, stats: Counter[str]) -> None:
        self.timeout = timeout
        self._stats = stats
        self._timers: dict[Any, asyncio.TimerHandle] = {}

    @property
    def pending(self) -> int:
        return len(self._timers)

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap a protocol factory (aiohttp's `web.Server`) so each connection is timed."""

        def make() -> Any:
            protocol = factory()
            self.arm(protocol)
            return protocol

        return make

    def arm(self, protocol: Any) -> None:
        self.disarm(protocol)
        loop = asyncio.get_running_loop()
        self._timers[protocol] = loop.call_later(self.timeout, self._expire, protocol)

    def disarm(self, protocol: Any) -> None:
        timer = self._timers.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, protocol: Any) -> None:
        self._timers.pop(protocol, None)
        transport = getattr(protocol, "transport", None)
        if transport is None or transport.is_closing():
            return  # gone already (or its handshake never finished)
        self._stats["slowRequestHeads"] += 1
        log.info("cut a connection that sent no complete request in %.0f s", self.timeout)
        transport.abort()

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def middleware(self) -> Middleware:
        @web.middleware
        async def head_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
            protocol = request.protocol
            self.disarm(protocol)
            upgraded = False
            try:
                response = await handler(request)
                upgraded = isinstance(response, web.WebSocketResponse)
                return response
            finally:
                # Keep-alive: the next request head is due within the same deadline.
                if not upgraded and protocol.transport is not None:
                    self.arm(protocol)

        return head_deadline


class Edge:
    def __init__(self, settings: Settings, session_limits: SessionLimits) -> None:
        self.settings = settings
        self.stats: Counter[str] = Counter()
        self.admission = Admission(
            AdmissionLimits(
                new_per_ip_per_minute=settings.new_connections_per_minute,
                max_per_ip=settings.max_connections_per_ip,
                max_per_user=settings.max_connections_per_user,
            )
        )
        self.trusted_proxies: tuple[IPNetwork, ...] = parse_networks(settings.trusted_proxies)
        self.session_limits = SessionLimits(
            max_subscriptions=session_limits.max_subscriptions,
            max_rooms=session_limits.max_rooms,
            error_limit=session_limits.error_limit,
            error_window=session_limits.error_window,
            message_rate=settings.message_rate,
            message_burst=settings.message_burst,
        )
        self.head_deadline = HeadDeadline(settings.request_head_timeout, self.stats)

    def health(self) -> dict[str, Any]:
        """Counts only: no addresses, user ids or tokens."""
        refused = {str(k): v for k, v in self.admission.refused.items()}
        s = self.stats
        return {
            "connectionsRefused": {
                **refused,
                "origin": s["originRefused"],
                "missingOrigin": s["missingOriginRefused"],
                "unauthenticated": s["tokenRefused"],
            },
            "connectionsCut": {
                "slowRequestHeads": s["slowRequestHeads"],
                "handshakeTimeouts": s["handshakeTimeouts"],
                "messageTooBig": s["messageTooBig"],
                "protocolErrors": s["protocolErrors"],
                "tooManyErrors": s["closedTooManyErrors"],
                "rateLimited": s["closedRateLimited"],
                "credentialsExpired": s["tokenExpired"],
                "internalErrors": s["internalErrors"],
            },
            "requestsRefused": {
                "rateLimited": s["rateLimited"],
                "tooManySubscriptions": s["tooManySubscriptions"],
                "tooManyRooms": s["tooManyRooms"],
                "reauthRefused": s["authRefused"],
                "revokedOnRefresh": s["revoked"],
                "pingsIgnored": s["pingsIgnored"],
            },
        }

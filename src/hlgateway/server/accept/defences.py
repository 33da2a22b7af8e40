"""The edge's defences, built once per app from the settings.

`Edge` holds the admission accounting, the session limits, the trusted proxy
list and the refusal counters that `/health` shows. `HeadDeadline` is the
slowloris defence: a request head must be complete within `request_head_timeout`
of the connection being accepted, or the socket is cut (aiohttp alone would wait
for a dribbling head as long as its keep-alive timeout). The request-head
protocol (request_head.py) keeps the deadline until it sees the request line; a socket
it hands to aiohttp stays under it here until its request reaches the app.
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
from hlgateway.server.accept.client_counts import (
    Admission,
    AdmissionLimits,
    IPNetwork,
    parse_networks,
)
from hlgateway.session import SessionLimits

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HeadDeadline:
    """A timer per connection handed to aiohttp; its request reaching the app disarms it."""

    def __init__(self, timeout: float, stats: Counter[str]) -> None:
        self.timeout = timeout
        self._stats = stats
        self._timers: dict[Any, asyncio.TimerHandle] = {}

    @property
    def pending(self) -> int:
        return len(self._timers)

    def arm(self, protocol: Any, timeout: float | None = None) -> None:
        self.disarm(protocol)
        loop = asyncio.get_running_loop()
        delay = self.timeout if timeout is None else timeout
        self._timers[protocol] = loop.call_later(delay, self._expire, protocol)

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
        async def one_request(request: web.Request, handler: Handler) -> web.StreamResponse:
            # The head arrived in time. Each aiohttp connection then serves this one
            # request and closes: a later request on a kept-alive connection could
            # be `GET /ws`, which only the request-head protocol answers (request_head.py).
            self.disarm(request.protocol)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.force_close()
                raise
            response.force_close()
            return response

        return one_request


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
        self.session_limits = session_limits  # built once, by the Gateway from the settings
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
                "serverFull": s["serverFull"],
            },
            "connectionsCut": {
                "slowRequestHeads": s["slowRequestHeads"],
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

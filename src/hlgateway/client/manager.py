"""`ConnectionManager`: several gateways, health checks, round robin, failover.

The seed's `WebSocketConnectionManager`, for live clients: every gateway's
`/health` is checked every `health_interval` seconds (30); new connections go
round robin over the best gateways available (healthy, else degraded, else any
not known to be down, else any at all); a client connected to a gateway that
turns unhealthy, or degraded while a healthy one exists, is moved to another
one, and takes its subscriptions with it (they are restored after `welcome`).
A gateway a client cannot reach is marked unhealthy at once, without waiting
for the next check.

```python
async with ConnectionManager(["ws://gw1:8080/ws", "ws://gw2:8080/ws"]) as manager:
    client = manager.client(token)
    await client.connect()
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from hlgateway.client.connection import GatewayClient, LinkState
from hlgateway.client.tokens import TokenSource

log = logging.getLogger("hlgateway.client.manager")


class ServerHealth(IntEnum):
    """Ordered: a higher value is a better choice."""

    UNHEALTHY = 0
    UNKNOWN = 1  # not checked yet
    DEGRADED = 2  # reachable, but its upstream is degraded
    HEALTHY = 3


class NoServers(LookupError):
    """The manager has no gateway to offer."""


@dataclass(eq=False)
class Server:
    url: str  # ws://host:port/ws
    health_url: str  # http://host:port/health
    health: ServerHealth = ServerHealth.UNKNOWN
    last_check: float | None = None  # time.time() of the last check
    details: dict[str, Any] | None = None  # the last /health body
    error: str | None = None


def health_url_for(ws_url: str) -> str:
    """ws://host:port/ws -> http://host:port/health (wss -> https; a path prefix is kept)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path[: -len("/ws")] if parts.path.endswith("/ws") else parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path + "/health", "", ""))


def judge(status: int, body: Any) -> ServerHealth:
    """A `/health` answer -> the server's health."""
    if status != 200 or not isinstance(body, dict):
        return ServerHealth.UNHEALTHY
    if body.get("status") == "healthy":
        return ServerHealth.HEALTHY
    if body.get("status") == "degraded":
        return ServerHealth.DEGRADED
    return ServerHealth.UNHEALTHY


class ConnectionManager:
    def __init__(
        self,
        urls: list[str] | tuple[str, ...] = (),
        *,
        health_interval: float = 30.0,
        health_timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self._servers: list[Server] = []
        self._next = 0
        self._session = session
        self._own_session = session is None
        self._task: asyncio.Task[None] | None = None
        self._clients: list[GatewayClient] = []
        for url in urls:
            self.add_server(url)

    @property
    def servers(self) -> list[Server]:
        return list(self._servers)

    def add_server(self, url: str, health_url: str | None = None) -> Server:
        server = Server(url, health_url or health_url_for(url))
        self._servers.append(server)
        return server

    def remove_server(self, url: str) -> None:
        self._servers = [s for s in self._servers if s.url != url]
        self._next = 0

    def server(self, url: str | None) -> Server | None:
        return next((s for s in self._servers if s.url == url), None)

    # -- life cycle -------------------------------------------------------------
    async def start(self) -> None:
        """Check every gateway once, then keep checking every `health_interval`."""
        if self._task is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self.check_all()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop checking; close the clients this manager made."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.gather(*(c.close() for c in self._clients), return_exceptions=True)
        self._clients.clear()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ConnectionManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- health -----------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_all()
            except Exception:  # never let the loop die
                log.exception("health check round failed")

    async def check_all(self) -> None:
        """Check every gateway now, then move clients off gateways that went bad."""
        await asyncio.gather(*(self.check(s) for s in self._servers))
        self._rebalance()

    async def check(self, server: Server) -> ServerHealth:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=self.health_timeout)
            async with self._session.get(server.health_url, timeout=timeout) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
                server.health = judge(resp.status, body)
                server.details = body if isinstance(body, dict) else None
                server.error = None if resp.status == 200 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            server.health = ServerHealth.UNHEALTHY
            server.details = None
            server.error = f"{exc.__class__.__name__}: {exc}"
        server.last_check = time.time()
        return server.health

    def _best(self) -> ServerHealth | None:
        return max((s.health for s in self._servers), default=None)

    def _rebalance(self) -> None:
        best = self._best()
        if best is None or best <= ServerHealth.UNHEALTHY:
            return
        for client in self._clients:
            current = self.server(client.url)
            if client.state is not LinkState.CONNECTED or current is None:
                continue
            if current.health < best and (
                current.health is ServerHealth.UNHEALTHY or best is ServerHealth.HEALTHY
            ):
                log.info("moving a client off %s (%s)", current.url, current.health.name)
                client.failover(f"gateway {current.health.name.lower()}")

    # -- choosing ---------------------------------------------------------------
    def next_server(self) -> Server:
        """Round robin over the best gateways available."""
        if not self._servers:
            raise NoServers("no gateways configured")
        best = self._best()
        assert best is not None
        count = len(self._servers)
        for offset in range(count):
            server = self._servers[(self._next + offset) % count]
            if server.health == best:
                self._next = (self._next + offset + 1) % count
                return server
        raise NoServers("unreachable")  # pragma: no cover - best is some server's health

    # UrlSource, for the clients
    def next_url(self) -> str:
        return self.next_server().url

    def report_failure(self, url: str) -> None:
        server = self.server(url)
        if server is not None:
            server.health = ServerHealth.UNHEALTHY
            server.error = "connection failed"
            server.last_check = time.time()

    def client(self, token: TokenSource, **options: Any) -> GatewayClient:
        """A client that connects through this manager (and is failed over by it).
        Options are `GatewayClient`'s; the manager's HTTP session is shared."""
        options.setdefault("session", self._session)
        client = GatewayClient(self, token, **options)
        self._clients.append(client)
        return client

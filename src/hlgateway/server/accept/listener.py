"""The listening socket: TCP or TLS; every accepted socket starts in request_head.py."""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import web

from hlgateway.config import Settings
from hlgateway.server.accept.request_head import Front


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the library's default ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class GuardedSite(web.BaseSite):
    """Like aiohttp's TCPSite, with each accepted socket handled by `Front` first
    (the WebSocket handshake, the request-head deadline), aiohttp serving the rest.

    Only BaseSite's public hooks are used: `start` and `stop` (which register the
    site with its runner, so that `runner.cleanup()` stops it). The listening
    server is our own attribute, not BaseSite's private `_server`; the cost is
    that `runner.addresses` does not list it (use `port`).
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        front: Front,
        handshake_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 512,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._requested_port = port
        self._front = front
        self._handshake_timeout = handshake_timeout
        self._reuse_port = reuse_port  # --workers: N processes on one port
        # Ours, not BaseSite's (`_ssl_context`, `_backlog` are its private fields).
        self._tls = ssl_context
        self._accept_backlog = backlog
        self._listener: asyncio.Server | None = None
        self.port = port

    @property
    def name(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._front,
            self._host,
            self._requested_port,
            ssl=self._tls,
            backlog=self._accept_backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            ssl_handshake_timeout=self._handshake_timeout if self._tls else None,
        )
        if self._listener.sockets:
            self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await super().stop()
        self._front.edge.head_deadline.cancel_all()


def _http_factory(runner: web.AppRunner) -> web.Server:
    server = runner.server
    assert server is not None, "runner.setup() first"
    return server


async def listen(runner: web.AppRunner, settings: Settings) -> GuardedSite:
    """Start listening as the settings say (host, port, TLS, deadlines)."""
    from hlgateway.server.app import EDGE, GATEWAY

    context = None
    if settings.tls_cert and settings.tls_key:
        context = tls_context(settings.tls_cert, settings.tls_key)
    site = GuardedSite(
        runner,
        settings.host,
        settings.port,
        front=Front(runner.app[GATEWAY], runner.app[EDGE], _http_factory(runner)),
        handshake_timeout=settings.handshake_timeout,
        ssl_context=context,
        reuse_port=settings.reuse_port,
    )
    await site.start()
    return site

"""Webhook mode (optional; long polling is the default): Telegram POSTs each update.

An update is answered 200 only once its command is committed (with the update
offset), so Telegram's retry of an unanswered update is handled once: an update
id below the stored offset is acknowledged and skipped. Requests without the
secret token Telegram was given (`X-Telegram-Bot-Api-Secret-Token`) get 403.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from hlgateway.notifier.telegram import Incoming

log = logging.getLogger("hlgateway.notifier.webhook")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1024 * 1024


class Webhook:
    def __init__(
        self,
        path: str,
        secret: str,
        parse: Callable[[dict[str, object]], Incoming],
        handle: Callable[[Incoming], Awaitable[None]],
    ) -> None:
        self.path = path
        self.secret = secret
        self._parse = parse
        self._handle = handle
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("update_id"), int):
                raise ValueError("not an update")
            update = self._parse(body)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("webhook: unreadable update (%s)", exc)
            return web.Response(status=400, text="bad update")
        await self._handle(update)  # raises (500, Telegram retries) if it could not commit
        return web.Response(status=200, text="ok")

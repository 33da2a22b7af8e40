"""`POST /api/telegram/session`: the dashboard opened inside Telegram logs in.

The notifier's /dashboard command sends a web-app button; Telegram opens the
dashboard with a signed `initData`, which the page posts here. The gateway
checks it with the bot token (telegram/webapp.py), looks up the wallets that
chat watches in the notifier's database, and answers a short-lived token for
`tg-<telegram user id>` limited to those wallets: market data and that chat's
wallets, nothing else. The button is only sent in private chats, whose chat id
is the user's id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from hlgateway.config import Settings
from hlgateway.notifier.database import open_database
from hlgateway.notifier.repository import Repository
from hlgateway.server.signing import can_sign, sign
from hlgateway.telegram.webapp import InitDataError, validate

log = logging.getLogger(__name__)

USER_PREFIX = "tg-"


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    initData: str


class ChatWallets:
    """The wallets a chat watches, read from the notifier's database (opened on first use)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._repo: Repository | None = None

    async def of(self, chat_id: int) -> list[str]:
        if self._repo is None:
            repo = Repository(open_database(self._url))
            await repo.connect()  # the notifier owns its schema: read, never migrate
            self._repo = repo
        async with self._repo.transaction() as t:
            if not await t.chats.is_active(chat_id):
                return []
            return [row.wallet for row in await t.watches.of_chat(chat_id)]

    async def close(self) -> None:
        if self._repo is not None:
            await self._repo.close()
            self._repo = None


def enabled(settings: Settings) -> bool:
    return bool(settings.telegram_bot_token and settings.telegram_database) and can_sign(settings)


async def session(request: web.Request, settings: Settings, chats: ChatWallets) -> web.Response:
    assert settings.telegram_bot_token is not None
    try:
        body = msgspec.json.decode(await request.read(), type=LoginRequest)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise web.HTTPBadRequest(text='body must be {"initData": "..."}') from None
    try:
        user = validate(
            body.initData,
            settings.telegram_bot_token,
            max_age=settings.telegram_login_max_age,
            now=time.time(),
        )
    except InitDataError as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from None
    try:
        wallets = await chats.of(user.id)
    except Exception as exc:  # the notifier's database: down, or not created yet
        log.warning("telegram login: watches not readable: %s", type(exc).__name__)
        raise web.HTTPServiceUnavailable(text="the notifier's database cannot be read") from None
    if not wallets:
        raise web.HTTPForbidden(text="this chat watches no wallet: /watch one in the bot first")
    claims: dict[str, Any] = {
        "id": f"{USER_PREFIX}{user.id}",
        "username": user.username or f"{USER_PREFIX}{user.id}",
        "wallets": wallets,
    }
    token, expires_at = sign(settings, claims, settings.telegram_token_ttl)
    return web.json_response(
        {"token": token, "expiresAt": expires_at, "wallets": wallets},
        headers={"Cache-Control": "no-store"},
    )

"""Telegram Mini App login, sans I/O: is this `initData` really from Telegram?

When the dashboard opens inside Telegram (the notifier's /dashboard button),
Telegram hands the page a signed `initData` query string. The gateway checks its
signature with the bot token - HMAC-SHA256 keyed by HMAC-SHA256("WebAppData",
bot token), over the other fields sorted and joined by newlines, as Telegram's
Mini App documentation specifies - and its age, and only then trusts the user
it names. What the user may read (the wallets their chat watches) is decided by
the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl


class InitDataError(ValueError):
    """initData that is not Telegram's, or too old; the message says which."""


@dataclass(frozen=True, slots=True)
class WebAppUser:
    id: int
    username: str | None
    auth_date: int


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def sign(fields: dict[str, str], bot_token: str) -> str:
    """The `hash` Telegram puts beside `fields` (tests and the notifier's fake use it)."""
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    return hmac.new(secret_key(bot_token), check.encode(), hashlib.sha256).hexdigest()


def validate(init_data: str, bot_token: str, *, max_age: float, now: float) -> WebAppUser:
    if not init_data or len(init_data) > 8192:
        raise InitDataError("initData is missing or too long")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataError("initData is not a query string") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataError("initData repeats a field")
    given = fields.pop("hash", "")
    if not hmac.compare_digest(sign(fields, bot_token), given):
        raise InitDataError("initData is not signed by this bot")
    try:
        auth_date = int(fields["auth_date"])
        user = json.loads(fields["user"])
        user_id = int(user["id"])
    except (KeyError, ValueError, TypeError):
        raise InitDataError("initData lacks auth_date or user") from None
    if not 0 <= now - auth_date <= max_age:
        raise InitDataError("initData is too old; open the dashboard again")
    username = user.get("username")
    return WebAppUser(user_id, username if isinstance(username, str) else None, auth_date)

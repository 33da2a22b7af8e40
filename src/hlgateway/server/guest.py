"""Guest tokens: let the dashboard show public market data before anyone logs in.

`POST /api/guest-token` signs a short-lived token for a fresh anonymous user id
with no wallets and no role: it reads `prices`, `orderbook`, `trades` and
`system`, nothing of anyone's account. Presented with a still valid guest token
(`Authorization: Bearer`), it signs a new one for the same guest: the client's
`auth` refresh before expiry must keep the user id. It needs the HMAC secret (a gateway that
verifies with a public key cannot sign, and answers 404) and can be turned off
(HLGATEWAY_DASHBOARD_GUEST=false). Each guest connection still passes every
per-IP limit of the WebSocket edge.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from hlgateway.config import Settings

GUEST_TTL_SECONDS = 15 * 60
GUEST_PREFIX = "guest-"


def can_issue(settings: Settings) -> bool:
    return settings.dashboard_guest and not settings.auth.uses_public_key


def guest_token(
    settings: Settings, user_id: str | None = None, now: float | None = None
) -> tuple[str, int]:
    """A signed guest token (for `user_id`, or a fresh guest id) and its expiry (Unix ms)."""
    auth = settings.auth
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "id": user_id or GUEST_PREFIX + secrets.token_hex(6),
        "username": "guest",
        "iat": issued,
        "exp": issued + GUEST_TTL_SECONDS,
    }
    if auth.audience:
        claims["aud"] = auth.audience
    if auth.issuer:
        claims["iss"] = auth.issuer
    token = jwt.encode(claims, auth.verification_key(), algorithm=auth.algorithms[0])
    return token, claims["exp"] * 1000

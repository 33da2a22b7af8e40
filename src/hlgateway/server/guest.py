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

from hlgateway.config import Settings
from hlgateway.server.signing import can_sign, sign

GUEST_TTL_SECONDS = 15 * 60
GUEST_PREFIX = "guest-"


def can_issue(settings: Settings) -> bool:
    return settings.dashboard_guest and can_sign(settings)


def guest_token(
    settings: Settings, user_id: str | None = None, now: float | None = None
) -> tuple[str, int]:
    """A signed guest token (for `user_id`, or a fresh guest id) and its expiry (Unix ms)."""
    claims = {"id": user_id or GUEST_PREFIX + secrets.token_hex(6), "username": "guest"}
    return sign(settings, claims, GUEST_TTL_SECONDS, now)

"""Tokens the gateway signs itself, with its own HMAC secret: guests and Telegram logins.

A gateway that verifies tokens with a public key holds no private key and signs
nothing (`can_sign` is False): those logins are then off.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from hlgateway.config import Settings


def can_sign(settings: Settings) -> bool:
    return not settings.auth.uses_public_key


def sign(
    settings: Settings, claims: dict[str, Any], ttl: float, now: float | None = None
) -> tuple[str, int]:
    """A token with `claims` valid for `ttl` seconds, and its expiry (Unix ms)."""
    auth = settings.auth
    issued = int(time.time() if now is None else now)
    body: dict[str, Any] = {**claims, "iat": issued, "exp": issued + int(ttl)}
    if auth.audience:
        body["aud"] = auth.audience
    if auth.issuer:
        body["iss"] = auth.issuer
    token = jwt.encode(body, auth.verification_key(), algorithm=auth.algorithms[0])
    return token, body["exp"] * 1000

"""JWT verification: who a connection is and what it may read.

Algorithms are pinned by configuration: a token is checked only against the
configured algorithm family, so `alg: none` and HS/RS confusion are refused.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from hlgateway.config import AuthSettings

WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class TokenError(Exception):
    """A token that is refused; `reason` is the close reason the spec names."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


TOKEN_REQUIRED = "Token required"
INVALID_TOKEN = "Invalid token"
TOKEN_EXPIRED = "Token expired"


NO_WALLETS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str | None = None
    role: str | None = None
    wallets: frozenset[str] = field(default_factory=frozenset)  # lower-cased
    expires_at: int | None = None  # Unix ms
    trade: bool = False  # the `trade` claim: may relay signed actions (`post`)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_trade(self) -> bool:
        """Order entry's permission: the `trade` claim, or the admin role."""
        return self.trade or self.is_admin

    def owns_wallet(self, wallet: str) -> bool:
        return wallet.lower() in self.wallets


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._algorithms = list(settings.algorithms)
        self._key: str | bytes = settings.verification_key()
        self._leeway = settings.leeway_seconds
        self._audience = settings.audience
        self._issuer = settings.issuer

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise TokenError(TOKEN_REQUIRED)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": [], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(TOKEN_EXPIRED) from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise TokenError(INVALID_TOKEN) from None
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    user_id = claims.get("id", claims.get("sub"))
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        raise TokenError(INVALID_TOKEN)
    username = claims.get("username")
    role = claims.get("role")
    wallets_claim = claims.get("wallets", [])
    if not isinstance(wallets_claim, list) or not all(
        isinstance(w, str) and WALLET_RE.match(w) for w in wallets_claim
    ):
        raise TokenError(INVALID_TOKEN)
    exp = claims.get("exp")
    return Principal(
        user_id=str(user_id),
        username=username if isinstance(username, str) else None,
        role=role if isinstance(role, str) else None,
        # One shared empty set: most tokens name no wallet, and each set costs 216 bytes.
        wallets=frozenset(w.lower() for w in wallets_claim) if wallets_claim else NO_WALLETS,
        expires_at=int(exp * 1000) if isinstance(exp, int | float) else None,
        trade=claims.get("trade") is True,
    )


def issue_token(
    secret: str,
    user_id: str,
    *,
    username: str | None = None,
    role: str | None = None,
    wallets: list[str] | None = None,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
    trade: bool = False,
) -> str:
    """Sign a token for local use (`hlgateway token`, the demo token, tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "id": user_id,
        "username": username or user_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if role:
        claims["role"] = role
    if trade:
        claims["trade"] = True
    if wallets:
        for wallet in wallets:
            if not WALLET_RE.match(wallet):
                raise ValueError(f"not a wallet address (0x + 40 hex): {wallet}")
        claims["wallets"] = wallets
    return jwt.encode(claims, secret, algorithm=algorithm)

"""Tokens: where they come from, when they expire, when to refresh (sans I/O but the call).

A token is a string, or a provider: a callable returning a token (or an
awaitable of one), asked for a fresh token before reconnecting after the
gateway refused the old one (close 1008 / 4001), and some seconds before the
current one expires (then sent as `{"type":"auth","token":...}`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from hlgateway.claims import unverified_claims

TokenProvider = Callable[[], str | Awaitable[str]]
TokenSource = str | TokenProvider


def token_expiry(token: str) -> float | None:
    """The `exp` claim (Unix seconds) of a JWT, read without verifying it; None if absent."""
    claims = unverified_claims(token)
    exp = claims.get("exp") if claims is not None else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def refresh_delay(expires_at: float, now: float, lead: float) -> float:
    """Seconds to wait before refreshing a token that expires at `expires_at`.

    Refresh `lead` seconds before expiry, or half-way through what is left for a
    token that lives less than twice that.
    """
    remaining = expires_at - now
    if remaining <= 0:
        return 0.0
    return remaining - min(lead, remaining / 2)


class Tokens:
    """The current token and how to get a new one."""

    def __init__(self, source: TokenSource) -> None:
        self._provider: TokenProvider | None = None
        self.current: str | None = None
        if isinstance(source, str):
            self.current = source
        elif callable(source):
            self._provider = source
        else:
            raise TypeError("token must be a string or a callable returning one")

    @property
    def has_provider(self) -> bool:
        return self._provider is not None

    async def get(self, *, fresh: bool = False) -> str:
        """The token to connect with; asks the provider when there is none yet or `fresh`."""
        if self.current is not None and not (fresh and self._provider is not None):
            return self.current
        self.current = await self.fetch()
        return self.current

    async def fetch(self) -> str:
        """A new token from the provider (does not replace `current`)."""
        if self._provider is None:
            raise RuntimeError("no token provider")
        value = self._provider()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError("the token provider must return a non-empty string")
        return value

"""Hyperliquid's nonce rule, per signer, sans I/O.

Hyperliquid keeps the 100 highest nonces of each signer (the account's own
address, or the API wallet that signed). A new nonce must never have been used,
must be larger than the smallest of those kept once 100 are kept, and must lie
within (T - 2 days, T + 1 day) of the block time T. Nonces are tracked per
signer, so an account and each of its agents count separately.
"""

from __future__ import annotations

import bisect

KEPT = 100
DAY_MS = 86_400_000
PAST_MS = 2 * DAY_MS
FUTURE_MS = DAY_MS


class NonceError(ValueError):
    """A nonce Hyperliquid would refuse; the message is its answer."""


class Nonces:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._used: dict[str, list[int]] = {}  # signer -> its highest nonces, ascending

    def check(self, signer: str, nonce: int, now_ms: int) -> None:
        """Raise NonceError if ``signer`` may not use ``nonce`` now; change nothing."""
        if nonce <= now_ms - PAST_MS:
            raise NonceError("Invalid nonce: nonce too low")
        if nonce >= now_ms + FUTURE_MS:
            raise NonceError("Invalid nonce: nonce too high")
        used = self._used.get(signer)
        if not used:
            return
        at = bisect.bisect_left(used, nonce)
        if at < len(used) and used[at] == nonce:
            raise NonceError(f"Invalid nonce: duplicate nonce {nonce}")
        if len(used) >= self._kept and nonce < used[0]:
            raise NonceError("Invalid nonce: nonce too low")

    def use(self, signer: str, nonce: int) -> None:
        """Record ``nonce`` as used by ``signer`` (after ``check`` passed)."""
        used = self._used.setdefault(signer, [])
        bisect.insort(used, nonce)
        if len(used) > self._kept:
            del used[0]

    def forget(self, signer: str) -> None:
        """A deregistered agent's nonce state goes (Hyperliquid prunes it too)."""
        self._used.pop(signer, None)

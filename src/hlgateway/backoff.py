"""Retry delays: capped exponential backoff with jitter (sans I/O).

One policy for everything that retries: the Python client's reconnects, the
upstream links' reconnects, the upstream REST refresh and the wallets' REST
recoveries. The delay before attempt `n` is `initial * decay ** (n - 1)`,
capped at `max_delay`, for at most `max_attempts` attempts (the seed's
`ReconnectingWebSocket`). Many peers that lose the same server at once would
come back in lock step, so each delay is also jittered: drawn uniformly from
`[base * (1 - jitter), base]`. `jitter=1` is "full jitter" (anywhere in
`[0, base]`), which the gateway's own retries use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry policy. `max_attempts=None` retries for ever."""

    initial: float = 1.0
    decay: float = 1.5
    max_delay: float = 30.0
    max_attempts: int | None = None
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.decay < 1:
            raise ValueError("decay must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within 0..1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative")

    @classmethod
    def full_jitter(cls, initial: float, max_delay: float, decay: float = 2.0) -> Backoff:
        """Doubling from `initial`, capped at `max_delay`, anywhere in `[0, base]`."""
        return cls(initial=min(initial, max_delay), decay=decay, max_delay=max_delay, jitter=1.0)

    def base_delay(self, attempt: int) -> float:
        """The delay before attempt `attempt` (1-based), without jitter."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # Stop growing once past the cap: decay ** attempt overflows for long outages.
        exponent = attempt - 1
        delay = self.initial
        while exponent > 0 and delay < self.max_delay:
            delay *= self.decay
            exponent -= 1
        return min(delay, self.max_delay)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered delay before attempt `attempt` (1-based)."""
        base = self.base_delay(attempt)
        draw = (rng or _rng).random()
        return base * (1 - self.jitter * draw)

    def exhausted(self, attempt: int) -> bool:
        """True when attempt `attempt` (1-based) is beyond the limit."""
        return self.max_attempts is not None and attempt > self.max_attempts


_rng = random.Random()

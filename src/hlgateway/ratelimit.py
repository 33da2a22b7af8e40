"""Rate limits as plain objects with an injected clock (sans I/O).

`TokenBucket` meters one connection's messages, and the upstream REST weight
(upstream/limits.py waits on it); `KeyedWindow` counts events per key (new
connections per client IP) over a trailing window, `SlidingWindow` one stream of
events (upstream messages). None sleeps or schedules anything: the caller asks,
with the time the clock gives, and acts on the answer. Tests drive them with a
fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; one per message.

    A `rate` of 0 or less disables the limit (every `take` succeeds).
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, cost: float = 1.0, *, keep: float = 0.0) -> bool:
        """Spend `cost` tokens if that leaves at least `keep`; False (nothing spent) if not."""
        if not self.enabled:
            return True
        now = self._clock()
        elapsed = now - self._stamp
        self._stamp = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens - cost >= keep:
            self._tokens -= cost
            return True
        return False

    def available(self) -> float:
        """The tokens there now."""
        if self.enabled:
            self.take(0.0)  # refills
        return self._tokens

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are there (0 if they are now), as of the last take."""
        if not self.enabled:
            return 0.0
        missing = cost - self._tokens
        return max(0.0, missing / self.rate)


class KeyedWindow:
    """At most `limit` events per key within the last `window` seconds.

    Memory is bounded: each key keeps at most `limit` timestamps, and keys whose
    events have all aged out are swept once per window. A `limit` of 0 or less
    disables the limit.
    """

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[Hashable, deque[float]] = {}
        self._swept = clock()

    def hit(self, key: Hashable) -> bool:
        """Record an event for `key` if it is within the limit; False (not recorded) if over."""
        if self.limit <= 0:
            return True
        now = self._clock()
        self._sweep(now)
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may have one more event."""
        events = self._events.get(key)
        if self.limit <= 0 or not events or len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self._clock())

    def __len__(self) -> int:
        """Keys currently tracked (for tests and memory checks)."""
        return len(self._events)

    def _sweep(self, now: float) -> None:
        if now - self._swept < self.window:
            return
        self._swept = now
        stale = [k for k, ev in self._events.items() if not ev or now - ev[-1] >= self.window]
        for key in stale:
            del self._events[key]


class SlidingWindow:
    """At most `limit` events in any `window` seconds; the caller passes the time."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0] >= self.window:
            self._events.popleft()

    def try_take(self, now: float) -> bool:
        """Record an event at `now` if there is room; say whether there was."""
        self._trim(now)
        if len(self._events) >= self.limit:
            return False
        self._events.append(now)
        return True

    def wait_time(self, now: float) -> float:
        """Seconds until one more event is allowed (0 if now)."""
        self._trim(now)
        if len(self._events) < self.limit:
            return 0.0
        return self._events[0] + self.window - now

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._events)

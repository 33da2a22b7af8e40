"""Rate limits as plain objects with an injected clock (sans I/O).

`TokenBucket` meters one connection's messages. `SlidingWindow` is every limit
counted over a trailing window: upstream messages and new links, the upstream
REST weight (upstream/limits.py waits on it), the simulator's per-IP limits, the
notifier's Telegram requests a second; `KeyedWindow` is one per key (new
connections per client IP). None sleeps or schedules anything: the caller asks,
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


class SlidingWindow:
    """At most `limit` within any `window` seconds, as Hyperliquid counts its per-IP
    limits: the one sliding window of the project, on the caller's clock.

    Each event has a weight: 1 counts events (upstream messages, new links, a
    client IP's connections, Telegram requests a second), more meters REST weight
    (the upstream budget, the simulator's per-IP limit). An event leaves the
    window once it is `window` seconds old, all at once: unlike a token bucket,
    nothing comes back before then. `try_take` checks the limit, `add` counts
    what was spent regardless (a cost known only afterwards).
    """

    __slots__ = ("_events", "_total", "limit", "window")

    def __init__(self, limit: float, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[tuple[float, float]] = deque()  # (when, weight), oldest first
        self._total = 0.0

    def _trim(self, now: float) -> None:
        events = self._events
        while events and now - events[0][0] >= self.window:
            self._total -= events.popleft()[1]
        if not events:
            self._total = 0.0  # no float residue

    def total(self, now: float) -> float:
        """The weight within the window ending `now`."""
        self._trim(now)
        return self._total

    def count(self, now: float) -> int:
        """The events within the window ending `now`."""
        self._trim(now)
        return len(self._events)

    def add(self, now: float, weight: float = 1.0) -> None:
        """Count `weight` spent at `now`, over the limit or not."""
        self._trim(now)
        if weight > 0:
            self._events.append((now, weight))
            self._total += weight

    def try_take(self, now: float, weight: float = 1.0, *, keep: float = 0.0) -> bool:
        """Count `weight` at `now` if that leaves at least `keep` of the limit; else
        count nothing and say so."""
        events = self._events  # the trim inlined: once per new connection per IP
        while events and now - events[0][0] >= self.window:
            self._total -= events.popleft()[1]
        total = self._total if events else 0.0
        if total + weight > self.limit - keep:
            self._total = total
            return False
        if weight > 0:
            events.append((now, weight))
            total += weight
        self._total = total
        return True

    def free_at(self, now: float, weight: float = 1.0) -> float:
        """When `weight` more fits (`now` if it does now): once enough of the oldest
        events have left the window."""
        self._trim(now)
        excess = self._total + weight - self.limit
        if excess <= 0 or not self._events:
            return now
        freed = 0.0
        for stamp, spent in self._events:
            freed += spent
            if freed >= excess:
                return stamp + self.window
        return self._events[-1][0] + self.window  # more than the limit: all of it

    def wait_time(self, now: float, weight: float = 1.0) -> float:
        """Seconds until `weight` more fits (0: now)."""
        return self.free_at(now, weight) - now


class KeyedWindow:
    """A `SlidingWindow` of events per key (new connections per client IP).

    Memory is bounded: each key keeps at most `limit` events, and keys whose
    events have all aged out are swept once per window. A `limit` of 0 or less
    disables the limit.
    """

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._windows: dict[Hashable, SlidingWindow] = {}
        self._swept = clock()

    def hit(self, key: Hashable) -> bool:
        """Record an event for `key` if it is within the limit; False (not recorded) if over."""
        if self.limit <= 0:
            return True
        now = self._clock()
        self._sweep(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(self.limit, self.window)
        return window.try_take(now)

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may have one more event."""
        window = self._windows.get(key)
        if self.limit <= 0 or window is None:
            return 0.0
        return window.wait_time(self._clock())

    def __len__(self) -> int:
        """Keys currently tracked (for tests and memory checks)."""
        return len(self._windows)

    def _sweep(self, now: float) -> None:
        if now - self._swept < self.window:
            return
        self._swept = now
        stale = [key for key, window in self._windows.items() if not window.count(now)]
        for key in stale:
            del self._windows[key]

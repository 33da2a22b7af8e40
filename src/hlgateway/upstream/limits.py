"""Budgets that keep the gateway inside Hyperliquid's per-IP limits.

The counting is ratelimit.py's (sans I/O: a token bucket, a sliding window);
this module adds the one await the callers need: wait until the budget allows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hlgateway.ratelimit import SlidingWindow, TokenBucket


async def wait_turn(window: SlidingWindow, clock: Callable[[], float] = time.monotonic) -> None:
    """Wait until the window allows one more event, and take it."""
    # The wait is computed from the window, not polled: nothing else frees a slot.
    while not window.try_take(clock()):  # noqa: ASYNC110
        await asyncio.sleep(window.wait_time(clock()) + 0.001)


class WeightBudget:
    """A weight budget per minute (Hyperliquid's REST limit is 1200 weight/min per IP).

    A token bucket of `per_minute` tokens refilling evenly over the minute; a
    call of weight w waits until w tokens are there. Callers queue in arrival order.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucket(per_minute / 60.0, per_minute, clock)
        self._lock = asyncio.Lock()
        self.spent = 0.0

    def available(self) -> float:
        return self._bucket.available()

    def try_take(self, weight: float, *, keep: float = 0.0) -> bool:
        """Take ``weight`` now if that leaves at least ``keep``; never waits.

        Order entry's REST fallback: it must not queue behind the data side's
        polling, and must leave it ``keep``.
        """
        if not self._bucket.take(weight, keep=keep):
            return False
        self.spent += weight
        return True

    async def take(self, weight: float) -> None:
        async with self._lock:
            # The wait is computed from the bucket, not polled: nothing else refills it.
            while not self._bucket.take(weight):  # noqa: ASYNC110
                await asyncio.sleep(self._bucket.retry_after(weight))
            self.spent += weight


class MessageRate:
    """Upstream messages sent per minute across all links (Hyperliquid: 2000/min per IP)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = SlidingWindow(per_minute, 60.0)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            await wait_turn(self._window, self._clock)

    def try_take(self, *, keep: int = 0) -> bool:
        """One message now if at least ``keep`` stay free for others; never waits.

        Posts use it: they never queue behind market data's subscribes, and they
        leave the data links ``keep`` messages of the minute.
        """
        now = self._clock()
        if self._window.limit - self._window.count(now) <= keep:
            return False
        return self._window.try_take(now)

    def count_now(self) -> None:
        """Count a message sent without waiting (the post link's pings), if there is room."""
        self._window.try_take(self._clock())

    def used(self) -> int:
        return self._window.count(self._clock())

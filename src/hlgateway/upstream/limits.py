"""Budgets that keep the gateway inside Hyperliquid's per-IP limits.

The counting is ratelimit.py's (sans I/O: the one sliding window);
this module adds the one await the callers need: wait until the budget allows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hlgateway.ratelimit import SlidingWindow


async def wait_turn(window: SlidingWindow, clock: Callable[[], float] = time.monotonic) -> None:
    """Wait until the window allows one more event, and take it."""
    # The wait is computed from the window, not polled: nothing else frees a slot.
    while not window.try_take(clock()):  # noqa: ASYNC110
        await asyncio.sleep(window.wait_time(clock()) + 0.001)


class WeightBudget:
    """Hyperliquid's REST limit: at most `per_minute` weight in any 60 s (1200 per IP).

    A sliding window, as the exchange counts (a token bucket holding a minute's
    worth would allow twice that in the first minute). A call of weight w waits
    until the last minute's weight plus w fits; callers queue in arrival order.
    Some requests cost more by what they answer (per 20 items): `charge` adds
    that afterwards, and the calls behind it wait for it too.
    """

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        window: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.capacity = per_minute
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._spent = SlidingWindow(per_minute, window)
        self._lock = asyncio.Lock()
        self.spent = 0.0  # since start

    def resize(self, per_minute: float) -> None:
        """A new limit from now on; what was spent stays counted (a node that
        starts or stops reading the market list for its workers, upstream/pool.py)."""
        self.capacity = per_minute
        self._spent.limit = per_minute

    @property
    def rate(self) -> float:
        """Weight per second, sustained."""
        return self.capacity / self.window

    def used(self) -> float:
        """Weight spent within the last window."""
        return self._spent.total(self._clock())

    def available(self) -> float:
        return max(0.0, self.capacity - self.used())

    def charge(self, weight: float) -> None:
        """Count `weight` as spent now, without waiting (a cost known only afterwards)."""
        if weight > 0:
            self._spent.add(self._clock(), weight)
            self.spent += weight

    async def take(self, weight: float) -> None:
        async with self._lock:
            while True:
                wait = self._spent.wait_time(self._clock(), weight)
                if wait <= 0:
                    self.charge(weight)
                    return
                await self._sleep(wait)

    def try_take(self, weight: float, *, keep: float = 0.0) -> bool:
        """Take ``weight`` now if that leaves at least ``keep``; never waits.

        Order entry's REST fallback: it must not queue behind the data side's
        polling, and must leave it ``keep``.
        """
        if not self._spent.try_take(self._clock(), weight, keep=keep):
            return False
        self.spent += weight
        return True


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
        return self._window.try_take(self._clock(), keep=keep)

    def count_now(self) -> None:
        """Count a message sent without waiting (the post link's pings), if there is room."""
        self._window.try_take(self._clock())

    def used(self) -> int:
        return self._window.count(self._clock())

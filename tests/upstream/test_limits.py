"""The budgets that keep us inside Hyperliquid's per-IP limits."""

from __future__ import annotations

import asyncio

from hlgateway.upstream.limits import WeightBudget


class FakeTime:
    """A clock that only the budget's own sleeps move."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_weight_budget_is_a_sliding_minute() -> None:
    t = FakeTime()
    budget = WeightBudget(1200, clock=t.clock, sleep=t.sleep)
    await budget.take(600)
    t.now = 30.0
    await budget.take(600)
    assert budget.available() == 0 and t.slept == []
    t.now = 31.0
    # A token bucket would give 20 back each second; the exchange's window gives
    # nothing back until the first 600 is a minute old.
    await budget.take(20)
    assert t.slept == [29.0] and t.now == 60.0
    assert budget.used() == 620 and budget.spent == 1220


async def test_weight_charged_after_the_answer_delays_the_next_call() -> None:
    t = FakeTime()
    budget = WeightBudget(100, clock=t.clock, sleep=t.sleep)
    await budget.take(20)
    budget.charge(100)  # a long history answered: over the limit for a while
    assert budget.available() == 0
    t.now = 10.0
    await budget.take(20)
    assert t.slept == [50.0]  # both the call and its charge left the window
    assert budget.spent == 140


async def test_weight_budget_serves_callers_in_order() -> None:
    t = FakeTime()
    budget = WeightBudget(40, clock=t.clock, sleep=t.sleep)
    order: list[int] = []

    async def call(n: int) -> None:
        await budget.take(20)
        order.append(n)

    await asyncio.gather(*(call(n) for n in range(4)))
    assert order == [0, 1, 2, 3] and t.now == 60.0


def test_weight_budget_try_take_never_waits_and_leaves_what_it_must_keep() -> None:
    now = [0.0]
    budget = WeightBudget(1200, clock=lambda: now[0])
    assert budget.try_take(1000, keep=200)
    assert not budget.try_take(1, keep=200)  # 200 left: all of it kept
    assert budget.available() == 200 and budget.spent == 1000
    now[0] = 59.0  # the sliding minute gives nothing back before the first is a minute old
    assert not budget.try_take(20, keep=200)
    now[0] = 60.0
    assert budget.try_take(20, keep=200) and budget.spent == 1020

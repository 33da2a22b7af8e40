"""The budgets that keep us inside Hyperliquid's per-IP limits."""

from __future__ import annotations

import asyncio

from hlgateway.ratelimit import SlidingWindow
from hlgateway.upstream.limits import WeightBudget


def test_sliding_window() -> None:
    window = SlidingWindow(3, 60.0)
    assert all(window.try_take(t) for t in (0.0, 1.0, 2.0))
    assert not window.try_take(3.0)
    assert window.wait_time(3.0) == 57.0
    assert window.try_take(60.0)  # the first one has left the window
    assert window.count(60.0) == 3


async def test_weight_budget_waits_for_refill() -> None:
    now = [0.0]
    budget = WeightBudget(1200, clock=lambda: now[0])  # 20 weight per second
    await budget.take(1200)
    assert budget.available() == 0
    waiter = asyncio.ensure_future(budget.take(20))
    await asyncio.sleep(0)
    assert not waiter.done()
    now[0] = 1.0  # one second later: 20 weight back
    await asyncio.wait_for(waiter, 2)
    assert budget.spent == 1220


def test_weight_budget_try_take_never_waits_and_leaves_what_it_must_keep() -> None:
    now = [0.0]
    budget = WeightBudget(1200, clock=lambda: now[0])  # 20 weight per second
    assert budget.try_take(1000, keep=200)
    assert not budget.try_take(1, keep=200)  # 200 left: all of it kept
    assert budget.available() == 200 and budget.spent == 1000
    now[0] = 1.0  # 20 back
    assert budget.try_take(20, keep=200) and budget.spent == 1020

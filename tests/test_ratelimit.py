"""The one sliding window (ratelimit.SlidingWindow) on an injected clock: counts and
weights, what `keep` leaves, when a weight fits again; and that its users (the
upstream REST budget, the simulator's per-IP REST limit, the notifier's pacer)
count by it."""

from __future__ import annotations

import pytest

from hlgateway.notifier.pacing import Limits, Pacer
from hlgateway.ratelimit import SlidingWindow
from hlgateway.simulator.limits import RestBudget
from hlgateway.upstream.limits import WeightBudget


def test_events_count_until_they_are_a_window_old() -> None:
    window = SlidingWindow(3, 60.0)
    assert all(window.try_take(t) for t in (0.0, 1.0, 2.0))
    assert not window.try_take(3.0)  # refused: nothing counted
    assert window.count(3.0) == 3
    assert window.wait_time(3.0) == 57.0 and window.free_at(3.0) == 60.0
    assert window.try_take(60.0)  # the first one left the window at exactly 60 s
    assert window.count(60.0) == 3 and window.count(200.0) == 0


def test_weights_leave_in_order_and_a_big_one_waits_for_enough_of_them() -> None:
    window = SlidingWindow(100, 60.0)
    assert window.try_take(0.0, 40) and window.try_take(10.0, 40) and window.try_take(20.0, 20)
    assert window.total(20.0) == 100
    assert window.free_at(20.0, 30) == 60.0  # the 40 of 0 s frees enough
    assert window.free_at(20.0, 70) == 70.0  # both 40s must go
    assert window.wait_time(30.0, 70) == 40.0
    assert window.total(60.0) == 60 and window.try_take(60.0, 30)


def test_keep_leaves_part_of_the_limit_to_others() -> None:
    window = SlidingWindow(1200, 60.0)
    assert window.try_take(0.0, 1000, keep=200)
    assert not window.try_take(0.0, 1, keep=200)
    assert window.try_take(0.0, 200)  # the others may use what was kept


def test_a_cost_known_afterwards_may_exceed_the_limit_and_delays_everything() -> None:
    window = SlidingWindow(100, 60.0)
    window.add(0.0, 20)
    window.add(5.0, 150)  # a long answer, charged after the fact
    assert window.total(5.0) == 170
    assert window.free_at(10.0, 1) == 65.0  # until the 150 has left, not only the 20
    window.add(6.0, 0)  # nothing spent: nothing counted
    assert window.count(6.0) == 2


@pytest.mark.parametrize("limit", [0, 1])
def test_a_limit_of_zero_admits_nothing(limit: int) -> None:
    window = SlidingWindow(limit, 1.0)
    assert window.try_take(0.0) is (limit == 1)


def test_its_users_count_the_same_minute() -> None:
    """The upstream budget (waits), the simulator's limit (refuses) and a plain window
    agree on what a minute holds and when it frees."""
    now = [0.0]
    upstream = WeightBudget(100, clock=lambda: now[0])
    simulator = RestBudget(100)
    plain = SlidingWindow(100, 60.0)
    for t, weight in ((0.0, 60), (30.0, 40)):
        now[0] = t
        upstream.charge(weight)
        simulator.charge(t, weight)
        plain.add(t, weight)
    now[0] = 45.0
    assert upstream.used() == simulator.used(45.0) == plain.total(45.0) == 100
    assert not simulator.admit(45.0) and not upstream.try_take(1)
    now[0] = 60.0
    assert upstream.used() == simulator.used(60.0) == plain.total(60.0) == 40
    assert simulator.admit(60.0) and upstream.try_take(60)


def test_the_pacers_bot_wide_second_is_a_window() -> None:
    pacer = Pacer(Limits(global_per_second=2, margin=0.1))
    pacer.start(1, 10.0)
    pacer.start(2, 10.5)
    assert pacer.global_ready_at(10.6) == 11.1  # the first start leaves after 1.1 s
    assert pacer.ready_at(3, 11.1) == 11.1

"""The polling plan without I/O: the interval follows what the REST budget allows."""

from __future__ import annotations

import math

import pytest

from hlgateway.protocol.channels import ACCOUNT_UPDATES, USER_FILLS, USER_ORDERS
from hlgateway.upstream.polling import PollBudget, PollSchedule, poll_weight

ALL = {USER_FILLS, USER_ORDERS, ACCOUNT_UPDATES}


def test_a_polls_weight_is_hyperliquids_for_its_calls() -> None:
    assert poll_weight({USER_FILLS}) == 20  # userFillsByTime
    assert poll_weight({USER_ORDERS}) == 40  # + historicalOrders
    assert poll_weight({ACCOUNT_UPDATES}) == 2  # clearinghouseState
    assert poll_weight(ALL) == 42  # the "about 42 weight"
    # One more unit per 20 items answered.
    assert poll_weight(ALL, fills=45, orders=400) == 42 + 2 + 20


def test_the_polling_rate_leaves_the_market_context_and_recoveries_their_share() -> None:
    budget = PollBudget(weight_per_minute=1200)
    # 1200 less 10% for recoveries less 120/min of metaAndAssetCtxs: 960/min.
    assert budget.rate == pytest.approx(16.0)
    assert budget.interval(0) == 5.0  # nothing polled: the configured interval
    assert budget.interval(42) == 5.0  # one wallet fits at 5 s (42 / 16 = 2.6 s)
    assert budget.interval(4 * 42) == pytest.approx(10.5)  # four need 10.5 s
    assert budget.fits(11 * 42) and not budget.fits(12 * 42)  # 30 s accepted
    # The market list grows (spot, builder dexes): polling gets what is left, live.
    reserve = [120.0]
    growing = PollBudget(weight_per_minute=1200, reserved=lambda: reserve[0])
    assert growing.rate == pytest.approx(16.0)
    reserve[0] = 460.0
    assert growing.rate == pytest.approx((1080 - 460) / 60)
    starved = PollBudget(weight_per_minute=100)  # less than the market context takes
    assert starved.rate == 0 and starved.interval(42) == math.inf and not starved.fits(1)


def test_each_wallet_is_polled_every_interval_and_the_interval_follows_the_weight() -> None:
    schedule = PollSchedule(PollBudget(weight_per_minute=1200))  # 16/s
    assert schedule.due(0.0) is None and schedule.next_at() is None
    schedule.add("a", 42, now=0.0)
    assert schedule.due(0.0) == "a"  # a new wallet's first poll is at once
    schedule.polled("a", started=0.0, weight=42)
    assert schedule.interval == 5.0 and schedule.next_at() == 5.0
    assert schedule.due(4.9) is None and schedule.due(5.0) == "a"
    for wallet in "bcd":
        schedule.add(wallet, 42, now=1.0)
    # Due at once, but paced: a's poll (42) is worth 2.625 s of the 16 a second.
    assert schedule.due(1.0) is None and schedule.next_at() == 2.625
    now = 2.625
    for wallet in "bcd":
        assert schedule.due(now) == wallet
        schedule.polled(wallet, started=now, weight=42)
        now += 42 / 16
    # Four wallets of 42: 168 a round at 16 a second, polled one after another.
    assert schedule.interval == pytest.approx(10.5)
    assert schedule.next_at() == now == 10.5  # a's turn (5.0) waited for the pace
    assert schedule.due(10.5) == "a"
    assert schedule.lag(10.5) == 5.5  # what /health shows when polls fall behind
    schedule.polled("a", started=10.5, weight=62)  # its history grew: it costs more
    assert schedule.cycle_weight == 42 * 3 + 62
    schedule.remove("a")
    assert "a" not in schedule and len(schedule) == 3


def test_paced_polls_never_spend_more_than_the_rate_in_any_minute() -> None:
    budget = PollBudget(weight_per_minute=1200)  # 16 a second
    schedule = PollSchedule(budget)
    for n in range(20):
        schedule.add(str(n), 20, now=0.0)  # all due together
    spent: list[tuple[float, float]] = []
    now = 0.0
    while now < 300:
        wallet = schedule.due(now)
        if wallet is None:
            next_at = schedule.next_at()
            assert next_at is not None and next_at > now
            now = next_at
            continue
        schedule.polled(wallet, started=now, weight=20)
        spent.append((now, 20))
    assert schedule.interval == 25.0
    # Any 60 s holds at most the rate's 960 (and one poll's weight of rounding).
    for start, _ in spent:
        assert sum(w for t, w in spent if start <= t < start + 60) <= 16 * 60 + 20


def test_a_failed_poll_is_retried_a_quarter_interval_later() -> None:
    schedule = PollSchedule(PollBudget())  # 16 a second
    schedule.add("a", 42, now=0.0)
    schedule.failed("a", started=0.0)
    assert schedule.due(0.0) is None and schedule.next_at() == 5.0  # the shortest interval
    for n in range(10):
        schedule.add(str(n), 42, now=0.0)  # 462 a round: every 28.9 s
    schedule.failed("a", started=10.0)
    assert schedule.due(10.0 + 462 / 16 / 4 - 0.01) != "a"
    assert schedule.due(10.0 + 462 / 16 / 4) in {"a", *map(str, range(10))}


def test_wallets_beyond_the_accepted_latency_are_counted() -> None:
    budget = PollBudget(weight_per_minute=1200, max_interval=30)
    schedule = PollSchedule(budget)
    for n in range(11):
        schedule.add(str(n), 42, now=0.0)
    assert schedule.over_latency() == 0  # 462 a round at 16/s: 28.9 s
    schedule.add("more", 42, now=0.0)
    assert schedule.over_latency() == 1  # 31.5 s
    for n in range(11):
        schedule.polled(str(n), started=0.0, weight=84)  # costlier than estimated
    assert schedule.over_latency() == 12 - math.floor(16 * 30 / ((11 * 84 + 42) / 12))

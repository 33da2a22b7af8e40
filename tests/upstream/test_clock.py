"""The exchange's clock as its pushed frames show it, with injected times."""

from __future__ import annotations

import pytest

from hlgateway.upstream.clock import (
    CLOCK_MARGIN_MS,
    MAX_MARGIN_MS,
    ExchangeClock,
    reach_back,
    start_from,
)

T = 1_800_000_000_000  # our clock, ms (a minute's start)


def test_a_stream_starts_a_margin_back_and_reads_back_never_before_its_start() -> None:
    assert start_from(T) == T - CLOCK_MARGIN_MS
    assert start_from(T, 5_000) == T - 5_000
    start = start_from(T)
    assert reach_back(T + 10_000, start) == T + 10_000 - CLOCK_MARGIN_MS
    assert reach_back(T - 500, start) == start  # never before the start
    assert reach_back(start, start) == start  # a position: no margin before it


@pytest.mark.parametrize("behind", [0, 1_500, -3_000])  # the exchange's clock minus ours, negated
def test_a_clock_within_the_margin_keeps_it(behind: int) -> None:
    clock = ExchangeClock()
    assert clock.behind_at_most_ms() is None and clock.margin_ms() == CLOCK_MARGIN_MS
    for i, flight in enumerate((40, 12, 300)):  # in flight for that long
        received = T + 1_000 * i
        assert not clock.observe(received, received - flight - behind)
    assert clock.behind_at_most_ms() == behind + 12  # the fastest frame's bound
    assert clock.margin_ms() == CLOCK_MARGIN_MS


def test_a_clock_behind_by_more_widens_the_margin_once_and_to_its_bound() -> None:
    clock = ExchangeClock()
    assert clock.observe(T, T - 5_200)  # 5 s behind, 200 ms in flight: wider, once
    assert not clock.observe(T + 500, T + 500 - 5_030)  # a faster frame: narrower
    assert clock.margin_ms() == 5_030
    assert not clock.observe(T + 900, T + 900 - 9_000)  # a slow frame says nothing more
    assert clock.margin_ms() == 5_030


def test_the_bound_forgets_minutes_beyond_the_window() -> None:
    clock = ExchangeClock(window_minutes=3)
    clock.observe(T, T - 4_000)  # behind by 4 s, then the host's clock was corrected
    for minute in range(1, 3):
        clock.observe(T + minute * 60_000, T + minute * 60_000 - 50)
    assert clock.margin_ms() == CLOCK_MARGIN_MS  # the least of the window: 50 ms
    clock = ExchangeClock(window_minutes=3)
    clock.observe(T, T - 100)
    for minute in range(1, 4):
        clock.observe(T + minute * 60_000, T + minute * 60_000 - 4_000)
    assert clock.behind_at_most_ms() == 4_000  # the minute of 100 ms went out of the window
    assert clock.margin_ms() == 4_000


def test_a_broken_clock_is_not_followed_beyond_a_minute() -> None:
    clock = ExchangeClock()
    assert clock.observe(T, T - 3_600_000)
    assert clock.margin_ms() == MAX_MARGIN_MS

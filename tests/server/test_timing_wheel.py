"""The sweeper's timing wheel: each id comes back at its tick, once, never early."""

from __future__ import annotations

from hlgateway.server.timing_wheel import TimingWheel


def test_ids_come_back_at_their_tick_and_not_before() -> None:
    wheel = TimingWheel(1.0, now=100.0)
    assert wheel.file("a", 130.0) == 130
    assert wheel.file("b", 100.5) == 101
    assert wheel.file("c", 160.2) == 161  # never early: the tick at or after the due time
    assert wheel.due(100.9) == []
    assert wheel.due(101.0) == [(101, "b")]
    assert wheel.due(129.99) == []
    assert wheel.due(145.0) == [(130, "a")]
    assert len(wheel) == 1
    assert wheel.due(1000.0) == [(161, "c")]
    assert len(wheel) == 0


def test_something_already_due_goes_to_the_next_tick_not_a_taken_one() -> None:
    wheel = TimingWheel(0.5, now=10.0)
    assert wheel.due(12.2) == []  # ticks up to 24 (12.0 s) taken
    assert wheel.file("late", 11.0) == 25  # due in the past: the next tick
    assert wheel.due(12.4) == []
    assert wheel.due(12.5) == [(25, "late")]


def test_filing_again_leaves_a_stale_entry_the_caller_recognises_by_its_tick() -> None:
    wheel = TimingWheel(1.0, now=0.0)
    filed = {"a": wheel.file("a", 30.0)}
    filed["a"] = wheel.file("a", 5.0)  # a token refresh: now due earlier
    visits = [key for tick, key in wheel.due(40.0) if filed[key] == tick]
    assert visits == ["a"]  # once: the entry for tick 30 is stale


def test_a_long_pause_takes_everything_due_in_order() -> None:
    wheel = TimingWheel(0.02, now=0.0)
    for i, due in enumerate((3600.0, 1.0, 7200.0, 0.5)):
        wheel.file(str(i), due)
    assert [key for _, key in wheel.due(5000.0)] == ["3", "1", "0"]
    assert [key for _, key in wheel.due(10_000.0)] == ["2"]

"""Telegram's flood limits, driven by a fake clock."""

from __future__ import annotations

import itertools

from hlgateway.notifier.pacing import Limits, Pacer


def test_private_chat_one_message_a_second() -> None:
    pacer = Pacer(Limits(margin=0))
    assert pacer.ready_at(5, 100.0) == 100.0
    pacer.start(5, 100.0)
    assert pacer.ready_at(5, 100.2) == 101.0
    assert pacer.ready_at(6, 100.2) == 100.2  # another chat is not held


def test_group_twenty_a_minute_evenly() -> None:
    pacer = Pacer(Limits(margin=0))
    pacer.start(-100, 10.0)
    assert pacer.ready_at(-100, 10.5) == 13.0


def test_429_holds_the_chat_until_retry_after() -> None:
    pacer = Pacer()
    pacer.start(5, 0.0)
    pacer.hold(5, 30.0)
    assert pacer.ready_at(5, 1.0) == 30.0
    pacer.hold(5, 10.0)  # a shorter hold never shortens a longer one
    assert pacer.ready_at(5, 1.0) == 30.0
    assert pacer.ready_at(5, 30.0) == 30.0


def test_global_limit_across_chats() -> None:
    pacer = Pacer(Limits(global_per_second=3, margin=0))
    for chat in (1, 2, 3):
        assert pacer.ready_at(chat, 0.0) == 0.0
        pacer.start(chat, 0.0)
    assert pacer.ready_at(4, 0.5) == 1.0  # the oldest of the three leaves the window at 1.0
    assert pacer.ready_at(4, 1.0) == 1.0


def test_sustained_schedule_keeps_every_limit() -> None:
    """Drive 50 chats with a message always waiting for 10 simulated seconds."""
    limits = Limits(global_per_second=30, margin=0)
    pacer = Pacer(limits)
    starts: list[tuple[float, int]] = []
    now = 0.0
    while now < 10.0:
        for chat in [*range(1, 41), *range(-10, 0)]:
            if pacer.ready_at(chat, now) <= now:
                pacer.start(chat, now)
                starts.append((now, chat))
        now = round(now + 0.01, 2)
    for t, _ in starts:
        assert sum(1 for u, _ in starts if t <= u < t + 1.0) <= 30
    per_chat: dict[int, list[float]] = {}
    for t, chat in starts:
        per_chat.setdefault(chat, []).append(t)
    for chat, times in per_chat.items():
        gap = 3.0 if chat < 0 else 1.0
        assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(times))
    assert len(starts) >= 290  # the global budget is used, not wasted


def test_the_margin_keeps_arrivals_apart() -> None:
    pacer = Pacer(Limits(global_per_second=2, margin=0.1))
    pacer.start(1, 0.0)
    assert pacer.ready_at(1, 0.5) == 1.1
    pacer.start(2, 0.0)
    assert pacer.ready_at(3, 1.05) == 1.1

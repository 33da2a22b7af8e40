"""Backoff: the seed's schedule (1 s, x1.5, capped at 30 s), jitter, attempt limits."""

from __future__ import annotations

import itertools
import random

import pytest

from hlgateway.backoff import Backoff


def test_seed_schedule_without_jitter() -> None:
    backoff = Backoff(jitter=0)
    delays = [backoff.delay(n) for n in range(1, 12)]
    assert delays[:4] == [1.0, 1.5, 2.25, 3.375]
    assert delays[-1] == 30.0
    assert all(a <= b for a, b in itertools.pairwise(delays))


def test_huge_attempt_numbers_stay_capped() -> None:
    assert Backoff(jitter=0).delay(10_000) == 30.0


def test_jitter_stays_within_its_band_and_spreads() -> None:
    backoff = Backoff(initial=2.0, jitter=0.5)
    rng = random.Random(1)
    draws = [backoff.delay(1, rng) for _ in range(500)]
    assert all(1.0 <= d <= 2.0 for d in draws)
    assert max(draws) - min(draws) > 0.8  # clients that dropped together come back apart


def test_attempt_limit_and_unlimited() -> None:
    assert not Backoff().exhausted(10**6)
    limited = Backoff(max_attempts=3)
    assert [limited.exhausted(n) for n in (1, 3, 4)] == [False, False, True]


@pytest.mark.parametrize(
    "kwargs", [{"decay": 0.5}, {"jitter": 1.5}, {"initial": -1}, {"max_attempts": -1}]
)
def test_bad_options_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]

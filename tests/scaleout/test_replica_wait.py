"""When a stored lossless round may be committed (broker/replicated.py's ReplicaWait),
on an injected clock: once the replicas have it; never while a replica that may be
promoted lacks it; without them only while the sentinels see too few up."""

from __future__ import annotations

from hlgateway.broker.replicated import (
    SHORT_WAIT_MS,
    TRUST_FOR,
    WAIT_TIMEOUT_MS,
    Decision,
    ReplicaWait,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_round_the_replicas_acknowledged_is_committed() -> None:
    wait = ReplicaWait(2, Clock())
    assert wait.answered(2) == (Decision.COMMIT, False)
    assert wait.answered(3) == (Decision.COMMIT, False)
    assert (wait.late, wait.timeouts, wait.unreplicated) == (0, 0, 0)
    assert wait.timeout_ms() == WAIT_TIMEOUT_MS


def test_a_late_replica_makes_the_round_wait_and_the_sentinels_asked_once() -> None:
    wait = ReplicaWait(1, Clock())
    assert wait.answered(0) == (Decision.WAIT, True)
    assert wait.answered(0) == (Decision.WAIT, False)  # the question is out already
    assert (wait.late, wait.timeouts) == (2, 2)
    # Replicas up (a replica being promoted, or catching up): it keeps waiting.
    wait.told(1)
    assert wait.answered(0) == (Decision.WAIT, True)
    # No sentinel answered, or there are none: nobody can say it is safe.
    wait.told(None)
    assert wait.answered(0) == (Decision.WAIT, True)
    assert wait.unreplicated == 0 and not wait.degraded
    assert wait.answered(1) == (Decision.COMMIT, False) and wait.late == 0


def test_without_replicas_up_the_rounds_go_for_a_while_then_the_sentinels_are_asked_again() -> None:
    clock = Clock()
    wait = ReplicaWait(1, clock)
    assert wait.answered(0) == (Decision.WAIT, True)
    wait.told(0)  # the only replica is down: no WAIT can succeed, no failover can use it
    assert wait.degraded and wait.timeout_ms() == SHORT_WAIT_MS
    assert wait.answered(0) == (Decision.UNREPLICATED, False)
    clock.now += TRUST_FOR - 0.1
    assert wait.answered(0) == (Decision.UNREPLICATED, False)
    assert wait.unreplicated == 2
    clock.now += 0.2  # the sentinels' word is old: ask again, and wait meanwhile
    assert not wait.degraded and wait.timeout_ms() == WAIT_TIMEOUT_MS
    assert wait.answered(0) == (Decision.WAIT, True)
    # The replica is back and acknowledges: committed as usual.
    assert wait.answered(1) == (Decision.COMMIT, False)


def test_a_replica_that_acknowledges_again_ends_the_rounds_without_it_at_once() -> None:
    wait = ReplicaWait(1, Clock())
    wait.answered(0)
    wait.told(0)
    assert wait.degraded
    assert wait.answered(1) == (Decision.COMMIT, False)
    assert not wait.degraded and wait.timeout_ms() == WAIT_TIMEOUT_MS

"""The lease state machine, driven by hand with an injected clock: no Redis, no sleeping."""

from __future__ import annotations

import pytest

from hlgateway.broker.leases import Command, Event, Lease, LeaseTiming

TIMING = LeaseTiming(ttl=5.0, renew_every=1.5, retry_every=1.0)


def test_a_wanted_lease_is_acquired_then_renewed_on_schedule() -> None:
    lease = Lease("k", TIMING)
    assert lease.poll(0.0) is None  # not wanted: nothing to do
    lease.want(0.0)
    assert lease.poll(0.0) is Command.ACQUIRE
    assert lease.poll(0.0) is None  # one command in flight at a time
    assert lease.outcome(Command.ACQUIRE, True, 0.0) is Event.GAINED
    assert lease.confirmed(4.9) and not lease.confirmed(5.0)  # ttl counted from the send
    assert lease.poll(1.4) is None
    assert lease.poll(1.5) is Command.RENEW
    assert lease.outcome(Command.RENEW, True, 1.5) is None  # still ours: no event
    assert lease.confirmed(6.4)


def test_a_lease_held_elsewhere_is_retried_until_it_frees() -> None:
    lease = Lease("k", TIMING)
    lease.want(0.0)
    assert lease.poll(0.0) is Command.ACQUIRE
    assert lease.outcome(Command.ACQUIRE, False, 0.0) is None
    assert not lease.held
    assert lease.poll(0.9) is None
    assert lease.poll(1.0) is Command.ACQUIRE
    assert lease.outcome(Command.ACQUIRE, True, 1.0) is Event.GAINED


def test_a_renewal_refused_means_the_lease_is_lost() -> None:
    lease = Lease("k", TIMING)
    lease.want(0.0)
    lease.poll(0.0)
    lease.outcome(Command.ACQUIRE, True, 0.0)
    assert lease.poll(1.5) is Command.RENEW
    assert lease.outcome(Command.RENEW, False, 1.5) is Event.LOST
    assert not lease.held
    assert lease.poll(2.5) is Command.ACQUIRE  # still wanted: it competes again


def test_an_unreachable_redis_keeps_a_held_lease_unconfirmed_until_redis_answers() -> None:
    lease = Lease("k", TIMING)
    lease.want(0.0)
    lease.poll(0.0)
    lease.outcome(Command.ACQUIRE, True, 0.0)
    now = 1.5
    while now < 20.0:
        assert lease.poll(now) is Command.RENEW
        assert lease.outcome(Command.RENEW, None, now) is None
        now += TIMING.retry_every
    assert lease.held and not lease.confirmed(now)
    assert lease.poll(now) is Command.RENEW
    assert lease.outcome(Command.RENEW, True, now) is None  # ours still: no restart of the feed
    assert lease.confirmed(now)


def test_an_unwanted_lease_is_released_and_then_idle() -> None:
    lease = Lease("k", TIMING)
    lease.want(0.0)
    lease.poll(0.0)
    lease.outcome(Command.ACQUIRE, True, 0.0)
    lease.unwant(0.5)
    assert lease.poll(0.5) is Command.RELEASE
    assert not lease.idle  # waiting for the answer
    assert lease.outcome(Command.RELEASE, True, 0.5) is Event.LOST
    assert lease.idle
    assert lease.poll(10.0) is None


def test_a_lease_never_held_is_idle_once_unwanted() -> None:
    lease = Lease("k", TIMING)
    lease.want(0.0)
    lease.poll(0.0)
    lease.outcome(Command.ACQUIRE, False, 0.0)
    lease.unwant(0.2)
    assert lease.idle
    assert lease.poll(5.0) is None


def test_timing_is_checked() -> None:
    with pytest.raises(ValueError):
        LeaseTiming(ttl=2.0, renew_every=1.5)
    with pytest.raises(ValueError):
        LeaseTiming(retry_every=0)

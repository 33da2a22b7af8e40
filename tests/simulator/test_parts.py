"""The simulator's parts without a socket: wallet tracking on a fake clock, the
stats report, and the chaos controls' input checks and subscription matching."""

from __future__ import annotations

from typing import Any

import pytest

from hlgateway.simulator.chaos import _check_seconds, _matches
from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.counters import Counters
from hlgateway.simulator.subscriptions import Subscription, parse_subscription
from hlgateway.simulator.tracking import Tracking
from hlgateway.simulator.world import SimWorld

USER = "0x" + "aB" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracking(**config: Any) -> tuple[Tracking, SimWorld, Clock]:
    world = SimWorld(1, 1_700_000_000_000)
    clock = Clock()
    return Tracking(SimConfig(**config), lambda: world, clock), world, clock


def sub(raw: dict[str, object]) -> Subscription:
    return parse_subscription(raw, lambda coin: True)


def tracked(world: SimWorld) -> list[str]:
    return world.accounts.tracked_users()


def test_a_wallet_is_tracked_while_subscribed_and_for_the_grace() -> None:
    t, world, clock = tracking(track_grace=5.0)
    fills, orders = (
        sub({"type": "userFills", "user": USER}),
        sub({"type": "orderUpdates", "user": USER}),
    )
    t.retain(fills)
    t.retain(orders)
    assert tracked(world) == [USER.lower()]
    t.release(fills)
    t.expire(clock.now + 100)  # one subscription is left: still tracked
    assert tracked(world) == [USER.lower()]
    clock.now = 200.0
    t.release(orders)
    t.expire(204.9)
    assert tracked(world) == [USER.lower()]  # within the grace
    t.expire(205.0)
    assert tracked(world) == []


def test_resubscribing_within_the_grace_keeps_the_wallet() -> None:
    t, world, clock = tracking(track_grace=5.0)
    fills = sub({"type": "userFills", "user": USER})
    t.retain(fills)
    t.release(fills)
    t.retain(fills)
    t.expire(clock.now + 1000)
    assert tracked(world) == [USER.lower()]


def test_no_grace_untracks_at_once_and_market_streams_do_not_track() -> None:
    t, world, _ = tracking(track_grace=0.0)
    t.retain(sub({"type": "l2Book", "coin": "BTC"}))
    assert tracked(world) == []
    fills = sub({"type": "userFills", "user": USER})
    t.retain(fills)
    t.release(fills)
    assert tracked(world) == []


@pytest.mark.parametrize(
    ("enabled", "body", "tracks"),
    [
        (True, {"type": "userFills", "user": USER}, True),
        (True, {"type": "meta"}, False),
        (True, {"type": "userFills", "user": "0xnot-an-address"}, False),
        (False, {"type": "userFills", "user": USER}, False),
    ],
)
def test_rest_queries_track_for_the_grace(enabled: bool, body: object, tracks: bool) -> None:
    t, world, clock = tracking(track_grace=5.0, track_rest_queries=enabled)
    t.watch_query(body)
    assert tracked(world) == ([USER.lower()] if tracks else [])
    t.expire(clock.now + 5.0)
    assert tracked(world) == []


def test_stats_report_reads_every_counter() -> None:
    c = Counters()
    c.accepted, c.dropped_idle, c.garbage_frames, c.limit_users = 4, 1, 6, 2
    report = c.report(open_links=3, tracked_users=7)
    assert report["connections"] == {
        "accepted": 4,
        "open": 3,
        "refused": {"maxConnections": 0, "newConnectionRate": 0, "unavailable": 0},
    }
    assert report["drops"]["idle"] == 1 and report["garbage"] == 6
    assert report["limitErrors"]["users"] == 2 and report["trackedUsers"] == 7


def test_chaos_matching_and_checks() -> None:
    normalized = {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "user": USER}
    assert _matches(normalized, {})
    assert _matches(normalized, {"type": "l2Book", "user": USER.upper().replace("0X", "0x")})
    assert not _matches(normalized, {"coin": "btc"})  # coins are case-sensitive
    assert not _matches(normalized, {"mantissa": 5})
    assert not _matches({"n": 1}, {"n": True})  # a bool never equals a number
    assert _check_seconds("seconds", 2, allow_zero=False) == 2.0
    for bad in (0, -1, float("inf"), True, "3"):
        with pytest.raises(ValueError):
            _check_seconds("seconds", bad, allow_zero=False)  # type: ignore[arg-type]
    assert _check_seconds("down", 0, allow_zero=True) == 0.0

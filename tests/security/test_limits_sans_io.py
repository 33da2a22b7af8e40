"""The limit decisions without sockets: token bucket, sliding window, admission, client IP."""

from __future__ import annotations

import pytest

from hlgateway.ratelimit import KeyedWindow, TokenBucket
from hlgateway.server.accept.client_counts import (
    Admission,
    AdmissionLimits,
    Refusal,
    client_ip,
    parse_networks,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() and not bucket.take()
    clock.now += 100  # refills to the burst, never beyond
    assert sum(bucket.take() for _ in range(10)) == 5


def test_token_bucket_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=1, clock=Clock())
    assert all(bucket.take() for _ in range(1000))


def test_sliding_window_is_the_seeds_rule() -> None:
    clock = Clock()
    window = KeyedWindow(limit=10, window=60, clock=clock)
    for _ in range(10):
        assert window.hit("1.2.3.4")
        clock.now += 1
    assert not window.hit("1.2.3.4")  # the 11th within a minute
    assert window.hit("5.6.7.8")  # per key
    assert window.retry_after("1.2.3.4") == pytest.approx(50)
    clock.now += 50  # the first attempt is now 60 s old
    assert window.hit("1.2.3.4")
    assert not window.hit("1.2.3.4")


def test_sliding_window_memory_is_bounded() -> None:
    clock = Clock()
    window = KeyedWindow(limit=3, window=60, clock=clock)
    for i in range(1000):
        window.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(window) == 1000
    clock.now += 61
    window.hit("1.1.1.1")  # the next hit after a window sweeps the stale keys
    assert len(window) == 1


def test_admission_new_connections_per_ip_per_minute() -> None:
    clock = Clock()
    admission = Admission(AdmissionLimits(new_per_ip_per_minute=10), clock)
    for _ in range(10):
        assert admission.enter_ip("1.2.3.4") is None
        admission.leave_ip("1.2.3.4")
    assert admission.enter_ip("1.2.3.4") is Refusal.RATE
    assert admission.retry_after("1.2.3.4") == 60
    assert admission.enter_ip("9.9.9.9") is None
    clock.now += 60
    assert admission.enter_ip("1.2.3.4") is None
    assert admission.refused[Refusal.RATE] == 1


def test_admission_open_connections_per_ip_and_per_user() -> None:
    admission = Admission(AdmissionLimits(new_per_ip_per_minute=0, max_per_ip=2, max_per_user=1))
    assert admission.enter_ip("1.2.3.4") is None
    assert admission.enter_ip("1.2.3.4") is None
    assert admission.enter_ip("1.2.3.4") is Refusal.IP_OPEN
    admission.leave_ip("1.2.3.4")
    assert admission.enter_ip("1.2.3.4") is None
    assert admission.open_from("1.2.3.4") == 2
    assert admission.enter_user("alice") is None
    assert admission.enter_user("alice") is Refusal.USER_OPEN
    assert admission.enter_user("bob") is None
    admission.leave_user("alice")
    assert admission.enter_user("alice") is None
    for _ in range(2):
        admission.leave_ip("1.2.3.4")
    admission.leave_user("alice")
    admission.leave_user("bob")
    assert admission.tracked == 0  # nothing kept for the departed
    assert admission.refused == {Refusal.RATE: 0, Refusal.IP_OPEN: 1, Refusal.USER_OPEN: 1}


def test_admission_limits_of_zero_are_off() -> None:
    admission = Admission(AdmissionLimits(new_per_ip_per_minute=0, max_per_ip=0, max_per_user=0))
    assert all(admission.enter_ip("1.1.1.1") is None for _ in range(500))
    assert all(admission.enter_user("u") is None for _ in range(500))


TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # Not behind a proxy: the socket's peer; a forged header is ignored.
        ("198.51.100.7", ["1.2.3.4"], "198.51.100.7"),
        # The trusted proxy appends the real client.
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # The client forged a left-hand entry: the rightmost untrusted hop wins.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        # Two trusted proxies in a row, and a header split across lines.
        ("127.0.0.1", ["203.0.113.9, 10.1.2.3", "10.0.0.5"], "203.0.113.9"),
        # Garbage stops the walk at the last good hop.
        ("127.0.0.1", ["not-an-ip, 10.0.0.5"], "10.0.0.5"),
        # Trusted peer without the header: the peer itself.
        ("127.0.0.1", [], "127.0.0.1"),
        # Ports and IPv4-mapped IPv6 are normalized.
        ("127.0.0.1", ["203.0.113.9:5555"], "203.0.113.9"),
        ("::ffff:198.51.100.7", [], "198.51.100.7"),
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
    ],
)
def test_client_ip(peer: str, xff: list[str], expected: str) -> None:
    assert client_ip(peer, xff, TRUSTED) == expected


def test_client_ip_ignores_the_header_without_trusted_proxies() -> None:
    assert client_ip("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"

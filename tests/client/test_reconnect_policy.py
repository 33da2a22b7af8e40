"""ReconnectPolicy and the refusal classes: every decision of GatewayClient about coming
back, as plain calls (no sockets, no clock)."""

from __future__ import annotations

import random

import pytest

from hlgateway.client import (
    AuthenticationFailed,
    Backoff,
    HandshakeRefused,
    ReconnectAttemptsExhausted,
    ReconnectPolicy,
    Retry,
    Stop,
    is_transient,
)
from hlgateway.client.refusals import FINAL, TRANSIENT

PLAIN = Backoff(initial=1.0, decay=2.0, max_delay=8.0, jitter=0)


def policy(provider: bool = False, **kw: object) -> ReconnectPolicy:
    return ReconnectPolicy(PLAIN, has_provider=provider, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def retry(decision: Retry | Stop) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def test_drops_back_off_and_a_welcome_resets_the_count() -> None:
    p = policy()
    delays = [retry(p.on_closed(None, "connect failed", False)).after for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    p.on_welcome()
    again = retry(p.on_closed(1006, "", True))
    assert (again.attempt, again.after, again.fresh_token) == (1, 1.0, False)


@pytest.mark.parametrize(
    ("code", "reason"), [(1001, "Server shutting down"), (4008, "Slow consumer"), (1011, "")]
)
def test_server_closes_are_retried(code: int, reason: str) -> None:
    assert retry(policy().on_closed(code, reason, True)).after == 1.0


def test_a_fixed_token_refused_stops() -> None:
    for code, reason in ((1008, "Invalid token"), (4001, "Token expired")):
        decision = policy().on_closed(code, reason, False)
        assert isinstance(decision, Stop) and isinstance(decision.error, AuthenticationFailed)
        assert decision.error.code == code


def test_too_many_errors_is_not_about_the_token() -> None:
    decision = retry(policy().on_closed(1008, "Too many errors", True))
    assert not decision.fresh_token


def test_a_provider_is_asked_for_a_fresh_token() -> None:
    p = policy(provider=True)
    refused = retry(p.on_closed(1008, "Invalid token", False))
    assert refused.fresh_token and refused.after == 1.0
    # A healthy link that outlived its token: back at once.
    p.on_welcome()
    expired = retry(p.on_closed(4001, "Token expired", True))
    assert expired.fresh_token and expired.after == 0.0 and expired.attempt == 1


def test_a_failover_is_immediate_and_not_a_failure() -> None:
    p = policy()
    retry(p.on_closed(None, "connect failed", False))
    p.failover()
    moved = retry(p.on_closed(1000, "gateway unhealthy", True))
    assert moved.failover and moved.after == 0.0
    assert p.attempt == 1  # the earlier failure still counts; the failover does not
    assert retry(p.on_closed(1006, "", True)).attempt == 2  # the flag is spent


def test_max_attempts() -> None:
    p = ReconnectPolicy(Backoff(initial=0.01, max_attempts=2), has_provider=False)
    assert isinstance(p.on_closed(None, "x", False), Retry)
    assert isinstance(p.on_closed(None, "x", False), Retry)
    stop = p.on_closed(None, "x", False)
    assert isinstance(stop, Stop) and isinstance(stop.error, ReconnectAttemptsExhausted)


def test_repeated_handshake_refusals_stop_and_say_why() -> None:
    p = policy(max_handshake_refusals=3)
    assert isinstance(p.on_closed(None, "connect failed", False, 403), Retry)
    assert isinstance(p.on_closed(None, "connect failed", False, 403), Retry)
    stop = p.on_closed(None, "connect failed", False, 403)
    assert isinstance(stop, Stop) and isinstance(stop.error, HandshakeRefused)
    assert stop.error.http_status == 403 and "HTTP 403 3 times in a row" in str(stop.error)


def test_passing_http_answers_and_other_failures_do_not_count_as_refusals() -> None:
    p = policy(max_handshake_refusals=2)
    for status in (429, 408, 503, 403, 429, 403):
        decision = p.on_closed(None, "connect failed", False, status)
        assert isinstance(decision, Retry), status
    assert p.handshake_refusals == 1  # the 429 between broke the run of 403s
    p.on_welcome()
    assert p.handshake_refusals == 0


def test_refusal_classes() -> None:
    assert {c for c in TRANSIENT if is_transient(c)} == {
        "UPSTREAM_UNAVAILABLE",
        "RATE_LIMITED",
        "INTERNAL",
    }
    assert not any(is_transient(c) for c in FINAL)
    assert {"FORBIDDEN", "INVALID_PARAMS", "UNKNOWN_CHANNEL", "TOO_MANY_SUBSCRIPTIONS"} == FINAL
    assert not is_transient("SOMETHING_NEW")  # unknown: final rather than a retry loop

"""The verifier's cache of verified tokens (auth.py), on an injected clock: a token
seen again is not decoded again, yet it expires as a fresh one would, a token
differing by one character is checked afresh, refusals are never remembered,
and the cache stays within its bound."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from hlgateway.auth import TOKEN_EXPIRED, TokenError, TokenVerifier
from hlgateway.config import AuthSettings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
T0 = 1_900_000_000.0  # the fake wall clock's start (Unix seconds)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def token(user: str = "alice", **claims: Any) -> str:
    return jwt.encode({"id": user, **claims}, SECRET, algorithm="HS256")


def verifier(clock: Clock, cache_size: int = 8, leeway: int = 0) -> TokenVerifier:
    settings = AuthSettings(secret=SECRET, leeway_seconds=leeway)
    return TokenVerifier(settings, cache_size=cache_size, clock=clock)


def test_a_token_seen_again_is_served_from_the_cache() -> None:
    v = verifier(Clock())
    t = token(exp=int(T0) + 60)
    first = v.verify(t)
    again = v.verify(t)
    assert again is first and again.user_id == "alice"
    assert v.cache_hits == 1 and v.cached == 1


def test_a_cached_token_expires_on_the_clock_like_a_fresh_one() -> None:
    clock = Clock()
    v = verifier(clock)
    t = token(exp=int(T0) + 60)
    v.verify(t)
    clock.now = T0 + 59.9
    assert v.verify(t).user_id == "alice"  # int(exp) > now: still valid
    clock.now = T0 + 60  # exp <= now: expired, as PyJWT counts it
    with pytest.raises(TokenError) as refused:
        v.verify(t)
    assert refused.value.reason == TOKEN_EXPIRED
    assert v.cached == 0
    with pytest.raises(TokenError) as again:  # and fresh: the same verdict
        v.verify(t)
    assert again.value.reason == TOKEN_EXPIRED


def test_the_leeway_applies_to_cached_and_fresh_tokens_alike() -> None:
    clock = Clock()
    v = verifier(clock, leeway=30)
    t = token(exp=int(T0) + 60)
    v.verify(t)
    clock.now = T0 + 89
    assert v.verify(t).user_id == "alice"
    clock.now = T0 + 90
    with pytest.raises(TokenError):
        v.verify(t)


def test_an_expired_token_is_refused_and_not_remembered() -> None:
    v = verifier(Clock())
    with pytest.raises(TokenError) as refused:
        v.verify(token(exp=int(T0) - 1))
    assert refused.value.reason == TOKEN_EXPIRED
    assert v.cached == 0


def test_a_token_one_character_off_is_verified_afresh_and_refused() -> None:
    v = verifier(Clock())
    t = token(exp=int(T0) + 60)
    v.verify(t)
    forged = t[:-1] + ("A" if t[-1] != "A" else "B")  # another signature
    with pytest.raises(TokenError):
        v.verify(forged)
    with pytest.raises(TokenError):
        v.verify(t + " ")
    assert v.cached == 1 and v.cache_hits == 0


def test_refusals_are_not_remembered() -> None:
    v = verifier(Clock())
    bad = jwt.encode({"id": "alice"}, "another-secret-of-enough-length-32b", algorithm="HS256")
    for _ in range(3):
        with pytest.raises(TokenError):
            v.verify(bad)
    with pytest.raises(TokenError):
        v.verify(token(wallets="not-a-list"))  # signed, but claims the gateway refuses
    assert v.cached == 0 and v.cache_hits == 0


def test_an_unreadable_exp_is_invalid() -> None:
    v = verifier(Clock())
    with pytest.raises(TokenError) as refused:
        v.verify(token(exp="soon"))
    assert refused.value.reason == "Invalid token"


def test_the_cache_keeps_the_most_recently_used_within_its_bound() -> None:
    v = verifier(Clock(), cache_size=3)
    tokens = [token(f"user{i}", exp=int(T0) + 60) for i in range(4)]
    for t in tokens[:3]:
        v.verify(t)
    v.verify(tokens[0])  # used again: now the most recent
    v.verify(tokens[3])  # over the bound: user1, the least recently used, goes
    assert v.cached == 3
    hits = v.cache_hits
    v.verify(tokens[0])
    v.verify(tokens[2])
    v.verify(tokens[3])
    assert v.cache_hits == hits + 3
    v.verify(tokens[1])  # verified afresh
    assert v.cache_hits == hits + 3


def test_no_cache_when_its_size_is_zero() -> None:
    v = verifier(Clock(), cache_size=0)
    t = token(exp=int(T0) + 60)
    assert v.verify(t).user_id == v.verify(t).user_id == "alice"
    assert v.cached == 0 and v.cache_hits == 0


def test_the_default_clock_is_wall_time() -> None:
    v = TokenVerifier(AuthSettings(secret=SECRET))
    with pytest.raises(TokenError) as refused:
        v.verify(token(exp=int(time.time()) - 5))
    assert refused.value.reason == TOKEN_EXPIRED
    assert v.verify(token(exp=int(time.time()) + 60)).user_id == "alice"


def test_jwt_cache_size_sets_the_bound_and_zero_turns_it_off() -> None:
    from hlgateway.config import load_settings

    default = load_settings({"JWT_SECRET": SECRET})
    assert default.auth.cache_size == 4096
    off = load_settings({"JWT_SECRET": SECRET, "JWT_CACHE_SIZE": "0"})
    v = TokenVerifier(off.auth)
    t = token(exp=int(time.time()) + 60)
    v.verify(t)
    v.verify(t)
    assert v.cached == 0 and v.cache_hits == 0

"""The --broker URL forms: one server, or a Redis Sentinel group (sans I/O)."""

from __future__ import annotations

import pytest

from hlgateway.broker import redis_url
from hlgateway.broker.redis_url import SentinelGroup, parse, problem
from hlgateway.config import AuthSettings, SettingsError, settings_from_env
from tests.helpers import SECRET


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_database() -> None:
    target = parse("redis+sentinel://10.0.0.1:26380,10.0.0.2,[::1]:26381/orders/3")
    assert target.sentinel == SentinelGroup(
        (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381)), "orders"
    )
    assert (target.db, target.min_replicas, target.url) == (3, 1, "")
    assert target.redacted == "redis+sentinel://10.0.0.1:26380,10.0.0.2:26379,[::1]:26381/orders/3"
    assert target.at("10.0.0.9", 6380) == "redis://10.0.0.9:6380/3"


def test_credentials_reach_the_servers_and_never_the_logs() -> None:
    url = (
        "redis+sentinel://app:p%40ss@s1:26379,s2:26379/main"
        "?sentinel_username=watch&sentinel_password=s3cret&min_replicas=2"
    )
    target = parse(url)
    assert (target.username, target.password, target.db, target.min_replicas) == (
        "app",
        "p@ss",
        0,
        2,
    )
    assert target.sentinel is not None
    assert (target.sentinel.username, target.sentinel.password) == ("watch", "s3cret")
    assert target.at("h", 1) == "redis://app:p%40ss@h:1/0"
    assert "p@ss" not in target.redacted and "s3cret" not in target.redacted
    assert "p@ss" not in repr(target) and "s3cret" not in repr(target)
    # A password alone, as redis-py reads redis://secret@host.
    alone = parse("redis+sentinel://:only@s1/main")
    assert (alone.username, alone.password) == (None, "only")
    assert alone.at("h", 1) == "redis://:only@h:1/0"


def test_one_server_keeps_its_url_without_the_engines_options() -> None:
    target = parse("redis://:pw@127.0.0.1:6380/4?min_replicas=1&socket_timeout=3")
    assert (target.db, target.min_replicas, target.sentinel) == (4, 1, None)
    assert target.url == "redis://:pw@127.0.0.1:6380/4?socket_timeout=3"
    assert target.redacted == "redis://127.0.0.1:6380/4"
    assert parse("redis://h").min_replicas == 0  # no replicas to wait for by default
    assert parse("unix:///run/redis.sock?db=2").db == 2


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1/0", "redis+sentinel://HOST:PORT"),
        ("redis+sentinel:///main/0", "name at least one sentinel"),
        ("redis+sentinel://s1:26379", "name the primary the sentinels watch"),
        ("redis+sentinel://s1:26379/main/x", "the database must be a whole number"),
        ("redis+sentinel://s1:port/main", "a sentinel's port must be a whole number"),
        ("redis+sentinel://s1/main/0/extra", "the path is /MASTER or /MASTER/DB"),
        ("redis+sentinel://s1/main?timeout=3", "unknown option 'timeout'"),
        ("redis+sentinel://s1/main?min_replicas=-1", "min_replicas must be at least 0"),
        ("redis://h:1/0?min_replicas=many", "min_replicas must be a whole number"),
    ],
)
def test_a_wrong_url_says_what_is_wrong(url: str, says: str) -> None:
    assert says in (problem(url) or "")


def test_the_settings_refuse_a_wrong_sentinel_url_before_anything_starts() -> None:
    auth = AuthSettings(secret=SECRET)
    with pytest.raises(SettingsError, match="name the primary the sentinels watch"):
        settings_from_env({"HLGATEWAY_BROKER": "redis+sentinel://s1:26379"}, auth=auth)
    good = "redis+sentinel://s1:26379,s2:26379,s3:26379/main/0"
    settings = settings_from_env({"HLGATEWAY_BROKER": good}, auth=auth, workers=2)
    assert settings.broker == good and redis_url.problem(good) is None

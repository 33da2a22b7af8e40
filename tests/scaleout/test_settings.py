"""Scale-out settings: --broker and --workers are checked before anything starts;
topics travel between nodes as specs that rebuild them exactly."""

from __future__ import annotations

import pytest

from hlgateway.broker.topics import decode_topic, encode_topic, topic_id
from hlgateway.config import AuthSettings, SettingsError, settings_from_env
from hlgateway.protocol.channels import ORDERBOOK, USER_FILLS
from hlgateway.protocol.channels import _make as make_topic
from hlgateway.server.workers import budget_shares
from tests.helpers import SECRET

AUTH = AuthSettings(secret=SECRET)


def test_workers_need_a_broker_and_say_so() -> None:
    with pytest.raises(SettingsError, match="--workers N needs --broker"):
        settings_from_env({}, auth=AUTH, workers=2)
    settings = settings_from_env(
        {"HLGATEWAY_BROKER": "redis://127.0.0.1:6379/3"}, auth=AUTH, workers=2
    )
    assert settings.workers == 2 and settings.broker == "redis://127.0.0.1:6379/3"


def test_the_broker_must_be_a_redis_url() -> None:
    with pytest.raises(SettingsError, match="redis://HOST:PORT/DB"):
        settings_from_env({"HLGATEWAY_BROKER": "http://example.com"}, auth=AUTH)
    with pytest.raises(SettingsError, match="HLGATEWAY_WORKERS"):
        settings_from_env({"HLGATEWAY_WORKERS": "0"}, auth=AUTH)


def test_without_a_broker_one_process_and_the_memory_engine() -> None:
    settings = settings_from_env({}, auth=AUTH)
    assert settings.broker is None and settings.workers == 1 and not settings.reuse_port


def test_each_worker_gets_its_share_of_the_per_ip_budgets() -> None:
    settings = settings_from_env({"HLGATEWAY_BROKER": "redis://h:1/0"}, auth=AUTH, workers=4)
    shares = budget_shares(settings)
    assert shares["HLGATEWAY_UPSTREAM_MAX_LINKS"] == str(settings.upstream_max_links // 4)
    assert shares["HLGATEWAY_UPSTREAM_MAX_WALLETS"] == str(
        max(1, settings.upstream_max_wallets // 4)
    )
    assert shares["HLGATEWAY_POST_MAX_IN_FLIGHT"] == str(settings.post_max_in_flight // 4)
    assert all(int(v) >= 1 for v in shares.values())


def test_a_topic_spec_rebuilds_the_same_topic() -> None:
    book = make_topic(
        ORDERBOOK,
        {"depth": 5, "symbol": "BTC", "throttle": 100},
        symbols=("BTC",),
        depth=5,
        throttle_ms=100,
    )
    fills = make_topic(USER_FILLS, {"userId": "u"}, wallets=("0x" + "ab" * 20,))
    for topic in (book, fills):
        again = decode_topic(encode_topic(topic))
        assert again == topic
        assert (again.params, again.symbols, again.depth, again.throttle_ms) == (
            topic.params,
            topic.symbols,
            topic.depth,
            topic.throttle_ms,
        )
        assert topic_id(again) == topic_id(topic)
    assert topic_id(book) != topic_id(fills)

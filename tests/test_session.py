"""The session without sockets: replies, ordering, error window, auth refresh."""

from __future__ import annotations

import json

import pytest

from hlgateway.auth import Principal, TokenVerifier, issue_token
from hlgateway.broker import Broker
from hlgateway.config import AuthSettings
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Catalog
from hlgateway.protocol.errors import CloseCode
from hlgateway.protocol.markets import Markets
from hlgateway.session import Close, Session, SessionLimits
from tests.helpers import Inbox, LocalNode

SECRET = "s" * 32
WALLET = "0x" + "c" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    hub: Hub, clock: Clock, limits: SessionLimits | None = None, broker: Broker | None = None
) -> tuple[Session, Inbox]:
    inbox = Inbox()
    session = Session(
        "c1",
        Principal("u1", "one", None, frozenset({WALLET}), expires_at=None),
        catalog=Catalog(Markets(["BTC", "ETH"])),
        hub=hub,
        out=inbox,
        verifier=TokenVerifier(AuthSettings(secret=SECRET)),
        limits=limits or SessionLimits(),
        clock=clock,
        broker=broker,
    )
    return session, inbox


def test_welcome(clock: Clock) -> None:
    session, inbox = make(Hub(), clock)
    session.welcome()
    (msg,) = inbox.pop()
    assert msg["type"] == "welcome" and msg["clientId"] == "c1"
    assert msg["user"] == {"id": "u1", "username": "one"}
    assert isinstance(msg["timestamp"], int)
    assert "infoUrl" not in msg
    session.welcome("https://api.hyperliquid.xyz/info")  # the gateway's exchange
    (msg,) = inbox.pop()
    assert msg["infoUrl"] == "https://api.hyperliquid.xyz/info"


def test_subscribe_then_unsubscribe_echo_canonical_params_and_id(clock: Clock) -> None:
    hub = Hub()
    session, inbox = make(hub, clock)
    sub = '{"type":"subscribe","channel":"prices","params":{"symbols":["eth","BTC"]},"id":"r1"}'
    assert session.handle(sub) is None
    (reply,) = inbox.pop()
    assert reply["type"] == "subscribed" and reply["id"] == "r1"
    assert reply["params"] == {"symbols": ["BTC", "ETH"]}
    assert hub.subscription_count == 1
    unsub = '{"type":"unsubscribe","channel":"prices","params":{"symbols":["ETH","btc"]},"id":2}'
    session.handle(unsub)
    (reply,) = inbox.pop()
    assert reply == {
        **reply,
        "type": "unsubscribed",
        "id": 2,
        "params": {"symbols": ["BTC", "ETH"]},
    }
    assert hub.subscription_count == 0


def test_latest_snapshot_follows_subscribed(clock: Clock) -> None:
    node = LocalNode(clock=clock)
    first, _ = make(node.hub, clock, broker=node.broker)
    first.handle('{"type":"subscribe","channel":"orderbook","params":{"symbol":"BTC"}}')
    (topic,) = node.hub.topics()
    node.publisher.publish(topic, {"n": 1})
    node.publisher.publish(topic, {"n": 2})
    second, inbox = make(node.hub, clock, broker=node.broker)
    second.handle('{"type":"subscribe","channel":"orderbook","params":{"symbol":"btc"}}')
    replies = inbox.pop()
    assert [m["type"] for m in replies] == ["subscribed", "data"]
    assert replies[1]["data"] == {"n": 2} and "offset" not in replies[0]


def test_unsubscribe_unknown_is_not_subscribed(clock: Clock) -> None:
    session, inbox = make(Hub(), clock)
    session.handle('{"type":"unsubscribe","channel":"trades","params":{"symbol":"BTC"},"id":5}')
    (reply,) = inbox.pop()
    assert reply["code"] == "NOT_SUBSCRIBED" and reply["id"] == 5 and reply["channel"] == "trades"


def test_rooms(clock: Clock) -> None:
    hub = Hub()
    session, inbox = make(hub, clock)
    session.handle('{"type":"join_room","room":"desk","id":1}')
    session.handle('{"type":"leave_room","room":"desk","id":2}')
    session.handle('{"type":"leave_room","room":"desk","id":3}')
    a, b, c = inbox.pop()
    assert (a["type"], a["room"], a["id"]) == ("room_joined", "desk", 1)
    assert (b["type"], b["room"], b["id"]) == ("room_left", "desk", 2)
    assert (c["type"], c["code"]) == ("error", "NOT_SUBSCRIBED")


def test_subscription_limit(clock: Clock) -> None:
    session, inbox = make(Hub(), clock, SessionLimits(max_subscriptions=2))
    for symbol in ("BTC", "ETH"):
        session.handle(
            f'{{"type":"subscribe","channel":"trades","params":{{"symbol":"{symbol}"}}}}'
        )
    session.handle('{"type":"subscribe","channel":"trades","params":{"symbol":"BTC"}}')  # again: ok
    session.handle('{"type":"subscribe","channel":"prices"}')
    replies = inbox.pop()
    assert [r["type"] for r in replies] == ["subscribed"] * 3 + ["error"]
    assert replies[-1]["code"] == "TOO_MANY_SUBSCRIPTIONS"


def test_error_window_closes_after_more_than_ten_bad_messages_a_minute(clock: Clock) -> None:
    session, inbox = make(Hub(), clock)
    for _ in range(10):
        assert session.handle("garbage") is None
        clock.now += 1
    assert session.handle("garbage") == Close(CloseCode.POLICY, "Too many errors")
    assert len(inbox.pop()) == 11


def test_error_window_forgets_old_errors(clock: Clock) -> None:
    session, _ = make(Hub(), clock)
    for _ in range(10):
        session.handle("garbage")
    clock.now += 61
    for _ in range(10):
        assert session.handle("garbage") is None


def test_auth_refresh_moves_the_deadline_but_not_the_identity(clock: Clock) -> None:
    session, inbox = make(Hub(), clock)
    fresh = issue_token(SECRET, "u1", wallets=[WALLET], ttl_seconds=600)
    session.handle(json.dumps({"type": "auth", "token": fresh, "id": "a"}))
    (reply,) = inbox.pop()
    assert reply["type"] == "authenticated" and reply["id"] == "a"
    assert reply["expiresAt"] == session.expires_at and session.expires_at is not None
    other = issue_token(SECRET, "u2", ttl_seconds=600)
    session.handle(json.dumps({"type": "auth", "token": other}))
    session.handle(json.dumps({"type": "auth", "token": "nope"}))
    refused = inbox.pop()
    assert [r["code"] for r in refused] == ["FORBIDDEN", "FORBIDDEN"]
    assert session.principal.user_id == "u1"


def test_close_leaves_every_topic(clock: Clock) -> None:
    hub = Hub()
    session, _ = make(hub, clock)
    session.handle('{"type":"subscribe","channel":"prices"}')
    session.handle('{"type":"join_room","room":"r"}')
    assert len(session.close()) == 2
    assert hub.topic_count == 0
    assert session.close() == []

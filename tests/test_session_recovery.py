"""Joining topics through the broker, without sockets: positions, `since`, held subscribes,
the user directory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hlgateway.auth import Principal, TokenVerifier
from hlgateway.broker import Retention
from hlgateway.config import AuthSettings
from hlgateway.directory import UserDirectory
from hlgateway.protocol.channels import Catalog, Topic, room_topic
from hlgateway.protocol.markets import Markets
from hlgateway.session import Close, Session, SessionLimits
from tests.helpers import Inbox, LocalNode

SECRET = "s" * 32
WALLET = "0x" + "c" * 40
OTHER = "0x" + "d" * 40
ADMIN = Principal("root", role="admin")


def session(
    node: LocalNode,
    principal: Principal | None = None,
    *,
    catalog: Catalog | None = None,
    limits: SessionLimits | None = None,
    verdicts: list[Close] | None = None,
) -> tuple[Session, Inbox]:
    inbox = Inbox()
    return Session(
        "c",
        principal or Principal("u1", wallets=frozenset({WALLET})),
        catalog=catalog or Catalog(Markets(["BTC", "ETH"])),
        hub=node.hub,
        out=inbox,
        verifier=TokenVerifier(AuthSettings(secret=SECRET)),
        limits=limits or SessionLimits(),
        broker=node.broker,
        on_verdict=verdicts.append if verdicts is not None else None,
    ), inbox


def send(s: Session, **msg: Any) -> None:
    assert s.handle(json.dumps(msg)) is None


def trades(node: LocalNode) -> Topic:
    (topic,) = [t for t in node.hub.topics() if t.channel == "trades"]
    return topic


def test_lossless_stream_positions_in_subscribed_and_data() -> None:
    node = LocalNode()
    s, inbox = session(node)
    send(s, type="subscribe", channel="trades", params={"symbol": "BTC"})
    (subscribed,) = inbox.pop()
    assert subscribed["offset"] == 0 and isinstance(subscribed["epoch"], str)
    assert "recovered" not in subscribed
    for n in range(3):
        node.publisher.publish(trades(node), {"n": n})
    data = inbox.pop()
    assert [m["offset"] for m in data] == [1, 2, 3]
    assert {m["epoch"] for m in data} == {subscribed["epoch"]}


def test_since_replays_the_missed_then_live_without_gap_or_duplicate() -> None:
    node = LocalNode(linger=60.0)
    first, inbox = session(node)
    send(first, type="subscribe", channel="trades", params={"symbol": "BTC"})
    epoch = inbox.pop()[0]["epoch"]
    topic = trades(node)
    node.publisher.publish(topic, {"n": 1})
    seen = inbox.pop()[-1]["offset"]
    first.close()  # the client drops; the topic lingers and its history fills
    for n in range(2, 6):
        node.publisher.publish(topic, {"n": n})
    back, inbox = session(node)
    send(
        back,
        type="subscribe",
        channel="trades",
        params={"symbol": "btc"},
        since={"offset": seen, "epoch": epoch},
        id=7,
    )
    node.publisher.publish(topic, {"n": 6})
    got = inbox.pop()
    assert got[0]["type"] == "subscribed" and got[0]["recovered"] is True and got[0]["id"] == 7
    assert got[0]["offset"] == 5  # the head when it joined; the replay follows
    assert [(m["offset"], m["data"]["n"]) for m in got[1:]] == [(o, o) for o in range(2, 7)]


def test_wrong_epoch_or_lost_offset_is_live_only() -> None:
    node = LocalNode(Retention(size=2, ttl=1, max_size=2))
    first, inbox = session(node)
    send(first, type="subscribe", channel="trades", params={"symbol": "BTC"})
    epoch = inbox.pop()[0]["epoch"]
    for n in range(5):
        node.publisher.publish(trades(node), {"n": n})
    for since in ({"offset": 1, "epoch": epoch}, {"offset": 4, "epoch": "elsewhere"}):
        other, inbox = session(node)
        send(other, type="subscribe", channel="trades", params={"symbol": "BTC"}, since=since)
        (reply,) = inbox.pop()  # no replay at all: never a partial one
        assert reply["recovered"] is False and reply["offset"] == 5 and reply["epoch"] == epoch


def test_bad_since_is_invalid_message() -> None:
    node = LocalNode()
    s, inbox = session(node)
    s.handle(
        '{"type":"subscribe","channel":"trades","params":{"symbol":"BTC"},"since":{"offset":-1,"epoch":"e"}}'
    )
    (reply,) = inbox.pop()
    assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE"
    assert node.hub.topic_count == 0


def test_rooms_have_positions_and_recover() -> None:
    node = LocalNode(linger=60.0)
    s, inbox = session(node)
    send(s, type="join_room", room="desk")
    joined = inbox.pop()[0]
    assert joined["type"] == "room_joined" and joined["offset"] == 0
    node.publisher.publish(room_topic("desk"), {"hello": 1})
    s.close()
    node.publisher.publish(room_topic("desk"), {"hello": 2})
    back, inbox = session(node)
    send(back, type="join_room", room="desk", since={"offset": 1, "epoch": joined["epoch"]})
    got = inbox.pop()
    assert got[0]["recovered"] is True and [m["data"] for m in got[1:]] == [{"hello": 2}]


def test_snapshot_since_is_answered_with_the_latest() -> None:
    node = LocalNode()
    first, _ = session(node)
    send(first, type="subscribe", channel="prices", params={"symbols": ["BTC"]})
    (topic,) = node.hub.topics()
    node.publisher.publish(topic, {"BTC": 1})
    node.publisher.publish(topic, {"BTC": 2})
    s, inbox = session(node)
    since = {"offset": 3, "epoch": "x"}
    send(s, type="subscribe", channel="prices", params={"symbols": ["BTC"]}, since=since)
    reply, latest = inbox.pop()
    assert "recovered" not in reply and "offset" not in reply
    assert latest["data"] == {"BTC": 2} and "offset" not in latest


async def test_subscribes_wait_for_the_market_list_and_keep_order() -> None:
    node = LocalNode()
    markets = Markets()
    s, inbox = session(node, catalog=Catalog(markets))
    send(s, type="subscribe", channel="trades", params={"symbol": "BTC"}, id=1)
    send(s, type="ping", id=2)
    assert s.waiting and inbox.pop() == []  # held, nothing refused
    markets.load(["BTC"])
    await s.settled()
    got = inbox.pop()
    assert [(m["type"], m.get("id")) for m in got] == [("subscribed", 1), ("pong", 2)]
    assert s.stats["heldForMarkets"] == 1


async def test_a_market_list_that_never_comes_is_a_transient_refusal() -> None:
    node = LocalNode()
    s, inbox = session(node, catalog=Catalog(Markets()), limits=SessionLimits(market_wait=0.01))
    send(s, type="subscribe", channel="trades", params={"symbol": "BTC"}, id=1)
    await s.settled()
    (reply,) = inbox.pop()
    assert (reply["code"], reply["id"], reply["channel"]) == ("UPSTREAM_UNAVAILABLE", 1, "trades")


async def test_closing_while_held_attaches_nothing() -> None:
    node = LocalNode()
    markets = Markets()
    s, inbox = session(node, catalog=Catalog(markets))
    send(s, type="subscribe", channel="trades", params={"symbol": "BTC"})
    s.close()
    markets.load(["BTC"])
    await asyncio.sleep(0)
    assert node.hub.topic_count == 0 and inbox.pop() == [] and not s.waiting


async def test_held_messages_are_bounded() -> None:
    node = LocalNode()
    s, inbox = session(
        node, catalog=Catalog(Markets()), limits=SessionLimits(max_held=2, error_limit=100)
    )
    send(s, type="subscribe", channel="trades", params={"symbol": "BTC"})
    send(s, type="ping")
    send(s, type="ping")
    s.handle('{"type":"ping"}')
    (refused,) = inbox.pop()
    assert refused["code"] == "RATE_LIMITED"
    s.close()


def test_admin_reads_a_user_by_id_alone_from_the_directory() -> None:
    node = LocalNode()
    directory = UserDirectory()
    catalog = Catalog(Markets(["BTC"]), directory)
    # The user connected once: the gateway learnt their wallets from the token.
    session(node, Principal("alice", wallets=frozenset({WALLET})), catalog=catalog)
    directory.load("file", {"alice": [OTHER.upper().replace("0X", "0x")]})
    admin, inbox = session(node, ADMIN, catalog=catalog)
    send(admin, type="subscribe", channel="user_fills", params={"userId": "alice"})
    (reply,) = inbox.pop()
    assert reply["type"] == "subscribed" and reply["params"] == {"userId": "alice"}
    (topic,) = node.hub.topics()
    assert topic.wallets == (WALLET, OTHER)
    send(admin, type="subscribe", channel="user_orders", params={"userId": "nobody"})
    (refused,) = inbox.pop()
    assert refused["code"] == "INVALID_PARAMS" and "nobody" in refused["message"]

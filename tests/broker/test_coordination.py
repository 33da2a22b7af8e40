"""The coordinator of one node alone (memory and durable engines): it feeds what is wanted."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hlgateway.broker import MemoryBroker
from hlgateway.broker.coordination import LocalCoordinator
from hlgateway.broker.placement import NodeCapacity, Stream
from hlgateway.protocol.channels import USER_FILLS, Topic, room_topic
from hlgateway.protocol.channels import _make as make_topic
from hlgateway.protocol.errors import ErrorCode, ProtocolError

WALLET = "0x" + "a1" * 20
FILLS = make_topic(USER_FILLS, {"userId": "alice", "wallet": WALLET}, wallets=(WALLET,))


class Feeds:
    def __init__(self) -> None:
        self.started: list[tuple[Topic, Mapping[str, int] | None]] = []
        self.stopped: list[Topic] = []
        self.refuse: set[Topic] = set()

    def on_first(
        self,
        topic: Topic,
        since: Mapping[str, int] | None = None,
        *,
        placed: bool = False,
        behind: Mapping[str, int] | None = None,
    ) -> None:
        if topic in self.refuse:
            raise ProtocolError(ErrorCode.UPSTREAM_UNAVAILABLE, "budget spent")
        self.started.append((topic, since))

    def on_last(self, topic: Topic) -> None:
        self.stopped.append(topic)

    def capacity(self) -> NodeCapacity:
        return NodeCapacity()

    def stream(self, topic: Topic, key: str) -> Stream:
        return Stream(key, frozenset(topic.wallets))


def test_each_wanted_topic_is_fed_once_until_unwanted() -> None:
    feeds = Feeds()
    coordinator = LocalCoordinator(feeds)
    room = room_topic("desk")
    coordinator.want(room)
    coordinator.want(room)
    assert feeds.started == [(room, None)]  # from now: no start kept
    assert coordinator.stats().feeding == 1
    coordinator.unwant(room)
    coordinator.unwant(room)
    assert feeds.stopped == [room] and coordinator.stats().feeding == 0


def test_an_upstream_refusal_reaches_the_caller_and_nothing_is_kept() -> None:
    feeds = Feeds()
    coordinator = LocalCoordinator(feeds)
    feeds.refuse.add(FILLS)
    with pytest.raises(ProtocolError) as refused:
        coordinator.want(FILLS)
    assert refused.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    coordinator.unwant(FILLS)
    assert feeds.stopped == [] and coordinator.stats().feeding == 0


def test_the_engine_says_where_each_wallet_starts() -> None:
    feeds = Feeds()
    coordinator = LocalCoordinator(feeds, starts=lambda topic: {WALLET: 1234})
    coordinator.want(FILLS)
    assert feeds.started == [(FILLS, {WALLET: 1234})]


async def test_stopping_stops_every_feed_and_feeds_nothing_after() -> None:
    feeds = Feeds()
    coordinator = LocalCoordinator(feeds)
    coordinator.want(FILLS)
    coordinator.want(room_topic("desk"))
    await coordinator.stop()
    assert set(feeds.stopped) == {FILLS, room_topic("desk")}
    coordinator.unwant(FILLS)  # the hub lets go of everything after a stop
    coordinator.want(room_topic("late"))
    assert len(feeds.stopped) == 2 and len(feeds.started) == 2


def test_the_memory_engine_coordinates_alone_and_says_so() -> None:
    broker = MemoryBroker(node="n1")
    coordinator = broker.coordinator(Feeds(), lambda: True)
    assert isinstance(coordinator, LocalCoordinator)
    assert coordinator.stats().health()["mode"].startswith("alone")
    assert broker.node == "n1" and broker.stats().engine == "memory"
    assert not broker.degraded

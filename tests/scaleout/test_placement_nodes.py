"""The lease coordinator following the placement, in-process: two Redis engines
as two nodes on the real Redis, each feeding through a fake upstream with one
WebSocket wallet slot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from hlgateway.broker import Retention
from hlgateway.broker.coordination import Coordinator
from hlgateway.broker.placement import NodeCapacity, Stream
from hlgateway.broker.redis import RedisBroker
from hlgateway.protocol.channels import USER_FILLS, Topic
from hlgateway.protocol.channels import _make as make_topic
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from tests.helpers import eventually


def fills_of(n: int) -> Topic:
    wallet = f"0x{n:040x}"
    return make_topic(USER_FILLS, {"userId": "u", "wallet": wallet}, wallets=(wallet,))


class Feeds:
    """An upstream of one WebSocket wallet slot that polls `poll_rate` weight a second."""

    def __init__(self, poll_rate: float) -> None:
        self.poll_rate = poll_rate
        self.feeding: set[Topic] = set()
        self.placed: list[bool] = []

    def on_first(
        self,
        topic: Topic,
        since: Mapping[str, int] | None = None,
        *,
        placed: bool = False,
        behind: Mapping[str, int] | None = None,
    ) -> None:
        self.feeding.add(topic)
        self.placed.append(placed)

    def on_last(self, topic: Topic) -> None:
        self.feeding.discard(topic)

    def capacity(self) -> NodeCapacity:
        return NodeCapacity(ws_slots=1, poll_rate=self.poll_rate, max_poll_interval=30.0)

    def stream(self, topic: Topic, key: str) -> Stream:
        return Stream(key, frozenset(topic.wallets), frozenset(topic.wallets), 20)


class Node:
    def __init__(self, redis_url: str, name: str, poll_rate: float) -> None:
        self.broker = RedisBroker(redis_url, Retention(), node=name)
        self.feeds = Feeds(poll_rate)
        self.coordinator: Coordinator = self.broker.coordinator(self.feeds, lambda: True)

    async def start(self) -> None:
        await self.broker.start()
        self.coordinator.start()

    async def stop(self) -> None:
        await self.coordinator.stop()
        await self.broker.stop()

    def fleet(self) -> Mapping[str, object]:
        return self.coordinator.stats().fleet or {}


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    # a can poll one wallet within 30 s (20 weight each, 1 a second: 30 a round); b none.
    a, b = Node(redis_url, "a", poll_rate=1.0), Node(redis_url, "b", poll_rate=0.0)
    yield a, b
    for node in (a, b):
        await node.stop()


async def test_a_wallet_goes_to_a_free_slot_whichever_node_wanted_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.start()
    await b.start()
    await eventually(lambda: a.fleet().get("nodes") == 2, 10)
    first, second = fills_of(1), fills_of(2)
    a.coordinator.want(first)
    a.coordinator.want(second)  # both demanded on a: one slot there, one on b
    await eventually(lambda: len(a.feeds.feeding) == 1 and len(b.feeds.feeding) == 1, 10)
    assert a.feeds.feeding | b.feeds.feeding == {first, second}
    assert all(a.feeds.placed + b.feeds.placed)  # fed as placed by the fleet's capacity
    assert a.fleet()["websocket"] == 2 and a.fleet()["polled"] == 0


async def test_a_node_joining_takes_a_polled_wallet_from_another(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.start()
    topics = {fills_of(1), fills_of(2)}
    for topic in topics:
        a.coordinator.want(topic)
    await eventually(lambda: a.feeds.feeding == topics, 10)  # one slot, one polled
    await eventually(lambda: a.fleet().get("polled") == 1, 5)
    await b.start()
    # The plan moves one of a's streams to b's free slot: a releases it, b takes it.
    await eventually(lambda: len(a.feeds.feeding) == 1 and len(b.feeds.feeding) == 1, 15)
    assert a.coordinator.stats().lost == 1
    await eventually(lambda: (a.fleet()["websocket"], a.fleet()["polled"]) == (2, 0), 5)


async def test_wallets_the_whole_fleet_cannot_take_are_refused_with_the_reason(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.start()
    await b.start()
    await eventually(lambda: b.fleet().get("nodes") == 2, 10)  # b's view of the plan
    for n in (1, 2, 3):  # two slots, and a polls one within 30 s
        b.coordinator.want(fills_of(n))
    await eventually(lambda: len(a.feeds.feeding) + len(b.feeds.feeding) == 3, 10)
    await eventually(lambda: b.fleet().get("polled") == 1, 5)
    with pytest.raises(ProtocolError) as refused:
        b.coordinator.want(fills_of(4))
    assert refused.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "2 on WebSockets" in refused.value.message and "1 polled" in refused.value.message
    b.coordinator.want(fills_of(2))  # a wallet the fleet already feeds: nothing more

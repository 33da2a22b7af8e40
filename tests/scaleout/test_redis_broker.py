"""The Redis engine in-process, two brokers as two nodes on the real Redis (db 11)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hlgateway.broker import Position, Retention, scripts
from hlgateway.broker.redis import POSITIONS_EVERY, RedisBroker, behind_key, position_key
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import PRICES, USER_FILLS, Topic, room_topic
from hlgateway.protocol.channels import _make as make_topic
from tests.helpers import eventually
from tests.scaleout.conftest import OwnRedis
from tests.tls import self_signed

ROOM = room_topic("desk")
PRICES_TOPIC = make_topic(PRICES, {"symbols": ["BTC"]}, symbols=("BTC",))


class Node:
    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.got: list[tuple[Topic, bytes, int]] = []
        broker.bind(lambda topic, payload, offset: self.got.append((topic, payload, offset)))

    def offsets(self, topic: Topic) -> list[int]:
        return [o for t, _, o in self.got if t == topic]

    def messages(self, topic: Topic) -> list[dict[str, object]]:
        return [json.loads(p) for t, p, _ in self.got if t == topic]


def message(topic: Topic, data: object) -> bytes:
    return encoding.data_frame(encoding.data_head(topic.channel, topic.params_json), data)


async def published(node: Node, send: Callable[[], None]) -> None:
    """Send, and wait until the node's broker wrote it to Redis."""
    done = node.broker.stats().published + 1
    send()
    await eventually(lambda: node.broker.stats().published == done)


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    retention = Retention(size=5, ttl=600, max_size=8)
    a = Node(RedisBroker(redis_url, retention, node="a"))
    b = Node(RedisBroker(redis_url, retention, node="b"))
    await a.broker.start()
    await b.broker.start()
    yield a, b
    await a.broker.stop()
    await b.broker.stop()


async def test_a_publication_reaches_only_the_nodes_that_want_the_topic(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    replay = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert replay.position is not None and replay.position.offset == 0
    for n in range(3):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await eventually(lambda: len(b.offsets(ROOM)) == 3)
    assert b.offsets(ROOM) == [1, 2, 3]
    got = b.messages(ROOM)
    assert [m["data"] for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {m["epoch"] for m in got} == {replay.position.epoch}
    assert a.got == []  # a has no demand: not subscribed, nothing delivered


async def test_a_subscriber_recovers_from_history_in_redis(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    first = await a.broker.read(ROOM, None)
    assert first.position is not None
    epoch = first.position.epoch
    for n in range(4):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await eventually(lambda: a.broker.stats().published == 4)
    replay = await b.broker.read(ROOM, Position(1, epoch))
    b.broker.demand(ROOM)
    assert replay.recovered and replay.position == Position(4, epoch)
    assert [p.offset for p in replay.publications] == [2, 3, 4]
    assert [json.loads(p.payload)["offset"] for p in replay.publications] == [2, 3, 4]
    a.broker.publish(ROOM, message(ROOM, {"n": 4}))
    await eventually(lambda: b.offsets(ROOM) == [5])
    # Another epoch, or an offset this stream never reached: live only.
    assert not (await b.broker.read(ROOM, Position(1, "other"))).recovered
    assert not (await b.broker.read(ROOM, Position(99, epoch))).recovered


async def test_history_is_trimmed_by_the_retention_settings(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    first = await a.broker.read(ROOM, None)
    assert first.position is not None
    for n in range(12):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await eventually(lambda: a.broker.stats().published == 12)
    # max_size 8: offsets 5..12 are kept, 4 and before are gone.
    kept = await b.broker.read(ROOM, Position(4, first.position.epoch))
    assert kept.recovered and [p.offset for p in kept.publications] == list(range(5, 13))
    gone = await b.broker.read(ROOM, Position(3, first.position.epoch))
    assert not gone.recovered and gone.publications == []


async def test_the_shared_ledger_publishes_each_item_once_whichever_node_sends_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    head = encoding.data_head(ROOM.channel, ROOM.params_json)
    prefix, suffix = head + b'{"fills":[', b']},"timestamp":1}'
    sends = [
        (a, [("w:1", b"1"), ("w:2", b"2")]),
        (b, [("w:2", b"2"), ("w:3", b"3")]),
        (a, [("w:1", b"1"), ("w:3", b"3")]),  # nothing new: nothing published
        (b, [("w:4", b"4")]),
    ]
    for node, items in sends:
        send = functools.partial(node.broker.publish_items, ROOM, prefix, items, suffix, 60)
        await published(node, send)
    await eventually(lambda: len(b.offsets(ROOM)) == 3)
    assert [m["data"] for m in b.messages(ROOM)] == [
        {"fills": [1, 2]},
        {"fills": [3]},
        {"fills": [4]},
    ]
    assert b.offsets(ROOM) == [1, 2, 3]


async def test_a_snapshot_topic_gives_its_latest_value_to_a_subscriber_on_any_node(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.broker.read(PRICES_TOPIC, None)
    a.broker.demand(PRICES_TOPIC)
    a.broker.publish(PRICES_TOPIC, message(PRICES_TOPIC, {"BTC": 1}))
    a.broker.publish(PRICES_TOPIC, message(PRICES_TOPIC, {"BTC": 2}))
    await eventually(lambda: len(a.got) == 2)
    replay = await b.broker.read(PRICES_TOPIC, Position(3, "ignored"))
    assert replay.position is None and not replay.recovered
    assert [json.loads(p.payload)["data"] for p in replay.publications] == [{"BTC": 2}]
    assert "offset" not in json.loads(replay.publications[0].payload)


async def test_a_flushed_redis_gives_a_new_epoch_and_no_recovery(
    nodes: tuple[Node, Node], redis_url: str
) -> None:
    a, b = nodes
    before = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    a.broker.publish(ROOM, message(ROOM, {"n": 0}))
    await eventually(lambda: b.offsets(ROOM) == [1])
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    a.broker.publish(ROOM, message(ROOM, {"n": 1}))
    await eventually(lambda: b.offsets(ROOM) == [1, 1])
    after = b.messages(ROOM)[-1]
    assert before.position is not None and after["epoch"] != before.position.epoch
    replay = await a.broker.read(ROOM, Position(1, before.position.epoch))
    assert not replay.recovered
    assert replay.position == Position(1, str(after["epoch"]))


async def test_a_missed_stretch_is_fetched_from_history_before_live_data(
    nodes: tuple[Node, Node],
) -> None:
    """PUB/SUB loses what is sent while a node's subscription is down: the tracker
    sees the gap at the next message and fills it from the stream."""
    a, b = nodes
    await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    a.broker.publish(ROOM, message(ROOM, {"n": 0}))
    await eventually(lambda: b.offsets(ROOM) == [1])
    # Offsets 2 and 3 are written past b's subscription, straight into Redis.
    keys = a.broker.keys(ROOM)
    for n in (1, 2):
        args: list[bytes | str | int] = [b"hlgw:nowhere", "x", 5, 600000, 8, 60000]
        args += [keys.ledger, b"", b"", 1, 1]  # committed at once, one item
        await a.broker.shard.run(
            scripts.PUBLISH, [keys.meta, keys.stream], [*args, f"q{n}", message(ROOM, {"n": n})]
        )
    a.broker.publish(ROOM, message(ROOM, {"n": 3}))
    await eventually(lambda: len(b.offsets(ROOM)) == 4)
    assert b.offsets(ROOM) == [1, 2, 3, 4]
    assert [m["data"] for m in b.messages(ROOM)] == [{"n": n} for n in range(4)]


async def test_a_subscribed_node_answers_joins_at_once_from_what_it_holds(
    nodes: tuple[Node, Node],
) -> None:
    """Thousands of clients joining a topic the node already follows cost Redis nothing."""
    a, b = nodes
    assert b.broker.read_now(ROOM, None) is None  # not subscribed yet: Redis is asked
    await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    a.broker.publish(ROOM, message(ROOM, {"n": 0}))
    await eventually(lambda: b.offsets(ROOM) == [1])
    now = b.broker.read_now(ROOM, None)
    assert now is not None and now.position is not None and now.position.offset == 1
    same = b.broker.read_now(ROOM, now.position)
    assert same is not None and same.recovered and same.publications == []
    assert b.broker.read_now(ROOM, Position(0, now.position.epoch)) is None  # needs history
    await b.broker.read(PRICES_TOPIC, None)
    b.broker.demand(PRICES_TOPIC)
    a.broker.publish(PRICES_TOPIC, message(PRICES_TOPIC, {"BTC": 3}))
    await eventually(lambda: any(t == PRICES_TOPIC for t, _, _ in b.got))
    latest = b.broker.read_now(PRICES_TOPIC, None)
    assert latest is not None
    assert [json.loads(p.payload)["data"] for p in latest.publications] == [{"BTC": 3}]


async def test_messages_beyond_the_size_and_older_than_the_ttl_are_trimmed(
    redis_url: str,
) -> None:
    a = Node(RedisBroker(redis_url, Retention(size=2, ttl=0.2, max_size=100), node="a"))
    await a.broker.start()
    try:
        first = await a.broker.read(ROOM, None)
        assert first.position is not None
        for n in range(3):
            await published(a, functools.partial(a.broker.publish, ROOM, message(ROOM, {"n": n})))
        await asyncio.sleep(0.3)  # offsets 1..3 are now older than the ttl
        await published(a, functools.partial(a.broker.publish, ROOM, message(ROOM, {"n": 3})))
        epoch = first.position.epoch
        # The last `size` (3, 4) stay whatever their age; 1 and 2 went.
        kept = await a.broker.read(ROOM, Position(2, epoch))
        assert kept.recovered and [p.offset for p in kept.publications] == [3, 4]
        assert not (await a.broker.read(ROOM, Position(1, epoch))).recovered
    finally:
        await a.broker.stop()


async def test_a_publication_redis_refuses_for_good_is_counted_and_the_rest_go(
    nodes: tuple[Node, Node],
) -> None:
    """Retrying what Redis will always refuse would stop every publication behind it."""
    a, b = nodes
    broken = room_topic("broken")
    await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert a.broker.shard.client is not None
    # Somebody wrote a string where the broken room keeps its epoch and offset.
    await a.broker.shard.client.set(a.broker.keys(broken).meta, "not a hash")
    a.broker.publish(broken, message(broken, {"n": 0}))
    a.broker.publish(ROOM, message(ROOM, {"n": 1}))
    await eventually(lambda: b.offsets(ROOM) == [1])
    assert a.broker.stats().refused == 1
    assert a.broker.stats().published == 1
    assert a.broker.connected and a.broker.stats().disconnects == 0


async def test_flushed_scripts_are_loaded_again_and_nothing_is_lost_or_repeated(
    own_redis: OwnRedis,
) -> None:
    """NOSCRIPT (scripts flushed, a failover) is retried on a new connection; the
    ledger ids keep what was already applied from applying twice."""
    a = Node(RedisBroker(own_redis.url, node="a"))
    b = Node(RedisBroker(own_redis.url, node="b"))
    await a.broker.start()
    await b.broker.start()
    try:
        await b.broker.read(ROOM, None)
        b.broker.demand(ROOM)
        a.broker.publish(ROOM, message(ROOM, {"n": 0}))
        await eventually(lambda: b.offsets(ROOM) == [1])
        assert a.broker.shard.client is not None
        await a.broker.shard.client.script_flush()
        for n in (1, 2):
            a.broker.publish(ROOM, message(ROOM, {"n": n}))
        await eventually(lambda: len(b.offsets(ROOM)) >= 3)
        assert b.offsets(ROOM) == [1, 2, 3]
        assert [m["data"] for m in b.messages(ROOM)] == [{"n": n} for n in range(3)]
        assert a.broker.stats().disconnects >= 1 and a.broker.connected
    finally:
        await a.broker.stop()
        await b.broker.stop()


async def test_gateways_on_two_databases_of_one_redis_do_not_hear_each_other(
    own_redis: OwnRedis,
) -> None:
    """PUB/SUB channels are global to a Redis server: the database is in their names.

    On a redis-server of the test's own: on the shared one, any "other" database
    may be another run's own (HLGATEWAY_TEST_REDIS_DB), which this test would flush.
    """
    base = own_redis.url.rsplit("/", 1)[0]
    one = Node(RedisBroker(f"{base}/0", node="one"))
    two = Node(RedisBroker(f"{base}/1", node="two"))
    await one.broker.start()
    await two.broker.start()
    try:
        for node in (one, two):
            await node.broker.read(ROOM, None)
            node.broker.demand(ROOM)
        one.broker.publish(ROOM, message(ROOM, {"from": "one"}))
        two.broker.publish(ROOM, message(ROOM, {"from": "two"}))
        await eventually(lambda: one.offsets(ROOM) == [1] and two.offsets(ROOM) == [1])
        await published(one, functools.partial(one.broker.publish, ROOM, message(ROOM, {})))
        await eventually(lambda: one.offsets(ROOM) == [1, 2])
        assert [m["data"] for m in one.messages(ROOM)] == [{"from": "one"}, {}]
        assert [m["data"] for m in two.messages(ROOM)] == [{"from": "two"}]
    finally:
        await one.broker.stop()
        await two.broker.stop()


async def test_killed_publish_and_pubsub_connections_are_replaced_and_nothing_is_missed(
    own_redis: OwnRedis,
) -> None:
    a = Node(RedisBroker(own_redis.url, node="a"))
    b = Node(RedisBroker(own_redis.url, node="b"))
    await a.broker.start()
    await b.broker.start()
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await b.broker.read(ROOM, None)
        b.broker.demand(ROOM)
        a.broker.publish(ROOM, message(ROOM, {"n": 0}))
        await eventually(lambda: b.offsets(ROOM) == [1])
        lean = [
            c for c in await admin.client_list() if c["name"].startswith(("hlgw-pub-", "hlgw-sub-"))
        ]
        assert len(lean) == 4  # two per node
        for client in lean:
            await admin.client_kill_filter(_id=client["id"])
        for n in (1, 2, 3):
            a.broker.publish(ROOM, message(ROOM, {"n": n}))
        await eventually(lambda: len(b.offsets(ROOM)) >= 4, timeout=10)
        assert b.offsets(ROOM) == [1, 2, 3, 4]
        assert [m["data"] for m in b.messages(ROOM)] == [{"n": n} for n in range(4)]
        assert a.broker.stats().disconnects >= 1 and b.broker.stats().disconnects >= 1
        await eventually(lambda: a.broker.connected and b.broker.connected)
    finally:
        await admin.aclose()
        await a.broker.stop()
        await b.broker.stop()


async def test_two_nodes_over_tls(tmp_path: Path) -> None:
    """redis-py's commands and the lean connections trust the same server (rediss://)."""
    server = OwnRedis(tls=self_signed(tmp_path))
    await server.start()
    a = Node(RedisBroker(server.url, node="a"))
    b = Node(RedisBroker(server.url, node="b"))
    await a.broker.start()
    await b.broker.start()
    try:
        assert a.broker.connected and b.broker.connected
        replay = await b.broker.read(ROOM, None)
        b.broker.demand(ROOM)
        a.broker.publish(ROOM, message(ROOM, {"n": 0}))
        await eventually(lambda: b.offsets(ROOM) == [1])
        again = await a.broker.read(ROOM, replay.position)
        assert again.recovered and [p.offset for p in again.publications] == [1]
    finally:
        await a.broker.stop()
        await b.broker.stop()
        await server.stop()


async def test_one_node_reads_a_shared_value_for_all_and_is_replaced_once_gone(
    own_redis: OwnRedis,
) -> None:
    """The market list read once per broker (base.Shared): one node leads and puts,
    the other gets; a reader not heard of for the ttl is replaced, and without
    Redis each node reads for itself."""
    a = RedisBroker(own_redis.url, node="a")
    b = RedisBroker(own_redis.url, node="b")
    await a.start()
    await b.start()
    try:
        on_a, on_b = a.shared("markets", ttl=0.5), b.shared("markets", ttl=0.5)
        assert await on_a.lead() and not await on_b.lead()
        assert await on_b.get() is None  # nothing read yet: b reads for itself
        await on_a.put(b"the list")
        assert await on_b.get() == b"the list"
        assert await on_a.lead() and not await on_b.lead()  # a renews its lease
        # a stops renewing (dead): b takes over once the lease is gone, and the
        # value a left is not served past it either.
        await eventually(on_b.lead, 5, every=0.05)
        assert not await on_a.lead() and await on_b.get() is None
        await own_redis.stop()
        assert await on_b.lead() and await on_b.get() is None
    finally:
        await a.stop()
        await b.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_fed_topics_own_position_is_kept_in_redis_while_it_is_fed(
    redis_url: str,
) -> None:
    """What the next holder of a topic finds in Redis, whenever this node stops (killed
    included): each fed topic's own position, level with the wallet's feed here, or
    where it stopped while it is caught up; its last one once it is no longer fed."""
    wallet = "0x" + "a1" * 20
    one = make_topic(USER_FILLS, {"userId": "alice", "wallet": wallet}, wallets=(wallet,))
    every = make_topic(USER_FILLS, {"userId": "alice"}, wallets=(wallet,))
    clock = Clock()
    broker = RedisBroker(redis_url, node="a", clock=clock)
    redis = aioredis.Redis.from_url(redis_url)
    await broker.start()

    async def stored() -> tuple[int | None, int | None, int | None]:
        keys = [
            position_key(USER_FILLS, wallet),
            behind_key(one, wallet),
            behind_key(every, wallet),
        ]
        values = await redis.mget(keys)
        return tuple(None if v is None else int(v) for v in values)  # type: ignore[return-value]

    async def until(expected: tuple[int | None, int | None, int | None]) -> None:
        async def there() -> bool:
            return await stored() == expected

        await eventually(there, 5)

    def moved(time_ms: int) -> None:
        broker.delivered(USER_FILLS, wallet, time_ms)
        clock.now += POSITIONS_EVERY
        broker.upkeep()

    try:
        # A wallet not fed here: a topic's own position is where its feed starts.
        assert broker.is_behind(USER_FILLS, wallet, 3_000)
        broker.feeding(one, None)
        broker.restarted(USER_FILLS, wallet, 3_000)  # the wallet's feed starts here
        broker.fed(one)
        await until((3_000, 3_000, None))
        # Fed here from 3_000, nothing delivered yet: a topic level with it misses nothing.
        assert not broker.is_behind(USER_FILLS, wallet, 3_000)
        assert broker.is_behind(USER_FILLS, wallet, 2_999)
        broker.delivered(USER_FILLS, wallet, 3_000)  # an event of that very millisecond
        assert broker.is_behind(USER_FILLS, wallet, 3_000)
        broker.feeding(every, {wallet: 2_000})  # back behind the wallet: caught up next
        broker.fed(every)
        moved(5_000)
        await until((5_000, 5_000, 2_000))  # `every` stays where it stopped meanwhile
        # Delivered up to 5_000: level is behind (more of that millisecond may come).
        assert broker.is_behind(USER_FILLS, wallet, 5_000)
        assert not broker.is_behind(USER_FILLS, wallet, 5_001)
        broker.caught_up(every, wallet)
        await until((5_000, 5_000, 5_000))
        moved(6_000)
        await until((6_000, 6_000, 6_000))
        broker.not_fed(every)  # let go (or moved): its last one stays
        moved(7_000)
        await until((7_000, 7_000, 6_000))
        # A topic's own position lasts the history window, refreshed while it is fed.
        assert 0 < await redis.pttl(behind_key(one, wallet)) <= max(600_000, 60_000)
        # The wallet's feed starts again before where it was (a topic back from 4_000):
        # its position goes back there, and the topics level with it too.
        broker.not_fed(one)
        broker.feeding(one, None)
        broker.restarted(USER_FILLS, wallet, 4_000)
        broker.fed(one)
        await until((4_000, 4_000, 6_000))
    finally:
        await broker.stop()
        await redis.aclose()

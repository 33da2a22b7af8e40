"""What a failover may do to the history in Redis, and why no client is handed a wrong replay.

Asynchronous replication can lose a primary's last writes at a failover. Two
defences, tested here on redis-servers of the tests' own:

- with replicas to wait for (`min_replicas`), a lossless publication is seen by
  nobody before a replica has it (store, WAIT, commit: broker/replicated.py);
- whatever happened, a node that reconnects checks that the streams it published
  or delivered did not go backwards (broker/lua/verify.lua); one that did goes
  on in a new epoch, so that an offset a client holds never names another
  message. The Redis state of a lost write is injected by hand here.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bench.sentinel.group import SentinelGroup
from hlgateway.broker import Position, Retention
from hlgateway.broker.redis import RedisBroker
from tests.helpers import eventually as until
from tests.scaleout.conftest import OwnRedis
from tests.scaleout.test_redis_broker import PRICES_TOPIC, ROOM, Node, message

RETENTION = Retention(size=50, ttl=600, max_size=100)


async def _lose_the_last_writes(url: str, node: Node, kept: int) -> None:
    """Make Redis hold the room's stream as a replica that missed every write after
    offset `kept` would: the entries, the head and the committed head go back."""
    keys = node.broker.keys(ROOM)
    raw = aioredis.Redis.from_url(url)
    try:
        entries: Any = await raw.xrange(keys.stream, "-", f"{kept}-0")
        await raw.delete(keys.stream)  # a stream remembers its top id: built again
        for entry_id, fields in entries:
            await raw.xadd(keys.stream, fields, id=entry_id)
        await raw.hset(keys.meta, mapping={"o": kept, "c": kept})
    finally:
        await raw.aclose()


@pytest.fixture
async def pair(own_redis: OwnRedis) -> AsyncIterator[tuple[Node, Node]]:
    a = Node(RedisBroker(own_redis.url, RETENTION, node="a"))  # publishes
    b = Node(RedisBroker(own_redis.url, RETENTION, node="b"))  # delivers to its clients
    await a.broker.start()
    await b.broker.start()
    yield a, b
    await a.broker.stop()
    await b.broker.stop()


async def test_a_stream_that_went_backwards_goes_on_in_a_new_epoch(
    pair: tuple[Node, Node], own_redis: OwnRedis
) -> None:
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    old = joined.position.epoch
    for n in range(5):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4, 5])
    # A client of b was given offsets 4 and 5 of the old epoch; Redis lost them.
    await _lose_the_last_writes(own_redis.url, a, kept=3)
    a.broker.shard.fail("a failover (test)")
    await until(lambda: a.broker.stats().rewound == 1 and a.broker.connected)
    # The next publications would have taken offsets 4 and 5 of the old epoch.
    for n in (5, 6, 7):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: len(b.offsets(ROOM)) == 8)
    # b's delivery moved to the new epoch at its base: every new message once, in order.
    assert b.offsets(ROOM) == [1, 2, 3, 4, 5, 4, 5, 6]
    got: list[Any] = b.messages(ROOM)
    assert [m["data"]["n"] for m in got] == [0, 1, 2, 3, 4, 5, 6, 7]
    new = str(got[-1]["epoch"])
    assert new != old and {m["epoch"] for m in got[5:]} == {new}
    assert b.broker.stats().new_epochs == 1
    # The client that holds offset 5 of the old epoch: the stream's head is beyond
    # it again, and offset 5 is another message now. Not recovered: no wrong replay.
    for since in (Position(5, old), Position(4, old), Position(3, old)):
        replay = await a.broker.read(ROOM, since)
        assert not replay.recovered and replay.publications == []
        assert replay.position == Position(6, new)
    # Positions of the new epoch recover as always; none below its base.
    again = await a.broker.read(ROOM, Position(4, new))
    assert again.recovered and [p.offset for p in again.publications] == [5, 6]
    assert not (await a.broker.read(ROOM, Position(2, new))).recovered


async def test_a_node_that_only_delivered_the_lost_messages_detects_it_too(
    pair: tuple[Node, Node], own_redis: OwnRedis
) -> None:
    """The publisher may be gone with the old primary: every node that passed an
    offset on to its clients is a witness of it."""
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    for n in range(4):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4])
    await _lose_the_last_writes(own_redis.url, a, kept=2)
    b.broker.shard.fail("a failover (test)")
    await until(lambda: b.broker.stats().rewound == 1 and b.broker.connected)
    a.broker.publish(ROOM, message(ROOM, {"n": 4}))
    await until(lambda: len(b.offsets(ROOM)) == 5)
    last = b.messages(ROOM)[-1]
    assert (last["offset"], last["data"]) == (3, {"n": 4})  # base 2: offset 3, new epoch
    assert last["epoch"] != joined.position.epoch
    assert not (await b.broker.read(ROOM, Position(4, joined.position.epoch))).recovered


async def test_a_reconnect_to_a_redis_that_lost_nothing_keeps_every_epoch(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    for n in range(3):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3])
    for node in (a, b):
        node.broker.shard.fail("a blip (test)")
    await until(lambda: all(n.broker.stats().disconnects == 1 and n.broker.connected for n in pair))
    a.broker.publish(ROOM, message(ROOM, {"n": 3}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4])
    assert {m["epoch"] for m in b.messages(ROOM)} == {joined.position.epoch}
    assert a.broker.stats().rewound == b.broker.stats().rewound == 0
    replay = await a.broker.read(ROOM, Position(1, joined.position.epoch))
    assert replay.recovered and [p.offset for p in replay.publications] == [2, 3, 4]


async def test_a_lossless_publication_is_seen_only_once_a_replica_has_it() -> None:
    """min_replicas=1 on a primary whose replica stops: the publication waits (the
    WAIT times out, again and again), snapshots do not; the replica back, it goes."""
    group = SentinelGroup(replicas=1, sentinels=0)
    async with group:
        primary, replica = group.servers
        url = f"redis://127.0.0.1:{primary.port}/0?min_replicas=1"
        a = Node(RedisBroker(url, RETENTION, node="a"))
        b = Node(RedisBroker(url, RETENTION, node="b"))
        await a.broker.start()
        await b.broker.start()
        raw = aioredis.Redis(port=primary.port)
        try:
            joined = await b.broker.read(ROOM, None)
            b.broker.demand(ROOM)
            await b.broker.read(PRICES_TOPIC, None)
            b.broker.demand(PRICES_TOPIC)
            a.broker.publish(ROOM, message(ROOM, {"n": 0}))
            await until(lambda: b.offsets(ROOM) == [1])
            replica.signal(signal.SIGSTOP)
            a.broker.publish(ROOM, message(ROOM, {"n": 1}))
            await until(lambda: a.broker.stats().details["replicaWaits"] >= 1)
            # Stored on the primary, but nobody has seen it: not live, not in a replay.
            meta = a.broker.keys(ROOM).meta
            assert await raw.hmget(meta, ["o", "c"]) == [b"2", b"1"]
            assert b.offsets(ROOM) == [1]
            assert a.broker.queued == 1 and a.broker.stats().details["waitingForReplicas"]
            assert joined.position is not None
            fresh = Node(RedisBroker(url, RETENTION, node="fresh"))
            await fresh.broker.start()
            try:
                seen = await fresh.broker.read(ROOM, Position(0, joined.position.epoch))
                assert seen.recovered and [p.offset for p in seen.publications] == [1]
            finally:
                await fresh.broker.stop()
            # A snapshot does not wait for the replica.
            a.broker.publish(PRICES_TOPIC, message(PRICES_TOPIC, {"BTC": 1}))
            await until(lambda: any(t == PRICES_TOPIC for t, _, _ in b.got))
            replica.signal(signal.SIGCONT)
            await until(lambda: b.offsets(ROOM) == [1, 2])
            assert [m["data"] for m in b.messages(ROOM)] == [{"n": 0}, {"n": 1}]
            assert a.broker.queued == 0 and not a.broker.stats().details["waitingForReplicas"]
        finally:
            replica.signal(signal.SIGCONT)
            await raw.aclose()
            await a.broker.stop()
            await b.broker.stop()


async def test_a_client_coming_back_while_redis_is_away_waits_for_it(
    pair: tuple[Node, Node], own_redis: OwnRedis
) -> None:
    """During a failover Redis is away for seconds: a client coming back with
    `since` is not told at once that its place is lost."""
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    epoch = joined.position.epoch
    for n in range(3):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3])
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        # Redis turns the nodes away (as a server not yet promoted would), keeping its data.
        await admin.config_set("requirepass", "away")
        await admin.client_kill_filter(_type="normal")
        await admin.client_kill_filter(_type="pubsub")
        await until(lambda: not b.broker.connected)
        # Exactly where this node's delivery is: nothing was missed, recovered at once.
        now = b.broker.read_now(ROOM, Position(3, epoch))
        assert now is not None and now.recovered and now.publications == []
        # Behind it: the history is in Redis, so the read waits for Redis.
        assert b.broker.read_now(ROOM, Position(1, epoch)) is None
        behind = asyncio.ensure_future(b.broker.read(ROOM, Position(1, epoch)))
        await admin.config_set("requirepass", "")
        replay = await behind
        assert replay.recovered and [p.offset for p in replay.publications] == [2, 3]
    finally:
        await admin.config_set("requirepass", "")
        await admin.aclose()


async def test_a_commit_lost_at_a_failover_is_made_again_by_a_witness(
    pair: tuple[Node, Node], own_redis: OwnRedis
) -> None:
    """The replica had the entries (they are stored before their commit, and waited
    for), not their last commit: a client coming back with one of them is answered
    from the history once a node that published or delivered it commits it again."""
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    epoch = joined.position.epoch
    for n in range(5):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4, 5])
    raw = aioredis.Redis.from_url(own_redis.url)
    fresh = Node(RedisBroker(own_redis.url, RETENTION, node="fresh"))  # a witness of nothing
    await fresh.broker.start()
    try:
        await raw.hset(a.broker.keys(ROOM).meta, "c", 3)  # the commit of 4 and 5 was lost
        back = asyncio.ensure_future(fresh.broker.read(ROOM, Position(5, epoch)))
        a.broker.shard.fail("a failover (test)")
        replay = await back
        assert replay.recovered and replay.position == Position(5, epoch)
        assert a.broker.stats().recommitted == 1 and a.broker.stats().rewound == 0
        assert await raw.hget(a.broker.keys(ROOM).meta, "c") == b"5"
        # Published again by the commit, passed on once: b had them already.
        a.broker.publish(ROOM, message(ROOM, {"n": 5}))
        await until(lambda: len(b.offsets(ROOM)) == 6)
        assert b.offsets(ROOM) == [1, 2, 3, 4, 5, 6]
    finally:
        await raw.aclose()
        await fresh.broker.stop()


async def test_a_node_replays_what_it_delivered_even_if_the_commit_of_it_was_lost(
    pair: tuple[Node, Node], own_redis: OwnRedis
) -> None:
    """b passed 4 and 5 on; Redis (a new primary) has them stored, its committed
    head at 3. A client coming back to b from 3 or 4 gets them: b saw them committed."""
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    epoch = joined.position.epoch
    for n in range(5):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4, 5])
    raw = aioredis.Redis.from_url(own_redis.url)
    try:
        await raw.hset(a.broker.keys(ROOM).meta, "c", 3)
        for since, offsets in ((4, [5]), (3, [4, 5])):
            replay = await b.broker.read(ROOM, Position(since, epoch))
            assert replay.recovered and replay.position == Position(5, epoch)
            assert [p.offset for p in replay.publications] == offsets
    finally:
        await raw.aclose()


async def test_a_read_that_redis_going_away_cut_short_is_made_again(
    pair: tuple[Node, Node], own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's read is in flight when the primary goes (a failover): it is made
    again once Redis is back (and its streams checked), not answered `recovered: false`."""
    a, b = pair
    joined = await b.broker.read(ROOM, None)
    b.broker.demand(ROOM)
    assert joined.position is not None
    epoch = joined.position.epoch
    for n in range(5):
        a.broker.publish(ROOM, message(ROOM, {"n": n}))
    await until(lambda: b.offsets(ROOM) == [1, 2, 3, 4, 5])
    fresh = Node(RedisBroker(own_redis.url, RETENTION, node="fresh"))
    await fresh.broker.start()
    shard = fresh.broker.shard
    run = shard.run
    calls = 0

    async def cut_once(script: Any, keys: Any, args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the history read: the connections go under it
            shard.fail("a failover (test)")
            raise ConnectionError("Redis connection lost")
        return await run(script, keys, args)

    monkeypatch.setattr(shard, "run", cut_once)
    try:
        replay = await fresh.broker.read(ROOM, Position(3, epoch))
        assert replay.recovered and [p.offset for p in replay.publications] == [4, 5]
        assert calls == 2 and fresh.broker.stats().read_failures == 0
        assert fresh.broker.stats().disconnects == 1
    finally:
        await fresh.broker.stop()

"""The memory engine without sockets: positions, history reads, snapshots, upkeep."""

from __future__ import annotations

import json

from hlgateway.auth import Principal
from hlgateway.broker import MemoryBroker, Position, Retention
from hlgateway.protocol.channels import Catalog, Topic, room_topic
from hlgateway.protocol.markets import Markets

CATALOG = Catalog(Markets(["BTC"]))
ANYONE = Principal("u")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bound(broker: MemoryBroker) -> list[tuple[Topic, dict[str, object], int]]:
    got: list[tuple[Topic, dict[str, object], int]] = []
    broker.bind(lambda topic, payload, offset: got.append((topic, json.loads(payload), offset)))
    return got


def test_lossless_publications_carry_their_position() -> None:
    broker = MemoryBroker()
    got = bound(broker)
    room = room_topic("desk")
    broker.publish(room, b'{"type":"data","data":1}')
    broker.publish(room, b'{"type":"data","data":2}')
    (_, first, o1), (_, second, o2) = got
    assert (o1, o2) == (1, 2)
    assert first["offset"] == 1 and second["offset"] == 2
    assert first["epoch"] == second["epoch"] and isinstance(first["epoch"], str)
    assert second["data"] == 2  # the rest of the payload is untouched


def test_read_since_replays_exactly_what_follows() -> None:
    broker = MemoryBroker()
    bound(broker)
    room = room_topic("desk")
    for n in range(5):
        broker.publish(room, b'{"n":%d}' % n)
    head = broker.read_now(room, None)
    assert head.position is not None and head.position.offset == 5 and not head.publications
    epoch = head.position.epoch
    replay = broker.read_now(room, Position(2, epoch))
    assert replay.recovered and [p.offset for p in replay.publications] == [3, 4, 5]
    assert json.loads(replay.publications[0].payload)["n"] == 2
    assert not broker.read_now(room, Position(2, "other")).recovered
    assert not broker.read_now(room, Position(9, epoch)).recovered
    caught_up = broker.read_now(room, Position(5, epoch))
    assert caught_up.recovered and caught_up.publications == []


def test_trimmed_history_is_not_recovered_partially() -> None:
    broker = MemoryBroker(Retention(size=2, ttl=1, max_size=2))
    bound(broker)
    room = room_topic("desk")
    for n in range(5):
        broker.publish(room, b'{"n":%d}' % n)
    epoch = broker.read_now(room, None).position.epoch  # type: ignore[union-attr]
    assert not broker.read_now(room, Position(2, epoch)).recovered
    replay = broker.read_now(room, Position(3, epoch))
    assert replay.recovered and [p.offset for p in replay.publications] == [4, 5]


def test_latest_snapshot_only_while_demanded() -> None:
    broker = MemoryBroker()
    got = bound(broker)
    book = CATALOG.resolve("orderbook", {"symbol": "BTC"}, ANYONE)
    broker.publish(book, b'{"n":1}')
    assert got == [] and broker.read_now(book, None).publications == []
    broker.demand(book)
    broker.publish(book, b'{"n":1}')
    broker.publish(book, b'{"n":2}')
    replay = broker.read_now(book, Position(1, "whatever"))  # `since` is ignored for snapshots
    assert replay.position is None and [p.payload for p in replay.publications] == [b'{"n":2}']
    assert [offset for _, _, offset in got] == [0, 0]  # no positions on snapshots
    broker.drop(book)
    assert broker.read_now(book, None).publications == []


def test_upkeep_forgets_quiet_streams_nobody_wants() -> None:
    clock = Clock()
    broker = MemoryBroker(Retention(size=10, ttl=60, max_size=10), clock)
    bound(broker)
    wanted, quiet = room_topic("wanted"), room_topic("quiet")
    broker.demand(wanted)
    broker.publish(wanted, b'{"n":1}')
    broker.publish(quiet, b'{"n":1}')
    old_epoch = broker.read_now(quiet, None).position.epoch  # type: ignore[union-attr]
    clock.now = 61.0
    broker.upkeep()
    assert broker.health()["streams"] == 1
    assert broker.read_now(wanted, None).position.offset == 1  # type: ignore[union-attr]
    fresh = broker.read_now(quiet, Position(1, old_epoch))
    assert not fresh.recovered and fresh.position is not None
    assert fresh.position.epoch != old_epoch and fresh.position.offset == 0


def test_each_item_is_published_once_per_stream_while_its_ledger_keeps_it() -> None:
    clock = Clock()
    broker = MemoryBroker(Retention(size=10, ttl=60, max_size=10), clock)
    got = bound(broker)
    room = room_topic("desk")
    broker.demand(room)
    prefix, suffix = b'{"type":"data","data":[', b"]}"
    broker.publish_items(room, prefix, [("a", b"1"), ("b", b"2")], suffix, 30)
    # A feed started again where the stream was delivered to re-reads "b".
    broker.publish_items(room, prefix, [("b", b"2"), ("c", b"3")], suffix, 30)
    broker.publish_items(room, prefix, [("c", b"3")], suffix, 30)  # nothing new: nothing sent
    assert [(m["data"], o) for _, m, o in got] == [([1, 2], 1), ([3], 2)]
    clock.now = 31  # "a" left the ledger with its expiry
    broker.publish_items(room, prefix, [("a", b"1")], suffix, 30)
    assert got[-1][1]["data"] == [1]


def test_a_wallet_stream_starts_again_where_it_was_delivered_to() -> None:
    clock = Clock()
    broker = MemoryBroker(Retention(size=10, ttl=60, max_size=10), clock)
    wallet = "0x" + "a1" * 20
    fills = CATALOG.resolve(
        "user_fills", {"userId": "u"}, Principal("u", wallets=frozenset({wallet}))
    )
    assert broker.starts(fills) == {}
    broker.delivered("user_fills", wallet, 5_000)
    broker.delivered("user_fills", wallet, 4_000)  # never backwards
    assert broker.starts(fills) == {wallet: 5_000}
    assert broker.starts(room_topic("desk")) == {}  # no wallets, no positions
    broker.demand(fills)
    clock.now = 200.0
    broker.upkeep()
    assert broker.starts(fills) == {wallet: 5_000}  # wanted: kept
    broker.drop(fills)
    clock.now = 400.0
    broker.upkeep()
    assert broker.starts(fills) == {}  # nobody wants it, quiet for the window: forgotten

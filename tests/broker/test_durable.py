"""The durable engine in-process: its state survives a restart (a killed process
too), on an injected clock; the store's schema, lock and failures."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest

from hlgateway.broker import Position, Retention
from hlgateway.broker import durable as durable_module
from hlgateway.broker.durable import DurableBroker
from hlgateway.broker.placement import NodeCapacity, Stream
from hlgateway.broker.statedir import StateDirInUse
from hlgateway.broker.store import (
    DB_FILE,
    MIGRATIONS,
    Step,
    Store,
    decode_frame,
    migrate,
    schema_version,
)
from hlgateway.migrations import Migration, SchemaTooNew
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import CANDLES, PRICES, USER_FILLS, Topic, room_topic
from hlgateway.protocol.channels import _make as make_topic
from tests.helpers import eventually

WALLET = "0x" + "a1" * 20
ROOM = room_topic("desk")
FILLS = make_topic(USER_FILLS, {"userId": "alice", "wallet": WALLET}, wallets=(WALLET,))
PRICES_TOPIC = make_topic(PRICES, {"symbols": ["BTC"]}, symbols=("BTC",))
CANDLES_TOPIC = make_topic(
    CANDLES, {"interval": "1m", "symbol": "HYPE/USDC"}, symbols=("HYPE/USDC",)
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A durable broker and what it delivered; `kill` lets go of it as kill -9 would."""

    def __init__(self, directory: Path, clock: Clock, retention: Retention | None = None) -> None:
        self.broker = DurableBroker(directory, retention, clock=clock, listen="127.0.0.1:1")
        self.got: list[tuple[Topic, bytes, int]] = []
        self.broker.bind(lambda topic, payload, offset: self.got.append((topic, payload, offset)))

    async def start(self) -> Node:
        await self.broker.start()
        return self

    def offsets(self, topic: Topic) -> list[int]:
        return [o for t, _, o in self.got if t == topic]

    def data(self, topic: Topic) -> list[object]:
        return [json.loads(p)["data"] for t, p, _ in self.got if t == topic]

    def kill(self) -> None:
        """What a killed process leaves: the files as they are, the lock let go."""
        store = self.broker._store
        assert store is not None
        if store._checkpointer is not None:
            store._checkpointer.stop()
        store.db.close()
        self.broker._lock.release()


def message(topic: Topic, data: object) -> bytes:
    return encoding.data_frame(encoding.data_head(topic.channel, topic.params_json), data)


def logged(db: sqlite3.Connection) -> list[tuple[int, int]]:
    """Every entry of the store's log: (stream, offset)."""
    frames = db.execute("SELECT frame FROM log ORDER BY seq").fetchall()
    return [(entry[0], entry[1]) for (frame,) in frames for entry in decode_frame(frame)]


def moved_aside(directory: Path) -> list[Path]:
    return list(directory.glob(f"{DB_FILE}.unusable-*"))


async def turn() -> None:
    """Let the loop run the commits scheduled in this turn."""
    await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_publication_reaches_subscribers_only_once_it_is_stored(
    tmp_path: Path, clock: Clock
) -> None:
    node = await Node(tmp_path, clock).start()
    first = node.broker.read_now(ROOM, None)
    node.broker.publish(ROOM, message(ROOM, {"n": 0}))
    assert node.got == []  # queued, not stored yet
    # A subscriber joining now is told the stored head; the queued one reaches it live.
    joining = node.broker.read_now(ROOM, first.position)
    assert joining.position == first.position and joining.recovered and not joining.publications
    await turn()
    assert node.offsets(ROOM) == [1]
    assert len(logged(sqlite3.connect(tmp_path / DB_FILE))) == 1
    await node.broker.stop()


async def test_a_snapshot_update_is_delivered_and_the_whole_one_kept(
    tmp_path: Path, clock: Clock
) -> None:
    """`publish(topic, update, retained)` (candles): subscribers get the update, new
    subscribers the whole snapshot, as with the memory engine."""
    node = await Node(tmp_path, clock).start()
    node.broker.demand(PRICES_TOPIC)
    update, whole = message(PRICES_TOPIC, {"n": 1}), message(PRICES_TOPIC, {"all": [1]})
    node.broker.publish(PRICES_TOPIC, update, whole)
    assert node.data(PRICES_TOPIC) == [{"n": 1}]
    replay = node.broker.read_now(PRICES_TOPIC, None)
    assert [p.payload for p in replay.publications] == [whole]
    await node.broker.stop()


async def test_a_killed_process_keeps_its_epochs_history_and_wanted_topics(
    tmp_path: Path, clock: Clock
) -> None:
    node = await Node(tmp_path, clock).start()
    epoch = node.broker.read_now(ROOM, None).position
    assert epoch is not None
    node.broker.demand(ROOM)
    for n in range(5):
        node.broker.publish(ROOM, message(ROOM, {"n": n}))
    await turn()
    node.kill()
    again = await Node(tmp_path, clock).start()
    assert again.broker.found == "restored"
    assert await again.broker.resume() == [ROOM]
    replay = again.broker.read_now(ROOM, Position(2, epoch.epoch))
    assert replay.recovered and replay.position == Position(5, epoch.epoch)
    assert [json.loads(p.payload)["data"] for p in replay.publications] == [
        {"n": 2},
        {"n": 3},
        {"n": 4},
    ]
    again.broker.publish(ROOM, message(ROOM, {"n": 5}))
    await turn()
    assert again.offsets(ROOM) == [6]  # the same epoch goes on
    await again.broker.stop()


async def test_a_new_stream_is_stored_before_anyone_hears_of_its_epoch(
    tmp_path: Path, clock: Clock
) -> None:
    node = await Node(tmp_path, clock).start()
    told = node.broker.read_now(ROOM, None).position
    node.kill()  # in the same turn as the subscriber was told
    again = await Node(tmp_path, clock).start()
    assert again.broker.read_now(ROOM, None).position == told
    await again.broker.stop()


async def test_the_ledger_drops_what_was_published_before_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    node = await Node(tmp_path, clock).start()
    node.broker.read_now(FILLS, None)
    prefix = encoding.data_head(FILLS.channel, FILLS.params_json) + b'{"fills":['
    suffix = b']},"timestamp":1}'
    node.broker.publish_items(FILLS, prefix, [("f1", b"1"), ("f2", b"2")], suffix, 3600)
    node.broker.publish_items(FILLS, prefix, [("f2", b"2")], suffix, 3600)  # nothing new
    await turn()
    assert node.data(FILLS) == [{"fills": [1, 2]}]
    node.kill()
    again = await Node(tmp_path, clock).start()
    # A restarted feed re-reads the gap: what was given before is dropped.
    again.broker.publish_items(FILLS, prefix, [("f2", b"2"), ("f3", b"3")], suffix, 3600)
    await turn()
    assert again.data(FILLS) == [{"fills": [3]}] and again.offsets(FILLS) == [2]
    # An item whose ledger entry expired may go again (as the Redis engine's).
    clock.now += 3601
    again.broker.publish_items(FILLS, prefix, [("f1", b"1")], suffix, 3600)
    await turn()
    assert again.data(FILLS)[-1] == {"fills": [1]}
    await again.broker.stop()


async def test_delivery_positions_survive_and_say_where_a_feed_starts(
    tmp_path: Path, clock: Clock
) -> None:
    retention = Retention(size=5, ttl=60, max_size=10)
    node = await Node(tmp_path, clock, retention).start()
    assert node.broker.starts(FILLS) == {}
    node.broker.delivered(USER_FILLS, WALLET, 3_000)  # where the feed started: stored at once
    node.broker.demand(FILLS)
    await turn()
    node.kill()
    node = await Node(tmp_path, clock, retention).start()
    assert node.broker.starts(FILLS) == {WALLET: 3_000}
    node.broker.delivered(USER_FILLS, WALLET, 5_000)
    node.broker.delivered(USER_FILLS, WALLET, 4_000)  # never backwards
    # A move is written within a second (lagging the publications is safe: a restart
    # reads a little more again, and the ledger drops it).
    clock.now += durable_module.POSITIONS_EVERY
    node.broker.upkeep()
    await turn()
    node.kill()
    again = await Node(tmp_path, clock, retention).start()
    assert again.broker.starts(FILLS) == {WALLET: 5_000}
    coordinator = again.broker.coordinator(_Feeds(), lambda: True)
    for topic in await again.broker.resume():
        coordinator.want(topic)
    assert coordinator.stats().feeding == 1
    # Nobody wants the wallet's stream any more: its position goes with the history window.
    again.broker.drop(FILLS)
    clock.now += 61 + durable_module.POSITIONS_EVERY
    again.broker.upkeep()
    await turn()
    assert again.broker.starts(FILLS) == {}
    await again.broker.stop()
    last = await Node(tmp_path, clock).start()
    assert last.broker.starts(FILLS) == {} and await last.broker.resume() == []
    await last.broker.stop()


class _Feeds:
    def __init__(self) -> None:
        self.since: list[object] = []
        self.behind: list[object] = []

    def on_first(
        self,
        topic: Topic,
        since: Mapping[str, int] | None = None,
        *,
        placed: bool = False,
        behind: Mapping[str, int] | None = None,
    ) -> None:
        self.since.append(since)
        self.behind.append(behind)

    def on_last(self, topic: Topic) -> None:
        pass

    def capacity(self) -> NodeCapacity:
        return NodeCapacity()

    def stream(self, topic: Topic, key: str) -> Stream:
        return Stream(key, frozenset(topic.wallets))


async def test_a_topic_let_go_behind_its_wallets_stream_keeps_where_it_stopped(
    tmp_path: Path, clock: Clock
) -> None:
    """Two topics of one wallet's fills: the one let go stops at the wallet's position
    then, while the other goes on; a restart keeps that (`behind`), until it catches up."""
    every = make_topic(USER_FILLS, {"userId": "alice"}, wallets=(WALLET,))
    node = await Node(tmp_path, clock).start()
    node.broker.delivered(USER_FILLS, WALLET, 3_000)
    node.broker.demand(FILLS)
    node.broker.demand(every)
    node.broker.delivered(USER_FILLS, WALLET, 4_000)
    assert node.broker.behind(every) == {}
    node.broker.drop(every)  # let go at 4_000
    node.broker.delivered(USER_FILLS, WALLET, 6_000)  # FILLS goes on
    await turn()
    node.kill()
    again = await Node(tmp_path, clock).start()
    assert again.broker.behind(every) == {WALLET: 4_000}
    assert again.broker.behind(FILLS) == {}
    feeds = _Feeds()
    coordinator = again.broker.coordinator(feeds, lambda: True)
    coordinator.want(every)
    assert feeds.behind == [{WALLET: 4_000}]
    again.broker.drop(every)  # let go again before it caught up: where it stopped stays
    assert again.broker.behind(every) == {WALLET: 4_000}
    again.broker.caught_up(every, WALLET)
    await turn()
    again.kill()
    last = await Node(tmp_path, clock).start()
    assert last.broker.behind(every) == {}
    await last.broker.stop()


async def test_a_topic_back_before_its_wallets_position_moves_the_position_back(
    tmp_path: Path, clock: Clock
) -> None:
    """The topic let go at 4_000 comes back after the wallet's feed went on to 6_000
    for another topic and stopped: the wallet's feed starts again at 4_000 (Feeds:
    `restarted`, then `caught_up`). Killed before the feed delivered anything: the
    next start must begin at 4_000 again, not at 6_000 (the topic's gap lost)."""
    every = make_topic(USER_FILLS, {"userId": "alice"}, wallets=(WALLET,))
    node = await Node(tmp_path, clock).start()
    node.broker.delivered(USER_FILLS, WALLET, 3_000)
    node.broker.demand(FILLS)
    node.broker.demand(every)
    node.broker.delivered(USER_FILLS, WALLET, 4_000)
    node.broker.drop(every)  # let go at 4_000
    node.broker.delivered(USER_FILLS, WALLET, 6_000)  # FILLS goes on
    node.broker.drop(FILLS)  # and is let go too: nothing feeds the wallet
    clock.now += durable_module.POSITIONS_EVERY
    node.broker.upkeep()
    await turn()
    assert node.broker.starts(every) == {WALLET: 6_000}
    assert node.broker.behind(every) == {WALLET: 4_000}
    # `every` back: its wallet's feed starts where it stopped, as Feeds.on_first does.
    node.broker.demand(every)
    node.broker.restarted(USER_FILLS, WALLET, 4_000)
    node.broker.caught_up(every, WALLET)
    assert node.broker.starts(every) == {WALLET: 4_000}
    await turn()
    node.kill()
    again = await Node(tmp_path, clock).start()
    assert again.broker.starts(every) == {WALLET: 4_000}
    assert again.broker.behind(every) == {}
    # From there on it moves forward as before.
    again.broker.delivered(USER_FILLS, WALLET, 5_000)
    clock.now += durable_module.POSITIONS_EVERY
    again.broker.upkeep()
    await turn()
    again.kill()
    last = await Node(tmp_path, clock).start()
    assert last.broker.starts(every) == {WALLET: 5_000}
    await last.broker.stop()


async def test_a_graceful_stop_keeps_what_was_wanted_when_it_began(
    tmp_path: Path, clock: Clock
) -> None:
    """SIGTERM: the hub lets go of every topic after the coordinator stopped; the
    topics wanted then are what the next start feeds again."""
    node = await Node(tmp_path, clock).start()
    coordinator = node.broker.coordinator(_Feeds(), lambda: True)
    for topic in (ROOM, FILLS, PRICES_TOPIC):
        node.broker.demand(topic)
        coordinator.want(topic)
    await turn()
    await coordinator.stop()
    for topic in (ROOM, FILLS, PRICES_TOPIC):
        node.broker.drop(topic)
        coordinator.unwant(topic)
    await node.broker.stop()
    again = await Node(tmp_path, clock).start()
    assert set(await again.broker.resume()) == {ROOM, FILLS}  # lossless topics only
    await again.broker.stop()


async def test_a_forgotten_stream_gets_a_new_epoch_and_its_rows_go(
    tmp_path: Path, clock: Clock
) -> None:
    retention = Retention(size=2, ttl=60, max_size=4)
    node = await Node(tmp_path, clock, retention).start()
    first = node.broker.read_now(ROOM, None).position
    assert first is not None
    for n in range(6):
        node.broker.publish(ROOM, message(ROOM, {"n": n}))
    await turn()
    # Nobody wants it and it went quiet for the ttl: forgotten, here and on disk.
    clock.now += 61
    node.broker.upkeep()
    await turn()
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("SELECT count(*) FROM streams").fetchone()[0] == 0
    recreated = node.broker.read_now(ROOM, None).position
    assert recreated is not None and recreated.epoch != first.epoch and recreated.offset == 0
    # Its old rows are dead: the next commits delete them.
    node.broker.publish(ROOM, message(ROOM, {"n": 6}))
    await turn()
    assert [offset for _, offset in logged(db)] == [1]
    await node.broker.stop()
    again = await Node(tmp_path, clock, retention).start()
    replay = again.broker.read_now(ROOM, Position(0, recreated.epoch))
    assert replay.recovered and [p.offset for p in replay.publications] == [1]
    await again.broker.stop()


async def test_the_log_keeps_only_what_streams_hold_and_moves_quiet_streams_forward(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy stream's trimmed entries go from the log; a quiet stream that holds old
    frames back is copied into a new one, so the log stays about the size of what is kept."""
    monkeypatch.setattr(durable_module, "COMPACT_SLACK", 10)
    retention = Retention(size=3, ttl=1, max_size=5)
    quiet, busy = room_topic("quiet"), room_topic("busy")
    node = await Node(tmp_path, clock, retention).start()
    quiet_epoch = node.broker.read_now(quiet, None).position
    node.broker.demand(quiet)
    node.broker.demand(busy)
    for n in range(2):
        node.broker.publish(quiet, message(quiet, {"q": n}))
    await turn()
    db = sqlite3.connect(tmp_path / DB_FILE)
    for n in range(200):
        node.broker.publish(busy, message(busy, {"b": n}))
        await turn()
    # The busy stream keeps its last 5; the quiet one's two old entries hold the rest back.
    assert len(logged(db)) == 202
    clock.now += durable_module.COMPACT_EVERY
    node.broker.upkeep()
    await turn()
    node.broker.publish(busy, message(busy, {"b": 200}))
    await turn()
    assert node.broker.stats().details["compactedRows"] == 2  # the quiet stream's two rows
    # What the streams keep (3 busy, 2 quiet), and the entries trimmed in this very turn.
    assert len(logged(db)) <= 5 + 2
    node.kill()
    again = await Node(tmp_path, clock, retention).start()
    assert quiet_epoch is not None
    replay = again.broker.read_now(quiet, Position(0, quiet_epoch.epoch))
    assert replay.recovered and [json.loads(p.payload)["data"] for p in replay.publications] == [
        {"q": 0},
        {"q": 1},
    ]
    assert again.broker.read_now(busy, None).position.offset == 201  # type: ignore[union-attr]
    await again.broker.stop()


async def test_a_second_process_is_refused_naming_the_holder(tmp_path: Path, clock: Clock) -> None:
    node = await Node(tmp_path, clock).start()
    with pytest.raises(StateDirInUse, match=r"in use by process \d+ .*listening on 127\.0\.0\.1:1"):
        await Node(tmp_path, clock).start()
    await node.broker.stop()
    again = await Node(tmp_path, clock).start()  # let go at the stop
    await again.broker.stop()


async def test_a_corrupt_store_is_moved_aside_and_the_gateway_starts_anew(
    tmp_path: Path, clock: Clock
) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not a database, and never was" * 200)
    node = await Node(tmp_path, clock).start()
    assert node.broker.found == "unusable"
    aside = moved_aside(tmp_path)
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert node.broker.read_now(ROOM, None).position is not None
    await node.broker.stop()


async def test_a_store_of_a_newer_schema_refuses_to_start_and_is_left_alone(
    tmp_path: Path, clock: Clock
) -> None:
    node = await Node(tmp_path, clock).start()
    await node.broker.stop()
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    newer = r"state store .* is at schema version 2, newer .* \(1\)"
    with pytest.raises(SchemaTooNew, match=newer):
        await Node(tmp_path, clock).start()
    assert not moved_aside(tmp_path)
    again = DurableBroker(tmp_path)
    with pytest.raises(SchemaTooNew):
        await again.start()  # and the lock was let go each time


def test_migrations_upgrade_a_store_in_place_one_version_at_a_time(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    assert migrate(db) == (0, 1)
    db.execute("INSERT INTO positions VALUES ('user_fills', 'w', 5, 1.0)")

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE positions ADD COLUMN source TEXT NOT NULL DEFAULT 'ws'")

    newer = (*MIGRATIONS, Migration[Step](2, "positions know their source", add_column))
    assert migrate(db, newer) == (1, 2)
    assert schema_version(db) == 2
    assert db.execute("SELECT time_ms, source FROM positions").fetchall() == [(5, "ws")]
    assert migrate(db, newer) == (2, 2)  # nothing to do
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        migrate(db, (*MIGRATIONS, Migration[Step](3, "a gap", add_column)))


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    migrate(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE extra (x INTEGER)")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(sqlite3.OperationalError):
        migrate(db, (*MIGRATIONS, Migration[Step](2, "broken", broken)))
    assert schema_version(db) == 1
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall()


async def test_after_a_power_cut_every_stream_starts_a_new_epoch(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit may be lost with the power (synchronous=NORMAL): a replay could then
    name other content than a client was given. A reboot after an unclean stop
    changes every epoch, so that clients reload instead."""
    monkeypatch.setattr(durable_module, "boot_id", lambda: "boot-1")
    node = await Node(tmp_path, clock).start()
    before = node.broker.read_now(ROOM, None).position
    node.broker.publish(ROOM, message(ROOM, {"n": 0}))
    await turn()
    node.kill()
    monkeypatch.setattr(durable_module, "boot_id", lambda: "boot-2")
    again = await Node(tmp_path, clock).start()
    assert again.broker.found == "rebooted"
    after = again.broker.read_now(ROOM, None).position
    assert before is not None and after is not None
    assert after.epoch != before.epoch and after.offset == 0
    assert not again.broker.read_now(ROOM, before).recovered
    await again.broker.stop()
    # A clean stop, then a reboot: nothing was lost, the epoch stays.
    monkeypatch.setattr(durable_module, "boot_id", lambda: "boot-3")
    last = await Node(tmp_path, clock).start()
    assert last.broker.found == "restored" and last.broker.read_now(ROOM, None).position == after
    await last.broker.stop()


async def test_while_the_store_cannot_be_written_publications_wait_in_order(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await Node(tmp_path, clock).start()
    node.broker.read_now(ROOM, None)
    real_write = Store.write
    failing = [True]

    def write(store: Store, batch: object) -> None:
        if failing[0]:
            raise sqlite3.OperationalError("database or disk is full")
        real_write(store, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "write", write)
    for n in range(3):
        node.broker.publish(ROOM, message(ROOM, {"n": n}))
    await turn()
    assert node.got == [] and node.broker.degraded
    assert node.broker.stats().queued == 3
    failing[0] = False
    await eventually(lambda: len(node.got) == 3)
    assert node.offsets(ROOM) == [1, 2, 3] and not node.broker.degraded
    assert node.data(ROOM) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert node.broker.stats().write_failures >= 1
    await node.broker.stop()


async def test_over_the_bound_the_oldest_waiting_publication_is_dropped_and_counted(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_module, "MAX_QUEUED", 2)
    node = await Node(tmp_path, clock).start()
    node.broker.read_now(ROOM, None)
    monkeypatch.setattr(
        Store, "write", lambda store, batch: (_ for _ in ()).throw(sqlite3.OperationalError("full"))
    )
    for n in range(3):
        node.broker.publish(ROOM, message(ROOM, {"n": n}))
    assert node.broker.stats().dropped_while_away == 1 and node.broker.stats().queued == 2
    monkeypatch.undo()
    await eventually(lambda: len(node.got) == 2)
    assert node.data(ROOM) == [{"n": 1}, {"n": 2}] and node.offsets(ROOM) == [1, 2]
    await node.broker.stop()


async def test_snapshots_are_not_kept_and_go_out_at_once(tmp_path: Path, clock: Clock) -> None:
    node = await Node(tmp_path, clock).start()
    node.broker.demand(PRICES_TOPIC)
    node.broker.publish(PRICES_TOPIC, message(PRICES_TOPIC, {"BTC": 1}))
    assert node.offsets(PRICES_TOPIC) == [0]  # no commit waited for
    await node.broker.stop()
    again = await Node(tmp_path, clock).start()
    assert again.broker.read_now(PRICES_TOPIC, None).publications == []
    await again.broker.stop()


async def test_a_store_that_goes_bad_while_running_is_replaced_from_memory(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that turns out corrupt at run time (not a full disk: that is waited
    out) is moved aside and a new one is written from what memory holds: the same
    epochs and offsets, so clients notice nothing."""
    node = await Node(tmp_path, clock).start()
    epoch = node.broker.read_now(ROOM, None).position
    assert epoch is not None
    node.broker.demand(ROOM)
    node.broker.publish(ROOM, message(ROOM, {"n": 0}))
    await turn()
    real_write = Store.write
    failures = [0]

    def write(store: Store, batch: object) -> None:
        if failures[0] < 3:
            failures[0] += 1
            raise sqlite3.DatabaseError("database disk image is malformed")
        real_write(store, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "write", write)
    node.broker.publish(ROOM, message(ROOM, {"n": 1}))
    await eventually(lambda: len(node.got) == 2)
    monkeypatch.undo()
    assert node.offsets(ROOM) == [1, 2]
    assert len(moved_aside(tmp_path)) == 1
    node.kill()
    again = await Node(tmp_path, clock).start()
    replay = again.broker.read_now(ROOM, Position(0, epoch.epoch))
    assert replay.recovered and [json.loads(p.payload)["data"] for p in replay.publications] == [
        {"n": 0},
        {"n": 1},
    ]
    assert await again.broker.resume() == [ROOM]
    await again.broker.stop()


async def test_a_candle_update_keeps_the_whole_snapshot_for_new_subscribers(
    tmp_path: Path, clock: Clock
) -> None:
    """The engine honours `retained`: subscribers hear the one changed candle, a new
    subscriber reads the whole series published beside it."""
    node = await Node(tmp_path, clock).start()
    node.broker.demand(CANDLES_TOPIC)
    update = message(CANDLES_TOPIC, {"candles": [{"t": 2}]})
    whole = message(CANDLES_TOPIC, {"candles": [{"t": 1}, {"t": 2}]})
    node.broker.publish(CANDLES_TOPIC, update, whole)
    await turn()
    assert node.data(CANDLES_TOPIC) == [{"candles": [{"t": 2}]}]
    latest = node.broker.read_now(CANDLES_TOPIC, None).publications
    assert [json.loads(p.payload)["data"] for p in latest] == [{"candles": [{"t": 1}, {"t": 2}]}]
    await node.broker.stop()

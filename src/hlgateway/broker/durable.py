"""The durable engine: one process, its state on disk (the default).

The memory engine's history, positions and replays, kept in a state directory
(broker/statedir.py) by an SQLite store (broker/store.py), so that a restart,
graceful or `kill -9`, keeps every stream's epoch, offsets and history, the
exactly-once ledger, each wallet's delivery position and what was wanted:

- **Publications wait for their commit.** A lossless publication is queued; once
  per loop turn the queue is positioned (offsets assigned in order), written in
  one transaction with everything else of that turn (ledger items, positions,
  demand), and only then appended to the in-memory history and handed to the
  hub. So no client is ever given an offset that the store does not hold: a
  killed process loses nothing it answered. Snapshots and notices are not kept
  and go out at once, as with the memory engine.
- **Exactly once across a restart**, as the Redis engine across a handover: the
  feeds report how far each wallet's stream was delivered (`delivered`); a
  restarted feed starts there (`starts`) and re-reads the gap from Hyperliquid,
  and the persisted ledger of item ids (`publish_items`) drops what was
  published before the restart.
- **What was wanted comes back by itself**: the lossless topics subscribed or
  lingering when the process stopped are returned by `resume`, and the node
  feeds them again before any client returns.
- **Reads never wait**: they answer from memory, like the memory engine
  (history holds committed publications only; what is queued reaches a
  subscriber live once committed, so a replay and live data never overlap).

If the store fails (a full disk), lossless publications wait in a bounded queue
and the commit is retried with backoff; the engine reports itself degraded. A
store found corrupt at start, or at run time, is moved aside (broker/store.py
`move_aside`); at start the gateway goes on with a new store and new epochs, at
run time the new store is written from memory (epochs kept).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from hlgateway.backoff import Backoff
from hlgateway.broker.base import BrokerStats, Retention, with_position
from hlgateway.broker.coordination import Coordinator, FeedControl, LocalCoordinator
from hlgateway.broker.history import StreamHistory
from hlgateway.broker.memory import MemoryBroker
from hlgateway.broker.statedir import DirectoryLock
from hlgateway.broker.store import (
    MAX_STREAM_ID,
    OFFSET_BITS,
    Batch,
    SchemaTooNew,
    Store,
    StoreError,
    boot_id,
    move_aside,
    row_id,
)
from hlgateway.broker.topics import decode_topic, encode_topic
from hlgateway.protocol.channels import USER_FILLS, USER_ORDERS, Topic

log = logging.getLogger(__name__)

LEDGER_CAPACITY = 4096  # item ids kept per stream (a restart re-delivers seconds, not hours)
MAX_QUEUED = 100_000  # lossless publications kept while the store cannot be written
TRIM_EVERY = 10.0  # seconds between trims of the history on disk
POSITIONS_EVERY = 60.0  # seconds between sweeps of positions nobody feeds
POSITIONED_CHANNELS = frozenset({USER_FILLS, USER_ORDERS})


class _Ledger:
    """One stream's published item ids: the newest LEDGER_CAPACITY, each with its expiry."""

    __slots__ = ("first", "items", "seq")

    def __init__(self) -> None:
        self.items: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()
        self.seq = 0  # the last sequence number given
        self.first = 1  # the oldest sequence number kept

    def add(self, item: str, expires: float, now: float) -> int | None:
        """The item's sequence number if it was not published (or has expired); else None."""
        known = self.items.get(item)
        if known is not None and known[1] > now:
            return None
        self.seq += 1
        self.items[item] = (self.seq, expires)
        self.items.move_to_end(item)
        if len(self.items) > LEDGER_CAPACITY:
            self.items.popitem(last=False)
            self.first = next(iter(self.items.values()))[0]
        return self.seq

    def forget(self, item: str) -> None:
        """An item whose publication was dropped (never stored): not published after all."""
        self.items.pop(item, None)


class DurableBroker(MemoryBroker):
    def __init__(
        self,
        directory: Path,
        retention: Retention | None = None,
        *,
        node: str | None = None,
        listen: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(retention, clock, node=node)
        self.directory = directory
        self._listen = listen
        self._lock = DirectoryLock(directory)
        self._store: Store | None = None
        self._ids: dict[Topic, int] = {}  # lossless stream -> its id in the store
        self._free: list[int] = []  # ids of forgotten streams, sorted, usable again
        self._freed: list[int] = []  # forgotten in the batch not yet committed
        self._next_id = 1
        self._queue: collections.deque[tuple[Topic, bytes, list[str]]] = collections.deque()
        self._batch = Batch()
        self._commit_due = False
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0  # consecutive failed commits
        self._backoff = Backoff(initial=0.05, decay=2.0, max_delay=2.0)
        self._ledgers: dict[Topic, _Ledger] = {}
        self._ledger_disk_first: dict[int, int] = {}  # stream id -> first seq on disk
        self._disk_first: dict[int, int] = {}  # stream id -> first offset on disk
        self._positions: dict[tuple[str, str], tuple[int, float]] = {}
        self._demanded: dict[Topic, bytes] = {}  # lossless topics wanted, as stored
        self._resume: list[Topic] = []
        self._frozen = False  # stopping: demand stays as it was
        self._last_trim = 0.0
        self._last_positions = 0.0
        self._counts: collections.Counter[str] = collections.Counter()
        self.found = "new"  # what the start found: new | restored | unusable | rebooted

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Hold the directory (raises StateDirInUse), open the store and load it."""
        try:
            self._lock.acquire({"listen": self._listen})
        except OSError as exc:
            raise StoreError(f"the state directory {self.directory} cannot be used: {exc}") from exc
        try:
            self._open()
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"the state directory {self.directory} cannot be used: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(self.directory)
        try:
            store.open()
            loaded = store.load()
        except SchemaTooNew:
            store.close()
            raise
        except (sqlite3.DatabaseError, StoreError, msgspec.DecodeError) as exc:
            store.close()
            move_aside(store.path, str(exc))
            store = Store(self.directory)
            store.open()
            loaded = store.load()
            self.found = "unusable"
        self._store = store
        meta = loaded.meta
        now = self._clock()
        boot = boot_id()
        # The last run did not stop cleanly and the machine booted since: a power
        # cut, after which the newest commits may be gone. A replay could then name
        # other content than a client was given: every stream starts a new epoch.
        rebooted = meta.get("running") == "1" and boot is not None and meta.get("boot") != boot
        if rebooted:
            self.found = "rebooted"
        elif (loaded.streams or loaded.demand) and self.found == "new":
            self.found = "restored"
        batch = self._batch
        for stored in loaded.streams:
            try:
                topic = decode_topic(stored.topic)
            except (msgspec.DecodeError, msgspec.ValidationError):
                batch.forget.append(stored.id)
                continue
            self._ids[topic] = stored.id
            self._next_id = max(self._next_id, stored.id + 1)
            if rebooted:
                epoch = secrets.token_hex(6)
                batch.epochs.append((epoch, stored.id))
                stream = StreamHistory(epoch, self.retention, stored.last_published)
            else:
                kept = list(zip(stored.times, stored.payloads, strict=True))
                stream = StreamHistory.restored(
                    stored.epoch, self.retention, stored.head, kept, stored.last_published
                )
                stream.trim(now)
            self._streams[topic] = stream
            self._disk_first[stored.id] = 1
            ledger = _Ledger()
            for seq, item, expires in stored.ledger:
                if expires > now:
                    ledger.items[item] = (seq, expires)
                ledger.seq = max(ledger.seq, seq)
            while len(ledger.items) > LEDGER_CAPACITY:
                ledger.items.popitem(last=False)
            ledger.first = next(iter(ledger.items.values()))[0] if ledger.items else ledger.seq + 1
            self._ledgers[topic] = ledger
            self._ledger_disk_first[stored.id] = 1
        used = set(self._ids.values())
        self._free = [i for i in range(1, self._next_id) if i not in used]
        self._positions = dict(loaded.positions)
        for raw in loaded.demand:
            try:
                topic = decode_topic(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                batch.demand_drop.add(raw)
                continue
            self._demanded[topic] = raw
            self._resume.append(topic)
        batch.meta.update({"running": "1", "boot": boot or ""})
        batch.meta.setdefault("created", meta.get("created") or str(int(now)))
        store.write(batch)
        self._batch = Batch()
        log.info(
            "state: %s (%s): %d streams, %d messages, %d wanted topics, %d positions",
            self.directory,
            self.found,
            len(self._streams),
            sum(len(s) for s in self._streams.values()),
            len(self._resume),
            len(self._positions),
        )

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._frozen = True
        self._commit()  # what is queued goes to disk (and out) first
        store, self._store = self._store, None
        if store is not None:
            if not self._queue:
                try:
                    store.write(Batch(meta={"running": "0"}))
                except sqlite3.Error as exc:
                    log.error("state store: the clean stop could not be noted: %s", exc)
            else:
                log.error("state store: %d publications could not be stored", len(self._queue))
            store.close()
        self._lock.release()

    async def resume(self) -> list[Topic]:
        resume, self._resume = self._resume, []
        return resume

    def _freeze(self) -> None:
        """Feeding stops (shutdown): the topics wanted now are what a restart resumes."""
        self._frozen = True

    # -- streams -------------------------------------------------------------------
    def _stream(self, topic: Topic) -> StreamHistory:
        stream = self._streams.get(topic)
        if stream is None:
            stream = super()._stream(topic)
            sid = self._allocate()
            self._ids[topic] = sid
            self._disk_first[sid] = 1
            self._ledger_disk_first[sid] = 1
            row = (sid, encode_topic(topic), stream.epoch, 0, stream.last_published)
            # Written at once, in a transaction of its own: a subscriber is told this
            # epoch in this very turn, and it must survive a kill right after.
            try:
                if self._store is None:
                    raise StoreError("closed")
                self._store.write(Batch(new_streams=[row]))
            except (sqlite3.Error, StoreError):
                self._batch.new_streams.append(row)
                self._schedule()
        return stream

    def _allocate(self) -> int:
        if self._free:
            return self._free.pop(0)
        sid = self._next_id
        if sid > MAX_STREAM_ID:
            raise StoreError("the state store ran out of stream ids")
        self._next_id += 1
        return sid

    # -- publishing ------------------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes) -> None:
        if topic.lossless:
            self._stream(topic)
            self._enqueue(topic, payload, [])
        else:
            super().publish(topic, payload)

    def publish_items(
        self,
        topic: Topic,
        prefix: bytes,
        items: list[tuple[str, bytes]],
        suffix: bytes,
        keep: float,
    ) -> None:
        if not topic.lossless:
            super().publish_items(topic, prefix, items, suffix, keep)
            return
        self._stream(topic)
        sid = self._ids[topic]
        ledger = self._ledgers.get(topic)
        if ledger is None:
            ledger = self._ledgers[topic] = _Ledger()
        now = self._clock()
        expires = now + keep
        fresh: list[bytes] = []
        ids: list[str] = []
        for item_id, item in items:
            seq = ledger.add(item_id, expires, now)
            if seq is None:
                continue
            fresh.append(item)
            ids.append(item_id)
            self._batch.ledger.append((row_id(sid, seq), item_id, expires))
        if fresh:
            self._enqueue(topic, prefix + b",".join(fresh) + suffix, ids)

    def _enqueue(self, topic: Topic, payload: bytes, ids: list[str]) -> None:
        queue = self._queue
        if len(queue) >= MAX_QUEUED:
            dropped, _, dropped_ids = queue.popleft()
            ledger = self._ledgers.get(dropped)
            for item_id in dropped_ids:
                if ledger is not None:
                    ledger.forget(item_id)
            self._counts["droppedWhileAway"] += 1
        queue.append((topic, payload, ids))
        self._schedule()

    def _schedule(self) -> None:
        # Once per loop turn: everything written in this turn goes in one transaction.
        if not self._commit_due and self._retry is None:
            self._commit_due = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_due = False
        store = self._store
        queue, batch = self._queue, self._batch
        if store is None or not (queue or batch):
            return
        now = self._clock()
        heads: dict[Topic, int] = {}
        out: list[tuple[Topic, StreamHistory, bytes, int]] = []
        messages: list[tuple[int, float, bytes]] = []
        for topic, payload, _ in queue:
            stream = self._streams[topic]
            offset = heads.get(topic, stream.offset) + 1
            heads[topic] = offset
            positioned = with_position(payload, offset, stream.epoch)
            messages.append((row_id(self._ids[topic], offset), now, positioned))
            out.append((topic, stream, positioned, offset))
        batch.messages = messages
        batch.heads = {self._ids[topic]: (offset, now) for topic, offset in heads.items()}
        try:
            store.write(batch)
        except sqlite3.Error as exc:
            batch.messages, batch.heads = [], {}
            self._failed(exc)
            return
        if self._failures:
            log.warning("state store: writing again after %d failed commits", self._failures)
            self._failures = 0
        self._queue = collections.deque()
        self._batch = Batch()
        self._free.extend(self._freed)
        self._free.sort()
        self._freed = []
        self._counts["published"] += len(out)
        sink = self._sink
        for topic, stream, positioned, offset in out:
            stream.append(positioned, now)
            if sink is not None:
                sink(topic, positioned, offset)

    def _failed(self, exc: sqlite3.Error) -> None:
        """A commit failed: nothing of it is given to anyone; try again later."""
        self._failures += 1
        self._counts["commitFailures"] += 1
        if self._failures == 1:
            log.error(
                "state store: a commit failed (%s); lossless publications wait (%d queued)",
                exc,
                len(self._queue),
            )
        if not isinstance(exc, sqlite3.OperationalError) and self._failures >= 3:
            self._replace_store(str(exc))
        delay = self._backoff.delay(self._failures)
        self._retry = asyncio.get_running_loop().call_later(delay, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self._commit()

    def _replace_store(self, why: str) -> None:
        """The database went bad under us: a new one, written from what memory holds
        (epochs and offsets kept, so that clients notice nothing)."""
        old = self._store
        if old is None:
            return
        old.close()
        try:
            move_aside(old.path, why)
            store = Store(self.directory)
            store.open()
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.error("state store: no new store could be made (%s); retrying", exc)
            self._store = old
            old.open()
            return
        created = str(int(self._clock()))
        batch = Batch(meta={"running": "1", "boot": boot_id() or "", "created": created})
        for topic, stream in self._streams.items():
            sid = self._ids[topic]
            batch.new_streams.append(
                (sid, encode_topic(topic), stream.epoch, stream.offset, stream.last_published)
            )
            batch.messages += [
                (row_id(sid, offset), when, payload) for offset, when, payload in stream.entries()
            ]
        for topic, ledger in self._ledgers.items():
            if topic in self._ids:
                lid = self._ids[topic]
                batch.ledger += [
                    (row_id(lid, seq), item, expires)
                    for item, (seq, expires) in ledger.items.items()
                ]
        batch.positions = dict(self._positions)
        batch.demand_add = set(self._demanded.values())
        store.write(batch)
        self._store = store
        self._counts["storesReplaced"] += 1

    # -- demand ---------------------------------------------------------------------
    def demand(self, topic: Topic) -> None:
        super().demand(topic)
        if topic.lossless and topic not in self._demanded:
            raw = self._demanded[topic] = encode_topic(topic)
            self._batch.demand_drop.discard(raw)
            self._batch.demand_add.add(raw)
            self._schedule()

    def drop(self, topic: Topic) -> None:
        super().drop(topic)
        if self._frozen:
            return  # shutting down: what is wanted now is what a restart resumes
        raw = self._demanded.pop(topic, None)
        if raw is not None:
            self._batch.demand_add.discard(raw)
            self._batch.demand_drop.add(raw)
            self._schedule()

    # -- delivery positions -------------------------------------------------------------
    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:
        key = (channel, wallet)
        known = self._positions.get(key)
        if known is not None and known[0] >= time_ms:
            return
        entry = self._positions[key] = (time_ms, self._clock())
        self._batch.positions[key] = entry
        self._batch.forget_positions.discard(key)
        self._schedule()

    def starts(self, topic: Topic) -> Mapping[str, int]:
        if topic.channel not in POSITIONED_CHANNELS:
            return {}
        positions = self._positions
        return {
            wallet: positions[(topic.channel, wallet)][0]
            for wallet in topic.wallets
            if (topic.channel, wallet) in positions
        }

    # -- upkeep -------------------------------------------------------------------------
    def upkeep(self) -> None:
        now = self._clock()
        ttl = self.retention.ttl
        queued = {topic for topic, _, _ in self._queue}
        trim = now - self._last_trim >= TRIM_EVERY
        if trim:
            self._last_trim = now
        batch = self._batch
        for topic, stream in list(self._streams.items()):
            stream.trim(now)
            sid = self._ids[topic]
            quiet = now - stream.last_published > ttl
            if quiet and topic not in self._wanted and topic not in queued:
                self._forget(topic, sid)
                continue
            if trim:
                first = stream.first_offset
                if first > self._disk_first.get(sid, 1):
                    batch.trims[sid] = first
                    self._disk_first[sid] = first
                ledger = self._ledgers.get(topic)
                if ledger is not None and ledger.first > self._ledger_disk_first.get(sid, 1):
                    batch.ledger_trims[sid] = ledger.first
                    self._ledger_disk_first[sid] = ledger.first
        if now - self._last_positions >= POSITIONS_EVERY:
            self._last_positions = now
            self._sweep_positions(now)
        if batch:
            self._schedule()

    def _forget(self, topic: Topic, sid: int) -> None:
        del self._streams[topic]
        del self._ids[topic]
        self._ledgers.pop(topic, None)
        self._disk_first.pop(sid, None)
        self._ledger_disk_first.pop(sid, None)
        batch = self._batch
        batch.forget.append(sid)
        batch.trims.pop(sid, None)
        batch.ledger_trims.pop(sid, None)
        batch.ledger = [row for row in batch.ledger if row[0] >> OFFSET_BITS != sid]
        self._freed.append(sid)

    def _sweep_positions(self, now: float) -> None:
        """Forget the positions of wallet streams nobody wants that went quiet for the
        history window (what they would recover has left the history anyway)."""
        fed = {(t.channel, w) for t in self._wanted for w in t.wallets}
        ttl = self.retention.ttl
        for key, (_, updated) in list(self._positions.items()):
            if key not in fed and now - updated > ttl:
                del self._positions[key]
                self._batch.positions.pop(key, None)
                self._batch.forget_positions.add(key)

    # -- coordination and state ---------------------------------------------------------
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        return LocalCoordinator(feeds, starts=self.starts, on_stop=self._freeze)

    def stats(self) -> BrokerStats:
        retained = sum(len(s) for s in self._streams.values())
        store = self._store
        counts = self._counts
        return BrokerStats(
            "durable",
            degraded=self._failures > 0 or store is None,
            streams=len(self._streams),
            retained=retained,
            queued=len(self._queue),
            published=counts["published"],
            dropped_while_away=counts["droppedWhileAway"],
            details={
                "stateDir": str(self.directory),
                "found": self.found,
                "retainedMessages": retained,
                "stateBytes": store.size() if store is not None else 0,
                "commits": store.commits if store is not None else 0,
                "commitFailures": counts["commitFailures"],
                "positions": len(self._positions),
                "wantedTopics": len(self._demanded),
            },
        )

"""The durable engine: one process, its state on disk (the default).

The memory engine's history, positions and replays, kept in a state directory
(broker/statedir.py) by an SQLite store (broker/store.py), so that a restart,
graceful or `kill -9`, keeps every stream's epoch, offsets and history, the
exactly-once ledger, each wallet's delivery position and what was wanted:

- **Publications wait for their commit.** A lossless publication is queued; once
  per loop turn the queue is positioned (offsets assigned in order), appended
  to the store's log in one transaction with everything else of that turn
  (its ledger item ids ride on its entry; positions, demand), and only then appended
  to the in-memory history and handed to the hub. So no client is ever given
  an offset that the store does not hold: a killed process loses nothing it
  answered. Snapshots and notices are not kept and go out at once, as with the
  memory engine.
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
from collections.abc import Callable
from pathlib import Path

import msgspec

from hlgateway.backoff import Backoff
from hlgateway.broker.base import BrokerStats, Retention, with_position
from hlgateway.broker.coordination import Coordinator, FeedControl, LocalCoordinator
from hlgateway.broker.history import StreamHistory
from hlgateway.broker.ledger import CAPACITY as LEDGER_ROWS
from hlgateway.broker.ledger import ItemLedger
from hlgateway.broker.memory import FORGET_POSITIONS_EVERY, MemoryBroker, own_key
from hlgateway.broker.statedir import DirectoryLock
from hlgateway.broker.store import (
    ITEM_SEPARATOR,
    Batch,
    Entry,
    Store,
    StoreError,
    boot_id,
    encode_frame,
    move_aside,
)
from hlgateway.broker.topics import decode_topic, encode_topic
from hlgateway.migrations import SchemaTooNew
from hlgateway.protocol.channels import Topic
from hlgateway.protocol.positions import Position

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # lossless publications kept while the store cannot be written
POSITIONS_EVERY = 1.0  # seconds between writes of the delivery positions that moved
COMPACT_EVERY = 5.0  # seconds between looks at the log's dead rows
COMPACT_SLACK = 50_000  # dead entries the log may hold beyond as many as it has live ones
MOVE_BUDGET = 2_000  # entries copied into a new frame by one compaction
DELETE_MIN = 256  # dead entries one commit may delete at least (twice what it appends, if more)


class _Stored:
    """A lossless stream as this engine keeps it: its history, id in the store, ledger."""

    __slots__ = ("id", "ledger", "stream", "topic")

    def __init__(self, topic: Topic, stream: StreamHistory, sid: int) -> None:
        self.topic = topic
        self.stream = stream
        self.id = sid
        self.ledger = ItemLedger()


# A queued publication: its stream, payload, ledger item ids and their expiry.
_Queued = tuple[_Stored, bytes, list[str], float | None]


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
        self._stored: dict[Topic, _Stored] = {}  # every lossless stream (as _streams)
        self._next_stream = 1
        self._next_seq = 1  # the log's next frame
        self._disk_low = 1  # no frame below this one is left in the log
        # The frames on disk, oldest first, with how many entries each holds.
        self._frames: collections.deque[tuple[int, int]] = collections.deque()
        self._span = 0  # entries in those frames, live or dead
        self._queue: collections.deque[_Queued] = collections.deque()
        self._batch = Batch()
        self._commit_due = False
        self._compact_due = False
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0  # consecutive failed commits
        self._backoff = Backoff(initial=0.05, decay=2.0, max_delay=2.0)
        self._moved: set[tuple[str, str]] = set()  # positions not yet written
        self._demanded: dict[Topic, bytes] = {}  # lossless topics wanted, as stored
        self._resume: list[Topic] = []
        self._frozen = False  # stopping: demand stays as it was
        now = clock()
        self._last_positions = now
        self._last_compact = now
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
        except (sqlite3.DatabaseError, StoreError) as exc:
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
        self._next_stream = loaded.next_stream
        self._next_seq = loaded.next_seq
        self._disk_low = loaded.first_seq
        batch = self._batch
        batch.clear_log = rebooted
        for stored in loaded.streams:
            try:
                topic = decode_topic(stored.topic)
            except (msgspec.DecodeError, msgspec.ValidationError):
                batch.forget.append(stored.id)
                continue
            kept = [] if rebooted else stored.kept
            if rebooted:
                epoch = secrets.token_hex(6)
                batch.epochs.append((epoch, stored.id))
            else:
                epoch = stored.epoch
            stream = StreamHistory.restored(
                epoch,
                self.retention,
                kept[-1][0] if kept else 0,
                [(when, payload, seq) for _, when, _, _, payload, seq in kept],
                kept[-1][1] if kept else stored.created,
            )
            stream.trim(now)
            self._streams[topic] = stream
            record = self._stored[topic] = _Stored(topic, stream, stored.id)
            items = record.ledger.items
            for _, _, expires, ids, _, _ in kept[-LEDGER_ROWS:]:
                if ids and expires is not None and expires > now:
                    for item in ids.split(ITEM_SEPARATOR):
                        items[hash(item)] = expires
            record.ledger.trim()
        if rebooted:
            self._disk_low = self._next_seq
        else:
            # The frames' sizes are not kept: each counts as one entry until it goes.
            self._frames.extend((seq, 1) for seq in range(self._disk_low, self._next_seq))
            self._span = len(self._frames)
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
            "state: %s (%s): %d streams, %d messages (log: %d entries in %d frames), "
            "%d wanted topics, %d positions",
            self.directory,
            self.found,
            len(self._streams),
            sum(len(s) for s in self._streams.values()),
            loaded.entries,
            loaded.frames,
            len(self._resume),
            len(self._positions),
        )

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._frozen = True
        self._write_positions()
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
        return self._record(topic).stream

    def _record(self, topic: Topic) -> _Stored:
        record = self._stored.get(topic)
        if record is not None:
            return record
        now = self._clock()
        stream = self._streams[topic] = StreamHistory(
            secrets.token_hex(6), self.retention, now, stored=True
        )
        sid = self._next_stream
        self._next_stream += 1
        record = self._stored[topic] = _Stored(topic, stream, sid)
        row = (sid, encode_topic(topic), stream.epoch, now)
        # Written at once, in a transaction of its own: a subscriber may be told this
        # epoch in this very turn, and it must survive a kill right after.
        try:
            if self._store is None:
                raise StoreError("closed")
            self._store.write(Batch(new_streams=[row], meta={"next_stream": str(sid + 1)}))
        except (sqlite3.Error, StoreError):
            self._batch.new_streams.append(row)
            self._batch.meta["next_stream"] = str(sid + 1)
            self._schedule()
        return record

    # -- publishing ------------------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes, retained: bytes | None = None) -> None:
        if topic.lossless:
            self._enqueue((self._record(topic), payload, [], None))
        else:
            # A snapshot stream's update (candles) keeps the whole snapshot beside it.
            super().publish(topic, payload, retained)

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
        record = self._record(topic)
        ledger = record.ledger
        now = self._clock()
        expires = now + keep
        fresh: list[bytes] = []
        ids: list[str] = []
        for item_id, item in items:
            if ledger.add(item_id, expires, now):
                fresh.append(item)
                ids.append(item_id)
        if fresh:
            self._enqueue((record, prefix + b",".join(fresh) + suffix, ids, expires))

    def _enqueue(self, entry: _Queued) -> None:
        queue = self._queue
        if len(queue) >= MAX_QUEUED:
            dropped, _, dropped_ids, _ = queue.popleft()
            for item_id in dropped_ids:
                dropped.ledger.forget(item_id)
            self._counts["droppedWhileAway"] += 1
        queue.append(entry)
        self._schedule()

    def _schedule(self) -> None:
        # Once per loop turn: everything written in this turn goes in one transaction.
        if not self._commit_due and self._retry is None and self._store is not None:
            self._commit_due = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_due = False
        store = self._store
        queue, batch = self._queue, self._batch
        if store is None or not (queue or batch or self._compact_due):
            return
        now = self._clock()
        seq = self._next_seq
        frames: list[tuple[int, float, bytes]] = []
        # Compaction first: the entries it copies into a new frame come before this turn's.
        moved: list[StreamHistory] = []
        moved_to: int | None = None  # the frame the compaction copied entries into
        if self._compact_due:
            copied, moved = self._compaction(store)
            if copied:
                moved_to = seq
                frames.append((seq, now, encode_frame(copied)))
                seq += 1
        # Every frame below the oldest one a stream keeps is dead (this turn's come after).
        low = self._low(moved, seq)
        heads: dict[_Stored, int] = {}
        out: list[tuple[_Stored, bytes, int]] = []
        entries: list[Entry] = []
        for record, payload, ids, expires in queue:
            stream = record.stream
            offset = heads.get(record, stream.offset) + 1
            heads[record] = offset
            positioned = with_position(payload, offset, stream.epoch)
            items = (ids[0] if len(ids) == 1 else ITEM_SEPARATOR.join(ids)) if ids else None
            entries.append((record.id, offset, expires, items, positioned))
            out.append((record, positioned, offset))
        place = seq
        if entries:
            frames.append((seq, now, encode_frame(entries)))
            seq += 1
        # Dead frames go a few at a time: deleting is work too.
        budget = max(DELETE_MIN, 2 * len(entries))
        gone = 0
        delete_below = self._disk_low
        for frame, count in self._frames:
            if frame >= low or gone >= budget:
                break
            gone += count
            delete_below = frame + 1
        batch.frames = frames
        batch.delete_below = delete_below if delete_below > self._disk_low else 0
        try:
            store.write(batch)
        except sqlite3.Error as exc:
            batch.frames, batch.delete_below = [], 0
            self._failed(exc)
            return
        if self._failures:
            log.warning("state store: writing again after %d failed commits", self._failures)
            self._failures = 0
        self._compact_due = False
        self._queue = collections.deque()
        self._batch = Batch()
        self._next_seq = seq
        while self._frames and self._frames[0][0] < delete_below:
            self._span -= self._frames.popleft()[1]
        self._disk_low = max(self._disk_low, delete_below)
        if moved_to is not None:
            self._frames.append((moved_to, sum(len(s) for s in moved)))
            self._span += self._frames[-1][1]
            for stream in moved:
                assert stream.stored_at is not None
                count = len(stream.stored_at)
                stream.stored_at.clear()
                stream.stored_at.extend([moved_to] * count)
                self._counts["compactedRows"] += count
        if entries:
            self._frames.append((place, len(entries)))
            self._span += len(entries)
        self._counts["published"] += len(out)
        sink = self._sink
        for record, positioned, offset in out:
            record.stream.append(positioned, now, place)
            if sink is not None:
                sink(record.topic, positioned, offset)
        if out and self._write_out is not None:
            self._write_out()  # held back a turn already: out now, not at the end of this one

    def _low(self, moved: list[StreamHistory], after: int) -> int:
        """The oldest frame still needed once the `moved` streams left theirs."""
        low = after
        skip = {id(stream) for stream in moved}
        for stream in self._streams.values():
            places = stream.stored_at
            if places and id(stream) not in skip and places[0] < low:
                low = places[0]
        return low

    def _compaction(self, store: Store) -> tuple[list[Entry], list[StreamHistory]]:
        """If dead entries are many, the entries of the streams holding the oldest frames
        back (quiet streams keep old messages), up to MOVE_BUDGET, for a new frame."""
        live = 0
        holding: list[tuple[int, _Stored]] = []
        for record in self._stored.values():
            places = record.stream.stored_at
            if places:
                live += len(places)
                holding.append((places[0], record))
        if self._span <= 2 * live + COMPACT_SLACK:
            return [], []
        holding.sort(key=lambda h: h[0])
        recent = self._next_seq - len(self._frames) // 2  # the newer half of the log stays
        chosen: list[_Stored] = []
        count = 0
        for first, record in holding:
            size = len(record.stream)
            if first >= recent or (chosen and count + size > MOVE_BUDGET):
                break
            chosen.append(record)
            count += size
        if not chosen:
            return [], []
        wanted = {record.id: record.stream.first_offset for record in chosen}
        seqs = sorted({place for r in chosen for place in r.stream.stored_at or ()})
        copied: dict[tuple[int, int], Entry] = {}
        for entries in store.frames(seqs).values():
            for entry in entries:
                kept_from = wanted.get(entry[0])
                if kept_from is not None and entry[1] >= kept_from:
                    copied[(entry[0], entry[1])] = entry
        if len(copied) != count:
            log.warning("state store: compaction found %d of %d entries", len(copied), count)
            return [], []
        return [copied[key] for key in sorted(copied)], [r.stream for r in chosen]

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
            old.open()
            return
        now = self._clock()
        batch = Batch(
            meta={
                "running": "1",
                "boot": boot_id() or "",
                "created": str(int(now)),
                "next_stream": str(self._next_stream),
            }
        )
        entries: list[Entry] = []
        for topic, record in self._stored.items():
            stream, sid = record.stream, record.id
            batch.new_streams.append((sid, encode_topic(topic), stream.epoch, now))
            kept = stream.since(Position(stream.first_offset - 1, stream.epoch)) or []
            # The ledger's ids are not written again (memory keeps their hashes only): a
            # restart soon after may give again what was published just before its
            # streams' positions, as a restart without a store would.
            entries += [(sid, p.offset, None, None, p.payload) for p in kept]
            assert stream.stored_at is not None
            stream.stored_at.clear()
            stream.stored_at.extend([1] * len(kept))
        batch.frames = [(1, now, encode_frame(entries))] if entries else []
        batch.positions = dict(self._positions)
        batch.demand_add = set(self._demanded.values())
        store.write(batch)
        self._store = store
        self._next_seq = 2
        self._disk_low = 1
        self._frames = collections.deque([(1, len(entries))] if entries else [])
        self._span = len(entries)
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
    def _note_behind(self, topic: Topic) -> list[tuple[str, str]]:
        noted = super()._note_behind(topic)
        if noted and not self._frozen:  # a restart still knows where the topic stopped
            for key in noted:
                self._batch.positions[key] = self._positions[key]
                self._batch.forget_positions.discard(key)
            self._schedule()
        return noted

    def caught_up(self, topic: Topic, wallet: str) -> None:
        key = own_key(topic, wallet)
        if key not in self._positions:
            return
        super().caught_up(topic, wallet)
        self._moved.discard(key)
        self._batch.positions.pop(key, None)
        self._batch.forget_positions.add(key)
        self._schedule()

    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:
        key = (channel, wallet)
        known = self._positions.get(key)
        super().delivered(channel, wallet, time_ms)
        if known is None:
            # A stream's first position (where its feed started) goes with this turn's
            # commit: without it a restart would start the stream from its own start.
            self._batch.positions[key] = self._positions[key]
            self._batch.forget_positions.discard(key)
            self._schedule()
        elif known[0] < time_ms:
            # A move goes with the next second's commit: a position that lags the
            # publications only makes a restart read a little more again (the ledger
            # drops it); one that went ahead of them would lose events, and cannot
            # (same or later transaction).
            self._moved.add(key)

    def restarted(self, channel: str, wallet: str, time_ms: int) -> None:
        # With this turn's commit, as the topic's own position that it replaces
        # (caught_up): a restart after it starts the wallet's feed where this one
        # does, not where it had been delivered to before (it may be further on).
        key = (channel, wallet)
        super().restarted(channel, wallet, time_ms)
        self._moved.discard(key)
        self._batch.positions[key] = self._positions[key]
        self._batch.forget_positions.discard(key)
        self._schedule()

    def _write_positions(self) -> None:
        if not self._moved:
            return
        batch = self._batch
        for key in self._moved:
            entry = self._positions.get(key)
            if entry is not None:
                batch.positions[key] = entry
                batch.forget_positions.discard(key)
        self._moved.clear()
        self._schedule()

    # -- upkeep -------------------------------------------------------------------------
    def upkeep(self) -> None:
        now = self._clock()
        ttl = self.retention.ttl
        queued = {entry[0].topic for entry in self._queue}
        for topic, stream in list(self._streams.items()):
            stream.trim(now)
            quiet = now - stream.last_published > ttl
            if quiet and topic not in self._wanted and topic not in queued:
                self._forget(topic)
        if now - self._last_positions >= POSITIONS_EVERY:
            self._last_positions = now
            self._write_positions()
        if now - self._last_forget_positions >= FORGET_POSITIONS_EVERY:
            self._last_forget_positions = now
            for key in self._sweep_positions(now):
                self._moved.discard(key)
                self._batch.positions.pop(key, None)
                self._batch.forget_positions.add(key)
        if now - self._last_compact >= COMPACT_EVERY:
            self._last_compact = now
            self._compact_due = True
            self._schedule()
        if self._batch:
            self._schedule()

    def _forget(self, topic: Topic) -> None:
        """Nobody wants the stream and it went quiet for the ttl: its epoch goes (its
        rows in the log are dead: compaction takes them)."""
        del self._streams[topic]
        self._batch.forget.append(self._stored.pop(topic).id)

    # -- coordination and state ---------------------------------------------------------
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        return LocalCoordinator(feeds, starts=self.starts, on_stop=self._freeze, behind=self.behind)

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
            write_failures=counts["commitFailures"],
            details={
                "stateDir": str(self.directory),
                "found": self.found,
                "retainedMessages": retained,
                "stateBytes": store.size() if store is not None else 0,
                "commits": store.commits if store is not None else 0,
                "logFrames": len(self._frames),
                "logEntries": self._span,
                "compactedRows": counts["compactedRows"],
                "positions": len(self._positions),
                "wantedTopics": len(self._demanded),
            },
        )

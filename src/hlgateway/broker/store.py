"""The durable engine's state store: one SQLite database in WAL mode.

What the durable engine (broker/durable.py) keeps across a restart, in
`state.db` of the state directory:

- `meta`: `created`, `boot` (the machine's boot id at the last start), `running`;
- `streams`: each lossless stream's id, topic (its spec, broker/topics.py), epoch;
- `log`: one row per commit, appended under a sequence number: its wall time
  and a frame (MessagePack) of that commit's publications, each with its
  stream, offset, the ids of its items (the exactly-once ledger) and its
  positioned payload. Append-only and one row a commit, so that a commit of
  many streams writes a few pages at the end of one b-tree (not a page per
  stream, nor a row per publication), and a start decodes a few large frames;
  the frames nobody needs any more (trimmed, forgotten) go by compaction (a
  range delete below the oldest frame a stream keeps, and the entries of a
  quiet stream that holds that range back copied into a new frame first). A
  stream's head is its newest entry: nothing else is updated per publication;
- `positions`: how far each wallet's user stream was delivered (exchange ms);
- `demand`: the lossless topics wanted (subscribed or lingering), resumed at start.

Every write of one loop turn is one transaction (`write`), committed before
any publication in it reaches a client. `synchronous=NORMAL`: a commit is in
the operating system's hands when it returns (a killed process loses nothing
committed); it reaches the disk at the next checkpoint, which a thread of
this module runs every second off the event loop (`Checkpointer`), so that the
loop never waits on an fsync. A power cut can lose the commits since the last
checkpoint: the engine notices (the boot id changed while `running` was set)
and starts every stream in a new epoch (docs/operations.md).

The schema is versioned (`PRAGMA user_version`) and upgraded in place by
numbered, forward-only migrations (`MIGRATIONS`, run by hlgateway/migrations.py
as the notifier's are); a database of a newer schema than this build knows
refuses to open (`SchemaTooNew`), and nothing is ever dropped silently.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from hlgateway.broker.base import EngineStartError
from hlgateway.migrations import Migration, latest, pending

log = logging.getLogger(__name__)

DB_FILE = "state.db"
CHECKPOINT_EVERY = 1.0  # seconds between the checkpointer's passes
ITEM_SEPARATOR = "\x1f"  # between the item ids of one publication (ids hold no control byte)


class StoreError(EngineStartError):
    """The store cannot be used as it is (the message says why)."""


# A migration's step: a function of the connection, run inside its transaction.
Step = Callable[[sqlite3.Connection], None]


def _v1(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE streams (
            id INTEGER PRIMARY KEY,
            topic BLOB NOT NULL UNIQUE,
            epoch TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE TABLE log (seq INTEGER PRIMARY KEY, time REAL NOT NULL, frame BLOB NOT NULL);
        CREATE TABLE positions (
            channel TEXT NOT NULL,
            wallet TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (channel, wallet)
        ) WITHOUT ROWID;
        CREATE TABLE demand (topic BLOB PRIMARY KEY) WITHOUT ROWID;
        """
    )


MIGRATIONS: tuple[Migration[Step], ...] = (
    Migration(1, "streams, the log of publications (a frame a commit), positions, demand", _v1),
)


def schema_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    db: sqlite3.Connection, migrations: Sequence[Migration[Step]] = MIGRATIONS, *, where: str = ""
) -> tuple[int, int]:
    """Bring the schema to the newest version (hlgateway/migrations.py decides which
    steps), one migration per transaction with its version; returns (version found,
    version now). Raises SchemaTooNew, before changing anything."""
    found = schema_version(db)
    for migration in pending(found, migrations, f"the state store {where or 'database'}"):
        with db:  # one transaction: the schema and its version change together
            db.execute("BEGIN IMMEDIATE")
            migration.step(db)
            db.execute(f"PRAGMA user_version = {migration.version:d}")
        log.info("state store: schema %d (%s)", migration.version, migration.summary)
    return found, max(found, latest(migrations))


# -- frames ------------------------------------------------------------------------

# One publication in a frame: stream, offset, ledger expiry, ledger item ids
# (ITEM_SEPARATOR between them), positioned payload.
Entry = tuple[int, int, float | None, str | None, bytes]
encode_frame = msgspec.msgpack.Encoder().encode
_decode_frame = msgspec.msgpack.Decoder(list[Entry]).decode


def decode_frame(frame: bytes) -> list[Entry]:
    return _decode_frame(frame)


# -- what a start finds ---------------------------------------------------------------

# A kept publication: offset, wall time, ledger expiry, item ids, payload, frame seq.
Kept = tuple[int, float, float | None, str | None, bytes, int]


@dataclass(slots=True)
class StoredStream:
    id: int
    topic: bytes  # its spec (broker/topics.py)
    epoch: str
    created: float
    kept: list[Kept] = field(default_factory=list)  # contiguous offsets, ending at the head


@dataclass(slots=True)
class Loaded:
    streams: list[StoredStream]
    positions: dict[tuple[str, str], tuple[int, float]]  # (channel, wallet) -> (ms, updated)
    demand: list[bytes]
    meta: dict[str, str]
    first_seq: int  # the log's oldest frame (next_seq if empty)
    next_seq: int  # the log's next sequence number
    next_stream: int  # the next stream id (never one a forgotten stream had)
    frames: int  # frames in the log, live or not
    entries: int  # publications in them


# -- one transaction's writes ----------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """What one commit writes. The engine fills it during a loop turn."""

    new_streams: list[tuple[int, bytes, str, float]] = field(default_factory=list)
    forget: list[int] = field(default_factory=list)
    epochs: list[tuple[str, int]] = field(default_factory=list)  # (epoch, stream): history lost
    clear_log: bool = False  # every stream's history is lost (new epochs for all)
    frames: list[tuple[int, float, bytes]] = field(default_factory=list)  # (seq, time, frame)
    delete_below: int = 0  # log frames below this sequence number are no longer needed
    positions: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    forget_positions: set[tuple[str, str]] = field(default_factory=set)
    demand_add: set[bytes] = field(default_factory=set)
    demand_drop: set[bytes] = field(default_factory=set)
    meta: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.new_streams
            or self.forget
            or self.epochs
            or self.clear_log
            or self.frames
            or self.delete_below
            or self.positions
            or self.forget_positions
            or self.demand_add
            or self.demand_drop
            or self.meta
        )


class Store:
    """The open database. Every method runs on the caller's thread (the event loop):
    a commit of one turn's writes takes tens of microseconds (docs/benchmarks.md)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DB_FILE
        self._db: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self.commits = 0

    def open(self, migrations: Sequence[Migration[Step]] = MIGRATIONS) -> None:
        """Open (creating it if absent) and migrate. Raises sqlite3.DatabaseError
        for a file that is not a usable database, SchemaTooNew for a newer one."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use write-ahead logging ({mode})")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job, off the loop
            migrate(db, migrations, where=str(self.path))
        except BaseException:
            db.close()
            raise
        self._db = db
        self._checkpointer = Checkpointer(self.path)
        self._checkpointer.start()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the state store is closed")
        return self._db

    def load(self) -> Loaded:
        db = self.db
        meta = dict(db.execute("SELECT key, value FROM meta"))
        streams: dict[int, StoredStream] = {}
        for sid, topic, epoch, created in db.execute(
            "SELECT id, topic, epoch, created FROM streams ORDER BY id"
        ):
            streams[sid] = StoredStream(sid, topic, epoch, created)
        by_stream: dict[int, list[Kept]] = {sid: [] for sid in streams}
        first_seq = last_seq = frames = entries = 0
        top_stream = max(streams, default=0)
        # Millions of small objects: the collector would walk them again and again.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for seq, when, frame in db.execute("SELECT seq, time, frame FROM log ORDER BY seq"):
                frames += 1
                first_seq = first_seq or seq
                last_seq = seq
                for sid, offset, expires, items, payload in decode_frame(frame):
                    entries += 1
                    kept = by_stream.get(sid)
                    if kept is not None:
                        kept.append((offset, when, expires, items, payload, seq))
                    elif sid > top_stream:
                        top_stream = sid
            for stored in streams.values():
                stored.kept = _contiguous(by_stream[stored.id])
        finally:
            if collecting:
                gc.enable()
        positions = {
            (channel, wallet): (time_ms, updated)
            for channel, wallet, time_ms, updated in db.execute(
                "SELECT channel, wallet, time_ms, updated FROM positions"
            )
        }
        demand = [topic for (topic,) in db.execute("SELECT topic FROM demand")]
        next_stream = max(top_stream + 1, int(meta.get("next_stream", "1")))
        return Loaded(
            list(streams.values()),
            positions,
            demand,
            meta,
            first_seq or last_seq + 1,
            last_seq + 1,
            next_stream,
            frames,
            entries,
        )

    def frames(self, seqs: list[int]) -> dict[int, list[Entry]]:
        """Some frames of the log, decoded (compaction copies entries out of them)."""
        out: dict[int, list[Entry]] = {}
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT seq, frame FROM log WHERE seq IN ({marks})"
            for seq, frame in self.db.execute(query, chunk):
                out[seq] = decode_frame(frame)
        return out

    def write(self, batch: Batch) -> None:
        """Everything in `batch`, in one transaction (all of it or none of it)."""
        db = self.db
        db.execute("BEGIN")
        try:
            self._apply(db, batch)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.commits += 1

    @staticmethod
    def _apply(db: sqlite3.Connection, batch: Batch) -> None:
        if batch.forget:
            db.executemany("DELETE FROM streams WHERE id = ?", [(sid,) for sid in batch.forget])
        if batch.clear_log:
            db.execute("DELETE FROM log")
        if batch.epochs:
            db.executemany("UPDATE streams SET epoch = ? WHERE id = ?", batch.epochs)
        if batch.new_streams:
            db.executemany(
                "INSERT INTO streams (id, topic, epoch, created) VALUES (?, ?, ?, ?)",
                batch.new_streams,
            )
        if batch.frames:
            db.executemany("INSERT INTO log (seq, time, frame) VALUES (?, ?, ?)", batch.frames)
        if batch.delete_below:
            db.execute("DELETE FROM log WHERE seq < ?", (batch.delete_below,))
        if batch.positions:
            db.executemany(
                "INSERT OR REPLACE INTO positions (channel, wallet, time_ms, updated) "
                "VALUES (?, ?, ?, ?)",
                [(c, w, ms, updated) for (c, w), (ms, updated) in batch.positions.items()],
            )
        if batch.forget_positions:
            db.executemany(
                "DELETE FROM positions WHERE channel = ? AND wallet = ?", batch.forget_positions
            )
        if batch.demand_drop:
            db.executemany("DELETE FROM demand WHERE topic = ?", [(t,) for t in batch.demand_drop])
        if batch.demand_add:
            db.executemany(
                "INSERT OR IGNORE INTO demand (topic) VALUES (?)", [(t,) for t in batch.demand_add]
            )
        if batch.meta:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", batch.meta.items()
            )

    def size(self) -> int:
        """Bytes on disk: the database and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()


class Checkpointer:
    """Copies the write-ahead log into the database, and syncs both, every second,
    on a thread of its own with a connection of its own (SQLite releases the GIL
    while it works): commits on the event loop never wait for an fsync."""

    def __init__(self, path: Path, every: float = CHECKPOINT_EVERY) -> None:
        self._path = path
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hlgw-checkpoint", daemon=True)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(self._every):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self.passes += 1
                except sqlite3.Error as exc:
                    log.warning("state store: checkpoint failed: %s", exc)
        finally:
            db.close()


def move_aside(path: Path, why: str) -> Path:
    """Rename a database that cannot be used (and its -wal/-shm), for a person to look at."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    log.error("state store %s is unusable (%s): moved aside to %s", path, why, target)
    return target


def boot_id() -> str | None:
    """This boot of the machine (Linux), to tell a killed process from a power cut."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _contiguous(kept: list[Kept]) -> list[Kept]:
    """A stream's entries as a start keeps them: one per offset (an entry copied by
    compaction comes again under a newer frame: the same content), and only the
    run without a hole up to the head (a hole, a write that never made it, cuts off
    what is before it)."""
    if not kept:
        return kept
    if any(a[0] >= b[0] for a, b in itertools.pairwise(kept)):
        by_offset = {entry[0]: entry for entry in kept}  # the newest copy wins
        kept = [by_offset[offset] for offset in sorted(by_offset)]
    end = len(kept)
    start = end - 1
    while start > 0 and kept[start - 1][0] == kept[start][0] - 1:
        start -= 1
    return kept[start:end]

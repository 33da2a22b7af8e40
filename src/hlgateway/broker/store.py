"""The durable engine's state store: one SQLite database in WAL mode.

What the durable engine (broker/durable.py) keeps across a restart, in
`state.db` of the state directory:

- `meta`: `created`, `boot` (the machine's boot id at the last start), `running`;
- `streams`: each lossless stream's topic (its spec, broker/topics.py), epoch,
  head offset and last publication (wall time);
- `messages`: the history, keyed stream << 36 | offset (one b-tree, ranges
  deleted in one statement): wall time, positioned payload;
- `ledger`: the exactly-once ledger, keyed stream << 36 | sequence: item id, expiry;
- `positions`: each wallet's user stream, delivered up to (exchange time, ms);
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
numbered, forward-only migrations (`MIGRATIONS`); a database of a newer schema
than this build knows refuses to open (`SchemaTooNew`), and nothing is ever
dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hlgateway.broker.base import EngineStartError

log = logging.getLogger(__name__)

DB_FILE = "state.db"
# A message's id: stream << 36 | offset. Offsets stay below 2**36 (68 billion per
# epoch), stream ids below 2**27 (ids of forgotten streams are used again).
OFFSET_BITS = 36
MAX_STREAM_ID = (1 << (63 - OFFSET_BITS)) - 1
CHECKPOINT_EVERY = 1.0  # seconds between the checkpointer's passes


def row_id(stream: int, offset: int) -> int:
    return (stream << OFFSET_BITS) | offset


class StoreError(EngineStartError):
    """The store cannot be used as it is (the message says why)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer build: refuse, never guess."""


# -- schema -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    what: str
    apply: Callable[[sqlite3.Connection], None]


def _v1(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE streams (
            id INTEGER PRIMARY KEY,
            topic BLOB NOT NULL UNIQUE,
            epoch TEXT NOT NULL,
            head INTEGER NOT NULL,
            last_published REAL NOT NULL
        );
        CREATE TABLE messages (id INTEGER PRIMARY KEY, time REAL NOT NULL, payload BLOB NOT NULL);
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, item TEXT NOT NULL, expires REAL NOT NULL);
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


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "streams, history, ledger, delivery positions, demand", _v1),
)


def schema_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, where: str = ""
) -> tuple[int, int]:
    """Bring the schema to the newest version, one migration per transaction;
    returns (version found, version now). Raises SchemaTooNew."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError("migrations are numbered 1, 2, ... without a gap")
    found = schema_version(db)
    latest = len(migrations)
    if found > latest:
        raise SchemaTooNew(
            f"the state store {where or 'database'} has schema version {found}, and this "
            f"hlgateway knows versions up to {latest}: run a newer hlgateway, or point "
            "--state-dir elsewhere (the directory is left as it is)"
        )
    for migration in migrations[found:]:
        with db:  # one transaction: the schema and its version change together
            db.execute("BEGIN IMMEDIATE")
            migration.apply(db)
            db.execute(f"PRAGMA user_version = {migration.version:d}")
        log.info("state store: schema %d (%s)", migration.version, migration.what)
    return found, latest


# -- what a start finds ---------------------------------------------------------------


@dataclass(slots=True)
class StoredStream:
    id: int
    topic: bytes  # its spec (broker/topics.py)
    epoch: str
    head: int
    last_published: float
    times: list[float] = field(default_factory=list)  # the kept messages, ending at head
    payloads: list[bytes] = field(default_factory=list)
    ledger: list[tuple[int, str, float]] = field(default_factory=list)  # (seq, item, expires)


@dataclass(slots=True)
class Loaded:
    streams: list[StoredStream]
    positions: dict[tuple[str, str], tuple[int, float]]  # (channel, wallet) -> (ms, updated)
    demand: list[bytes]
    meta: dict[str, str]


# -- one transaction's writes ----------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """What one commit writes. The engine fills it during a loop turn."""

    new_streams: list[tuple[int, bytes, str, int, float]] = field(default_factory=list)
    forget: list[int] = field(default_factory=list)
    epochs: list[tuple[str, int]] = field(default_factory=list)  # (epoch, stream): history lost
    messages: list[tuple[int, float, bytes]] = field(default_factory=list)
    heads: dict[int, tuple[int, float]] = field(default_factory=dict)  # stream -> (head, time)
    ledger: list[tuple[int, str, float]] = field(default_factory=list)
    trims: dict[int, int] = field(default_factory=dict)  # stream -> first offset kept
    ledger_trims: dict[int, int] = field(default_factory=dict)  # stream -> first seq kept
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
            or self.messages
            or self.heads
            or self.ledger
            or self.trims
            or self.ledger_trims
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

    def open(self, migrations: Sequence[Migration] = MIGRATIONS) -> None:
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
        for sid, topic, epoch, head, last in db.execute(
            "SELECT id, topic, epoch, head, last_published FROM streams ORDER BY id"
        ):
            streams[sid] = StoredStream(sid, topic, epoch, head, last)
        for stored in streams.values():
            # The kept messages are contiguous up to the head: a hole (a write that
            # never made it) cuts what is before it off.
            low, high = row_id(stored.id, 0), row_id(stored.id, stored.head)
            expected = stored.head
            rows = db.execute(
                "SELECT id, time, payload FROM messages WHERE id > ? AND id <= ? ORDER BY id DESC",
                (low, high),
            )
            for rid, when, payload in rows:
                if rid & ((1 << OFFSET_BITS) - 1) != expected:
                    break
                stored.times.append(when)
                stored.payloads.append(payload)
                expected -= 1
            stored.times.reverse()
            stored.payloads.reverse()
            top = row_id(stored.id + 1, 0)
            stored.ledger = [
                (rid & ((1 << OFFSET_BITS) - 1), item, expires)
                for rid, item, expires in db.execute(
                    "SELECT id, item, expires FROM ledger WHERE id >= ? AND id < ? ORDER BY id",
                    (low, top),
                )
            ]
        positions = {
            (channel, wallet): (time_ms, updated)
            for channel, wallet, time_ms, updated in db.execute(
                "SELECT channel, wallet, time_ms, updated FROM positions"
            )
        }
        demand = [topic for (topic,) in db.execute("SELECT topic FROM demand")]
        return Loaded(list(streams.values()), positions, demand, meta)

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
        for sid in batch.forget:
            low, top = row_id(sid, 0), row_id(sid + 1, 0)
            db.execute("DELETE FROM streams WHERE id = ?", (sid,))
            db.execute("DELETE FROM messages WHERE id >= ? AND id < ?", (low, top))
            db.execute("DELETE FROM ledger WHERE id >= ? AND id < ?", (low, top))
        if batch.new_streams:
            db.executemany(
                "INSERT INTO streams (id, topic, epoch, head, last_published) "
                "VALUES (?, ?, ?, ?, ?)",
                batch.new_streams,
            )
        for epoch, sid in batch.epochs:
            db.execute("UPDATE streams SET epoch = ?, head = 0 WHERE id = ?", (epoch, sid))
            low, top = row_id(sid, 0), row_id(sid + 1, 0)
            db.execute("DELETE FROM messages WHERE id >= ? AND id < ?", (low, top))
        if batch.messages:
            db.executemany(
                "INSERT OR REPLACE INTO messages (id, time, payload) VALUES (?, ?, ?)",
                batch.messages,
            )
        if batch.heads:
            db.executemany(
                "UPDATE streams SET head = ?, last_published = ? WHERE id = ?",
                [(head, when, sid) for sid, (head, when) in batch.heads.items()],
            )
        if batch.ledger:
            db.executemany(
                "INSERT OR REPLACE INTO ledger (id, item, expires) VALUES (?, ?, ?)", batch.ledger
            )
        for sid, first in batch.trims.items():
            db.execute(
                "DELETE FROM messages WHERE id > ? AND id < ?", (row_id(sid, 0), row_id(sid, first))
            )
        for sid, first in batch.ledger_trims.items():
            db.execute(
                "DELETE FROM ledger WHERE id >= ? AND id < ?", (row_id(sid, 0), row_id(sid, first))
            )
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

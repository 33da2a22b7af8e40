"""SQLite transactions stay usable after a cancel or a failed COMMIT.

The connection is one, shared by every transaction: one left open (a BEGIN that
ran after its caller was cancelled, a COMMIT that failed) turned every later
BEGIN into "cannot start a transaction within a transaction", and each message
recorded after it was lost.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hlgateway.notifier.database import SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "tx.db"))
    await database.open()
    conn = database.conn
    await database.run(lambda: conn.execute("CREATE TABLE t (v INTEGER)"))
    yield database
    await database.close()


async def _count(db: SqliteDatabase) -> int:
    async with db.transaction() as tx:
        rows = await tx.fetchall("SELECT count(*) FROM t")
    return int(rows[0][0])


async def test_a_begin_cancelled_while_it_runs_is_undone(db: SqliteDatabase) -> None:
    # Another connection holds the write lock: the BEGIN IMMEDIATE waits for it in the
    # executor's thread (busy_timeout), where a cancel cannot stop it.
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")

    try:
        writer = asyncio.create_task(write())
        queue = db._executor._work_queue
        for _ in range(100):  # queued, then taken by the thread: the BEGIN is running
            await asyncio.sleep(0)
            if writer.done() or (queue.qsize() == 0 and db._executor._threads):
                break
        assert not writer.done()
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
    finally:
        other.execute("ROLLBACK")  # the BEGIN now goes through, for nobody
        other.close()
    # The next transaction works all the same, and the cancelled one wrote nothing.
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (2)")
    assert await _count(db) == 1
    assert not db.conn.in_transaction


async def test_a_failed_commit_is_rolled_back(db: SqliteDatabase) -> None:
    conn = db.conn

    def schema() -> None:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await db.run(schema)
    # A deferred foreign key is checked at COMMIT: the COMMIT fails, the transaction
    # stays open in SQLite unless it is rolled back.
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")
            await tx.execute("INSERT INTO child VALUES (42)")
    assert not conn.in_transaction
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (2)")
    assert await _count(db) == 1  # the failed transaction's row is not there

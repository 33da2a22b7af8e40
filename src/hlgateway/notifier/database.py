"""The database edge: SQLite (default) or PostgreSQL, one transaction at a time.

Both are driven through the same small interface (`Database.transaction()` ->
`Tx`), with SQL written once using `?` placeholders. SQLite runs on a thread of
its own (the event loop never waits on the disk); PostgreSQL through psycopg 3's
async connection. The notifier does little database work per second, so one
connection and one transaction at a time keep it simple and serial.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
Row = tuple[Any, ...]
# What a database that is away (or locked, or restarting) raises: worth trying again.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, OSError)


class Tx(ABC):
    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


class Database(ABC):
    dialect: str  # sqlite | postgres

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...


def open_database(url: str) -> Database:
    """`sqlite:///path/to.db`, a plain file path, or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite://"):
        url = url[len("sqlite://") :]
        url = url[1:] if url.startswith("//") else url  # sqlite:////abs -> /abs
    return SqliteDatabase(url)


# -- SQLite --------------------------------------------------------------------


class _SqliteTx(Tx):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        conn = self._db.conn
        return await self._db.run(lambda: conn.execute(sql, tuple(params)).rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        conn = self._db.conn
        return await self._db.run(lambda: conn.execute(sql, tuple(params)).fetchall())


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="notifier-sqlite")
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "open() first"
        return self._conn

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # WAL + NORMAL survives a killed process (not a power cut without FULL).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        self._conn = await self.run(connect)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.run(conn.close)
        self._executor.shutdown(wait=True)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            conn = self.conn

            def begin() -> None:
                # A BEGIN whose caller was cancelled still ran in the executor, and a
                # failed COMMIT leaves its transaction open: neither may turn every later
                # BEGIN into "cannot start a transaction within a transaction". Nothing
                # of such a transaction was committed; it is rolled back here.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")

            def rollback() -> None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

            await self.run(begin)
            try:
                yield _SqliteTx(self)
            except BaseException:
                await asyncio.shield(self.run(rollback))
                raise
            try:
                await asyncio.shield(self.run(lambda: conn.execute("COMMIT")))
            except BaseException:
                # The executor has one thread: this runs after the COMMIT, and finds
                # nothing open if it went through (a cancel while it ran).
                await asyncio.shield(self.run(rollback))
                raise


# -- PostgreSQL ------------------------------------------------------------------


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PostgresTx(Tx):
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(_pg(sql), tuple(params))
        return cur.rowcount

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(_pg(sql), tuple(params))
        return list(await cur.fetchall())


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            await self.open()  # the server restarted, or the link broke
        assert self._conn is not None
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction():
                yield _PostgresTx(conn)

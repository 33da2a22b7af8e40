"""Keeps the user directory's configured sources loaded: a file, a PostgreSQL table.

The file (JSON or TOML) is read at start - a bad one stops the start with its
reason - and again whenever it changes. The table (`user_id`, `wallet` columns)
is read at start and every `refresh` seconds; while the database is away the
last good copy keeps serving and /health says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from hlgateway.config import SettingsError
from hlgateway.directory import DirectoryError, UserDirectory, parse_file

log = logging.getLogger(__name__)

FILE = "file"
DATABASE = "database"


class DirectorySync:
    def __init__(
        self,
        directory: UserDirectory,
        *,
        file: str | None = None,
        dsn: str | None = None,
        table: str = "hlgateway_user_wallets",
        refresh: float = 30.0,
    ) -> None:
        self._directory = directory
        self._file = Path(file) if file else None
        self._dsn = dsn
        self._table = table
        self._refresh = refresh
        self._file_mtime: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._errors: dict[str, str] = {}
        self.loads = 0

    async def start(self) -> None:
        if self._file is not None:
            try:
                self._load_file(self._file)
            except (OSError, DirectoryError) as exc:
                raise SettingsError(f"HLGATEWAY_DIRECTORY_FILE: {exc}") from None
        if self._dsn is not None:
            await self.load_database()  # a database that is down at start is retried
        if self._file is not None or self._dsn is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            if self._file is not None:
                self.reload_file(self._file)
            if self._dsn is not None:
                await self.load_database()

    def _load_file(self, path: Path) -> None:
        mtime = path.stat().st_mtime
        self._directory.load(FILE, parse_file(path))
        self._file_mtime = mtime
        self._errors.pop(FILE, None)
        self.loads += 1

    def reload_file(self, path: Path) -> None:
        try:
            if path.stat().st_mtime != self._file_mtime:
                self._load_file(path)
                log.info("user directory: reloaded %s", path)
        except (OSError, DirectoryError) as exc:
            # Keep serving the last good copy.
            self._errors[FILE] = str(exc)
            log.warning("user directory: %s; keeping the last good copy", exc)

    async def load_database(self) -> bool:
        assert self._dsn is not None
        query = sql.SQL("SELECT user_id, wallet FROM {}").format(
            sql.Identifier(*self._table.split("."))
        )
        try:
            async with await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=5) as conn:
                cursor = await conn.execute(query)
                rows = await cursor.fetchall()
            users: dict[str, list[str]] = {}
            for user_id, wallet in rows:
                users.setdefault(str(user_id), []).append(str(wallet))
            self._directory.load(DATABASE, users)
        except (psycopg.Error, OSError, DirectoryError) as exc:
            self._errors[DATABASE] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("user directory: database not read: %s", self._errors[DATABASE])
            return False
        self._errors.pop(DATABASE, None)
        self.loads += 1
        return True

    def health(self) -> dict[str, Any]:
        sources = [name for name, on in ((FILE, self._file), (DATABASE, self._dsn)) if on]
        return {
            "sources": sources,
            "errors": dict(self._errors),
            **self._directory.stats(),
        }

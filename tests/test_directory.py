"""The user directory: tokens, a file, and a real PostgreSQL table."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from hlgateway.auth import Principal
from hlgateway.config import SettingsError
from hlgateway.directory import DirectoryError, UserDirectory, parse_file
from hlgateway.directory_sync import DirectorySync

A = "0x" + "a" * 40
B = "0x" + "b" * 40
DSN = os.environ.get("HLGATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def test_tokens_and_sources_add_up() -> None:
    directory = UserDirectory(max_learned=2)
    directory.learn(Principal("alice", wallets=frozenset({A})))
    directory.load("file", {"alice": [B.upper().replace("0X", "0x")], "bob": [B]})
    assert directory.wallets_of("alice") == (A, B)
    assert directory.wallets_of("bob") == (B,)
    assert directory.wallets_of("carol") == ()
    directory.learn(Principal("x", wallets=frozenset({A})))
    directory.learn(Principal("y", wallets=frozenset({A})))
    assert directory.wallets_of("alice") == (B,)  # the oldest learnt user made room
    with pytest.raises(DirectoryError, match="not a 0x wallet"):
        directory.load("file", {"eve": ["nope"]})


def test_file_formats(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps({"users": {"alice": [A]}}))
    (tmp_path / "d.toml").write_text(f'[users]\nalice = ["{A}"]\n')
    assert parse_file(tmp_path / "d.json") == parse_file(tmp_path / "d.toml") == {"alice": [A]}
    (tmp_path / "bad.json").write_text('{"users": ["alice"]}')
    with pytest.raises(DirectoryError, match="expected"):
        parse_file(tmp_path / "bad.json")


async def test_a_bad_file_stops_the_start_and_a_later_bad_edit_keeps_the_last_copy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="HLGATEWAY_DIRECTORY_FILE"):
        await DirectorySync(UserDirectory(), file=str(path)).start()
    directory = UserDirectory()
    path.write_text(json.dumps({"users": {"alice": [A]}}))
    sync = DirectorySync(directory, file=str(path), refresh=3600)
    await sync.start()
    path.write_text("{broken")
    os.utime(path, (1, 1))  # a changed mtime, whatever the clock's resolution
    sync.reload_file(path)
    assert directory.wallets_of("alice") == (A,) and "file" in sync.health()["errors"]
    path.write_text(json.dumps({"users": {"alice": [B]}}))
    os.utime(path, (2, 2))
    sync.reload_file(path)
    assert directory.wallets_of("alice") == (B,) and sync.health()["errors"] == {}
    await sync.stop()


@pytest.fixture
async def table() -> AsyncIterator[str]:
    schema = f"hlg_directory_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE {schema}.wallets (user_id text, wallet text)")
        await conn.execute(
            f"INSERT INTO {schema}.wallets VALUES ('alice', %s), ('alice', %s), ('bob', %s)",
            (A, B, B),
        )
    try:
        yield f"{schema}.wallets"
    finally:
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_postgresql_table(table: str) -> None:
    directory = UserDirectory()
    sync = DirectorySync(directory, dsn=DSN, table=table)
    await sync.start()
    try:
        assert directory.wallets_of("alice") == (A, B)
        assert directory.wallets_of("bob") == (B,)
        assert sync.health()["sources"] == ["database"]
    finally:
        await sync.stop()


async def test_an_unreachable_database_keeps_serving(table: str) -> None:
    directory = UserDirectory()
    sync = DirectorySync(directory, dsn=DSN, table=table)
    assert await sync.load_database()
    # The same source, now unreachable (nothing listens on port 1): the last copy serves.
    down = DirectorySync(directory, dsn="postgresql://postgres@127.0.0.1:1/test", table=table)
    assert not await down.load_database()
    assert directory.wallets_of("alice") == (A, B)
    assert "database" in down.health()["errors"]

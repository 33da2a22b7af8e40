"""The notifier's database across releases: one written by an earlier release is upgraded
in place, with every row kept; one written by a newer release is refused, unchanged.

The earlier databases are SQL dumps in tests/notifier/fixtures/, written by the schema code
of two commits (see make.py there): `v1-first`, the first schema, which lacks the columns
added later without a version change, and `v1-main`, the schema on main when migrations
came. Each is loaded into SQLite and into the local PostgreSQL (a schema of its own)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from hlgateway.client import Position
from hlgateway.migrations import Migration, SchemaError, SchemaTooNew, pending
from hlgateway.notifier import schema
from hlgateway.notifier.database import open_database
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.pacing import Limits
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.service import Notifier
from hlgateway.notifier.telegram import TelegramApi
from tests.helpers import SECRET, free_port
from tests.notifier.conftest import PG_BASE, drop_schema, pg_schema
from tests.notifier.fakebot import FakeBotApi
from tests.notifier.test_bot import eventually_text

FIXTURES = Path(__file__).parent / "fixtures"
W1 = "0x" + "a1" * 20
W2 = "0x" + "b2" * 20
TABLES: tuple[str, ...] = ("kv", "chats", "watches", "streams", "deliveries", "lines")
TABLES += ("messages", "alerts", "liquidation_tiers")


async def load(label: str, dialect: str, tmp_path: Path) -> tuple[str, str | None]:
    """The fixture database `label` as a URL (and its PostgreSQL schema, to drop)."""
    dump = (FIXTURES / f"{label}.{dialect}.sql").read_text()
    if dialect == "sqlite":
        path = tmp_path / f"{label}.db"
        with sqlite3.connect(path) as conn:
            conn.executescript(dump)
        return f"sqlite:///{path}", None
    name, url = await pg_schema()
    async with await psycopg.AsyncConnection.connect(PG_BASE, autocommit=True) as conn:
        await conn.execute(dump.replace("__SCHEMA__", name).encode())
    return url, name


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def schemas() -> AsyncIterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        await drop_schema(name)


async def version_of(repo: Repository) -> int:
    async with repo.db.transaction() as tx:
        return await schema.version(tx, repo.db.dialect)


@pytest.mark.parametrize("label", ["v1-first", "v1-main"])
async def test_a_database_of_an_earlier_release_is_upgraded_in_place(
    label: str, dialect: str, tmp_path: Path, schemas: list[str]
) -> None:
    url, name = await load(label, dialect, tmp_path)
    schemas += [name] if name else []
    repo = Repository(open_database(url))
    await repo.connect()
    assert await version_of(repo) == 1  # what both releases wrote, and never read
    async with repo.db.transaction() as tx:
        missing = {"attempted_ms", "web_app_url"} - await schema.columns(tx, dialect, "messages")
    assert missing == ({"attempted_ms", "web_app_url"} if label == "v1-first" else set())
    await repo.close()

    repo = Repository(open_database(url))
    await repo.open()
    try:
        assert await version_of(repo) == schema.LATEST
        async with repo.transaction() as t:
            # Everything the old release wrote is there.
            assert await t.kv.get("telegram_update_offset") == "42"
            assert [(w.wallet, w.label) for w in await t.watches.of_chat(101)] == [
                (W1, "desk <one>")
            ]
            assert await t.watches.wallets() == [W1, W2]
            assert not await t.outbox.claim(101, W1, 5001)  # its claims still hold
            assert not await t.outbox.claim(-202, W1, 5002)
            fills = await t.streams.get(W1, "user_fills")
            assert fills is not None and (fills.epoch, fills.offset) == ("epoch-a", 17)
            assert [(a.symbol, a.armed) for a in await t.alerts.all()] == [
                ("BTC", False),
                ("ETH", True),
            ]
            assert await t.tiers.all() == {(-202, W2, "SOL"): 2}
            # The lines of the muted chat 101 wait; -202's line is packed once it may be.
            assert await t.outbox.next_line_due(1_700_000_000_000) == 1_699_000_006_000
            # And what the new columns are for works on it.
            await t.outbox.add_message(77, "Open it", 1, web_app_url="https://new.example/")
            (button,) = [m for m in await t.outbox.pending() if m.chat_id == 77]
            assert button.web_app_url == "https://new.example/"
            await t.outbox.mark_attempted(button.id, 1_699_000_030_000)
            await t.chats.hold(-202, 1_699_000_040_000)
            assert await t.chats.holds(1_699_000_000_000) == {
                **({101: 1_699_000_020_000} if label == "v1-main" else {}),
                -202: 1_699_000_040_000,
            }
            assert (await t.outbox.last_attempts(0))[77] == 1_699_000_030_000
    finally:
        await repo.close()

    # Opening it again changes nothing more.
    repo = Repository(open_database(url))
    await repo.open()
    assert await version_of(repo) == schema.LATEST
    await repo.close()


async def test_a_new_database_and_an_upgraded_one_have_the_same_tables(
    dialect: str, tmp_path: Path, schemas: list[str]
) -> None:
    old_url, name = await load("v1-first", dialect, tmp_path)
    schemas += [name] if name else []
    if dialect == "sqlite":
        new_url = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        new_name, new_url = await pg_schema()
        schemas.append(new_name)
    shapes = []
    for url in (old_url, new_url):
        repo = Repository(open_database(url))
        await repo.open()
        async with repo.db.transaction() as tx:
            shapes.append({table: await schema.columns(tx, dialect, table) for table in TABLES})
        await repo.close()
    assert shapes[0] == shapes[1]


async def test_the_upgraded_notifier_resumes_where_the_old_one_stopped(
    fakebot: FakeBotApi, tmp_path: Path
) -> None:
    url, _ = await load("v1-main", "sqlite", tmp_path)
    feed = GatewayFeed(f"ws://127.0.0.1:{free_port()}/ws", "unused", "root")
    notifier = Notifier(
        Repository(open_database(url)),
        TelegramApi(fakebot.token, fakebot.url, poll_timeout=1),
        feed,
        limits=Limits(private_interval=0.05),
    )
    fakebot._next_update = 42  # the stored offset: updates below it were handled
    await notifier.start()
    try:
        streams = feed._streams
        assert streams[("user_fills", W1)].position == Position(17, "epoch-a")
        assert streams[("user_orders", W1)].position == Position(9, "epoch-a")
        assert streams[("user_fills", W2)].position is None
        assert set(notifier.state.alerts) == {1, 2}
        fakebot.say(-202, "/wallets", chat_type="group")
        await eventually_text(fakebot, -202, f"Watching:\n{W1}\n{W2} (two)")
    finally:
        await notifier.stop(grace=1.0)


async def test_a_database_of_a_newer_release_is_refused_and_left_alone(
    dialect: str, tmp_path: Path, schemas: list[str]
) -> None:
    url, name = await load("v1-main", dialect, tmp_path)
    schemas += [name] if name else []
    repo = Repository(open_database(url))
    await repo.connect()
    async with repo.transaction() as t:
        await t.kv.set("schema", str(schema.LATEST + 1))
    await repo.close()
    repo = Repository(open_database(url))
    with pytest.raises(SchemaTooNew) as refused:
        await repo.open()
    assert f"schema version {schema.LATEST + 1}" in str(refused.value)
    assert "newer than this hlgateway knows" in str(refused.value)
    repo = Repository(open_database(url))
    await repo.connect()
    try:
        assert await version_of(repo) == schema.LATEST + 1  # unchanged
    finally:
        await repo.close()


async def test_an_unreadable_version_is_refused(tmp_path: Path) -> None:
    url, _ = await load("v1-main", "sqlite", tmp_path)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE kv SET value = 'two' WHERE key = 'schema'")
    with pytest.raises(SchemaError, match="unreadable schema version 'two'"):
        await Repository(open_database(url)).open()


async def test_the_notifier_process_refuses_a_newer_database_clearly(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "v1-main.sqlite.sql").read_text())
        conn.execute("UPDATE kv SET value = '999' WHERE key = 'schema'")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hlgateway", "notifier", "--database", str(path)),
        *("--gateway", f"ws://127.0.0.1:{free_port()}/ws"),
        *("--telegram-api", f"http://127.0.0.1:{free_port()}"),
        env={"TELEGRAM_BOT_TOKEN": "1:x", "JWT_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "schema version 999, newer than this hlgateway knows" in err.decode()
    assert "Traceback" not in err.decode()


def test_migrations_run_in_order_from_where_the_database_is() -> None:
    steps = [Migration(1, "a", "A"), Migration(2, "b", "B"), Migration(3, "c", "C")]
    assert [m.step for m in pending(0, steps, "db")] == ["A", "B", "C"]
    assert [m.step for m in pending(2, steps, "db")] == ["C"]
    assert pending(3, steps, "db") == []
    with pytest.raises(SchemaTooNew, match="db is at schema version 4, newer"):
        pending(4, steps, "db")
    with pytest.raises(ValueError, match="numbered"):
        pending(0, [Migration(1, "a", "A"), Migration(3, "c", "C")], "db")
    with pytest.raises(SchemaError):
        pending(-1, steps, "db")

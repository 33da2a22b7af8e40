"""Fixtures: the fake Bot API, a simulator in this process (its ledger survives a
gateway restart), a real gateway process on it, and a database (SQLite or the
local PostgreSQL, in a schema of its own, dropped after)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hlgateway.client import Backoff
from hlgateway.config import NotifierSettings
from hlgateway.notifier.database import open_database
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.pacing import Limits
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.service import Notifier
from hlgateway.notifier.telegram import TelegramApi
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import GatewayProcess, admin_token, free_port
from tests.notifier.fakebot import FakeBotApi

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
FAST = SimConfig(
    seed=5,
    book_interval=0.2,
    order_interval=0.25,
    max_fill_gap=1.0,
    track_rest_queries=True,
    max_new_connections_per_minute=10_000,
    control=True,
)


@pytest.fixture
async def fakebot() -> AsyncIterator[FakeBotApi]:
    bot = FakeBotApi()
    await bot.start()
    yield bot
    await bot.stop()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(FAST)
    await simulator.start("127.0.0.1", 0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gateway(sim: Simulator, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    proc = GatewayProcess(
        free_port(),
        "--upstream",
        sim.ws_url,
        log_file=tmp_path / "gateway.log",
        HLGATEWAY_UPSTREAM_BACKOFF_MAX="0.5",
    )
    await proc.start()
    yield proc
    await proc.terminate()


async def pg_schema() -> tuple[str, str]:
    schema = f"notifier_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(PG_BASE, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"{PG_BASE}?options=-csearch_path%3D{schema}"


async def drop_schema(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_BASE, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'notifier.db'}"
        return
    schema, url = await pg_schema()
    try:
        yield url
    finally:
        await drop_schema(schema)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'notifier.db'}"


NotifierFactory = Callable[..., Notifier]


@pytest.fixture
async def make_notifier(
    fakebot: FakeBotApi, gateway: GatewayProcess, sim: Simulator
) -> AsyncIterator[NotifierFactory]:
    made: list[Notifier] = []

    def make(database: str, **options: Any) -> Notifier:
        """A notifier on the fake Bot API and the gateway; `options`: NotifierSettings
        fields (the info API is the simulator's unless `info_url` says otherwise),
        `limits` (pacing) and `capacity` (the feed's inbox)."""
        feed = GatewayFeed(
            gateway.ws,
            admin_token(ttl_seconds=3600),
            "root",
            wallets_per_connection=options.pop("wallets_per_connection", 30),
            capacity=options.pop("capacity", 1000),
            backoff=Backoff(0.1, max_delay=0.5),
        )
        limits = options.pop("limits", Limits())
        clock = options.pop("clock", time.time)
        settings = NotifierSettings(
            gateway=gateway.ws,
            info_url=options.pop("info_url", sim.http_url + "/info"),
            coalesce_ms=options.pop("coalesce_ms", 300),
            **options,
        )
        notifier = Notifier(
            Repository(open_database(database)),
            TelegramApi(fakebot.token, fakebot.url, poll_timeout=1),
            feed,
            settings,
            limits,
            clock,
        )
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        if not notifier.stopping:
            await notifier.stop(grace=1.0)

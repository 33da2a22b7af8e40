"""A database outage: the consumer stops, the feed's inbox fills to its bound, the feed
pauses its streams, and when the database is back they resume with `since`: every fill
once, in order, replayed by the gateway (nothing reloaded), the commands answered."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hlgateway.notifier.pacing import Limits
from hlgateway.simulator import Simulator
from tests.helpers import eventually
from tests.notifier.conftest import NotifierFactory
from tests.notifier.fakebot import FakeBotApi
from tests.notifier.test_bot import eventually_text, fill_lines, fill_prefix, watch_since

WALLET = "0x" + "d7" * 20
CHAT = 1201
CAPACITY = 2


class WriteLock:
    """Another process's write transaction on the notifier's SQLite file (as a backup
    tool or a migration would hold it): every write of the notifier fails meanwhile."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def take(self) -> None:
        await asyncio.to_thread(self.conn.execute, "BEGIN EXCLUSIVE")

    async def release(self) -> None:
        await asyncio.to_thread(self.conn.execute, "ROLLBACK")
        self.conn.close()


async def test_a_database_outage_pauses_the_feed_and_loses_nothing(
    make_notifier: NotifierFactory,
    fakebot: FakeBotApi,
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "outage.db"
    notifier = make_notifier(
        f"sqlite:///{path}",
        capacity=CAPACITY,
        limits=Limits(private_interval=0.05, group_interval=0.05),
    )
    reloads: list[tuple[Any, ...]] = []
    real = notifier.history.fills_since

    async def counted(*args: Any) -> list[dict[str, Any]]:
        reloads.append(args)
        return await real(*args)

    monkeypatch.setattr(notifier.history, "fills_since", counted)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 2, 30)
    since = await watch_since(notifier, CHAT, WALLET)
    reloaded_before = len(reloads)  # the first subscribe's gap

    lock = WriteLock(path)
    await lock.take()
    try:
        fakebot.say(CHAT, "/wallets")  # a command while the database is away
        # The consumer fails (the database is locked) and keeps its event; the inbox fills
        # up to its bound and the streams pause; fills go on meanwhile.
        await eventually(lambda: bool(re.search(r"handling \w+ failed; retrying", caplog.text)), 60)
        await eventually(lambda: bool(notifier.feed.paused()), 60)
        during = len(sim.ledger(WALLET)["fills"])
        await eventually(lambda: len(sim.ledger(WALLET)["fills"]) >= during + 3, 30)
        assert notifier.feed.inbox.lossless <= CAPACITY + 2  # and one per stream at most
        assert notifier.feed.inbox.refused >= 1
    finally:
        await lock.release()

    await eventually(lambda: not notifier.feed.paused(), 60)
    await eventually_text(fakebot, CHAT, f"Watching:\n{WALLET}")
    ledger = sorted(
        (f for f in sim.ledger(WALLET)["fills"] if f["time"] >= since),
        key=lambda f: (f["time"], f["tid"]),
    )
    expected = [fill_prefix(f) for f in ledger]
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= len(expected), 60)
    await notifier.stop()
    delivered = [line.split(" · ")[0] for line in fill_lines(fakebot, CHAT)]
    assert delivered[: len(expected)] == expected  # each once, in order, none lost
    full = sorted(sim.ledger(WALLET)["fills"], key=lambda f: (f["time"], f["tid"]))
    assert delivered == [fill_prefix(f) for f in full if f["time"] >= since][: len(delivered)]
    assert len(reloads) == reloaded_before  # the gateway replayed the pause: no reload
    assert sum("Watching:" in t for t in fakebot.texts(CHAT)) == 1
    assert not fakebot.violations

"""Every fill after /watch reaches the chat once, in order, across a kill -9 and a
SIGTERM of the notifier, a restart of the gateway, and 429s.

After a kill -9, a message Telegram accepted whose acceptance the notifier had
not yet recorded is sent again (docs/notifier.md): at most the one message in
flight for the chat per kill, and the test holds the notifier to that.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hlgateway.simulator import Simulator
from tests.helpers import GatewayProcess, eventually
from tests.notifier.fakebot import Failure, FakeBotApi
from tests.notifier.process import NotifierProcess
from tests.notifier.test_bot import fill_prefix

WALLET = "0x" + "f1" * 20
CHAT = 777


def fill_messages(bot: FakeBotApi) -> list[list[str]]:
    """Each delivered notification message as its fill lines (without the label)."""
    out = []
    for text in bot.texts(CHAT):
        lines = [ln.split(" · ")[0] for ln in text.split("\n") if ln.startswith(("Bought", "Sold"))]
        if lines:
            out.append(lines)
    return out


def ledger_after(sim: Simulator, since: int) -> list[dict[str, Any]]:
    fills = [f for f in sim.ledger(WALLET)["fills"] if f["time"] >= since]
    return sorted(fills, key=lambda f: (f["time"], f["tid"]))


@pytest.fixture
async def notifier_proc(
    tmp_path: Path, gateway: GatewayProcess, fakebot: FakeBotApi, sim: Simulator
) -> AsyncIterator[NotifierProcess]:
    proc = NotifierProcess(
        gateway.ws,
        fakebot.url,
        fakebot.token,
        f"sqlite:///{tmp_path / 'notifier.db'}",
        sim.http_url + "/info",
        tmp_path / "notifier.log",
    )
    yield proc
    await proc.kill()


async def test_every_fill_once_across_kill_sigterm_gateway_restart_and_429s(
    notifier_proc: NotifierProcess,
    gateway: GatewayProcess,
    fakebot: FakeBotApi,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    async def up() -> None:
        polls = fakebot.polls
        await notifier_proc.start()
        await eventually(lambda: fakebot.polls > polls, 20)

    async def more_fills(count: int) -> None:
        target = sum(map(len, fill_messages(fakebot))) + count
        await eventually(lambda: sum(map(len, fill_messages(fakebot))) >= target, 30)

    async def ledger_grows(count: int) -> None:
        start = len(sim.ledger(WALLET)["fills"])
        await eventually(lambda: len(sim.ledger(WALLET)["fills"]) >= start + count, 30)

    await up()
    fakebot.say(CHAT, f"/watch {WALLET} <b>_*[x]")
    await eventually(lambda: any("Watching" in t for t in fakebot.texts(CHAT)), 20)
    await eventually(lambda: len(fill_messages(fakebot)) >= 2, 30)

    # 1. kill -9 while fills keep coming.
    await notifier_proc.kill()
    await ledger_grows(3)
    await up()
    await more_fills(3)

    # 2. 429s, then SIGTERM.
    fakebot.fail(CHAT, Failure(429, retry_after=1, count=2))
    await more_fills(2)
    assert await notifier_proc.terminate() == 0
    await ledger_grows(3)
    await up()
    await more_fills(3)

    # 3. The gateway restarts (a new epoch: history in memory is gone).
    await gateway.terminate()
    await ledger_grows(3)
    restarted = GatewayProcess(
        gateway.port, "--upstream", sim.ws_url, log_file=tmp_path / "gw2.log"
    )
    await restarted.start()
    await more_fills(4)

    # Everything up to a cut-off has come: compare with the simulator's ledger.
    with sqlite3.connect(tmp_path / "notifier.db") as db:
        since = db.execute("SELECT since_ms FROM watches WHERE wallet = ?", (WALLET,)).fetchone()[0]
    cutoff = ledger_after(sim, since)[-1]["time"]
    expected = [fill_prefix(f) for f in ledger_after(sim, since) if f["time"] <= cutoff]
    await eventually(lambda: sum(map(len, fill_messages(fakebot))) >= len(expected), 30)
    await notifier_proc.terminate()
    await restarted.terminate()

    messages = fill_messages(fakebot)
    # A repeat is a whole message sent again right after the one it repeats.
    repeats = [n for n in range(1, len(messages)) if messages[n] == messages[n - 1]]
    assert len(repeats) <= 1, (repeats, notifier_proc.logs()[-3000:])  # one kill -9
    lines = [ln for n, msg in enumerate(messages) if n not in repeats for ln in msg]
    assert lines[: len(expected)] == expected
    full = [fill_prefix(f) for f in ledger_after(sim, since)]
    assert lines == full[: len(lines)]  # nothing later came twice or out of order
    assert not fakebot.violations
    assert any(s.status == 429 for s in fakebot.sent)
    # The notifier's restarts resumed with `since` (replayed by the gateway); only the
    # gateway's restart (a new epoch) made a resync, which a reload from the info API filled.
    resyncs = [
        ln for ln in notifier_proc.logs().splitlines() if "user_fills" in ln and "resync" in ln
    ]
    assert len(resyncs) == 1, resyncs
    print(f"{len(lines)} fills in {len(messages)} messages, {len(repeats)} repeated")


async def test_a_429_hold_outlives_a_kill(
    notifier_proc: NotifierProcess, fakebot: FakeBotApi, sim: Simulator, tmp_path: Path
) -> None:
    polls = fakebot.polls
    await notifier_proc.start()
    await eventually(lambda: fakebot.polls > polls, 20)
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually(lambda: any("Watching" in t for t in fakebot.texts(CHAT)), 20)
    fakebot.fail(CHAT, Failure(429, retry_after=3))
    await eventually(lambda: any(s.status == 429 for s in fakebot.sent), 20)

    def recorded() -> bool:  # the hold is stored (a kill in the ms before is the window)
        with sqlite3.connect(tmp_path / "notifier.db") as db:
            row = db.execute("SELECT held_until FROM chats WHERE chat_id = ?", (CHAT,)).fetchone()
        return row is not None and row[0] > 0

    await eventually(recorded, 10)
    await notifier_proc.kill()  # within the 3 s hold
    polls = fakebot.polls
    await notifier_proc.start()
    await eventually(lambda: fakebot.polls > polls, 20)
    held = next(s for s in fakebot.sent if s.status == 429)
    await eventually(lambda: any(s.at > held.at and s.status == 200 for s in fakebot.sent), 20)
    assert not fakebot.violations  # the new process waited out the old one's 429

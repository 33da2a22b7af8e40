"""Trading across kill -9 of the notifier, as a process: a confirmed order is placed once
whether the kill comes before it was sent or after the exchange had it; and the agent key
is in no log line, no message, no database file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hlgateway.simulator import Simulator
from tests.helpers import GatewayProcess, eventually
from tests.notifier.fakebot import FakeBotApi, Sent, buttons_of
from tests.notifier.process import NotifierProcess
from tests.notifier.test_bot import eventually_text
from tests.notifier.test_trading import MASTER, orders_with
from tests.trading.test_orders_end_to_end import approve_agent

CHAT = 3101


@pytest.fixture
async def trader(
    tmp_path: Path, gateway: GatewayProcess, fakebot: FakeBotApi, sim: Simulator
) -> AsyncIterator[NotifierProcess]:
    proc = NotifierProcess(
        gateway.ws,
        fakebot.url,
        fakebot.token,
        f"sqlite:///{tmp_path / 'notifier.db'}",
        sim.http_url + "/info",
        tmp_path / "notifier.log",
        HLGATEWAY_NOTIFIER_KEY=MASTER,
        HLGATEWAY_NOTIFIER_CONFIRM_SECONDS="60",
        HLGATEWAY_LOG_LEVEL="DEBUG",
    )
    yield proc
    await proc.kill()


async def up(proc: NotifierProcess, fakebot: FakeBotApi) -> None:
    polls = fakebot.polls
    await proc.start()
    await eventually(lambda: fakebot.polls > polls, 30)


async def connect(proc: NotifierProcess, fakebot: FakeBotApi, sim: Simulator) -> str:
    await up(proc, fakebot)
    key = await approve_agent(sim)
    fakebot.say(CHAT, f"/connect {sim.local_account.address}")
    await eventually_text(fakebot, CHAT, "Send me the private key")
    fakebot.say(CHAT, key)
    await eventually_text(fakebot, CHAT, "Connected: agent")
    return key


async def preview(fakebot: FakeBotApi, command: str) -> Sent:
    """Ask until the notifier has prices (its first seconds) and answers with a preview."""
    for _ in range(60):
        before = len(fakebot.with_buttons(CHAT))
        await answered(fakebot, command)
        if len(fakebot.with_buttons(CHAT)) > before:
            return fakebot.with_buttons(CHAT)[before]
        await asyncio.sleep(0.5)  # "No price yet": ask again
    raise AssertionError("no preview")


async def answered(fakebot: FakeBotApi, command: str) -> None:
    answers = len(fakebot.texts(CHAT))
    fakebot.say(CHAT, command)
    await eventually(lambda: len(fakebot.texts(CHAT)) > answers, 20)


def state_of(db: Path, preview_id: int) -> tuple[str, str | None]:
    with sqlite3.connect(db) as conn:
        state, cloid = conn.execute(
            "SELECT state, cloid FROM previews WHERE id = ?", (preview_id,)
        ).fetchone()
    return str(state), cloid


async def test_kill_between_confirm_and_placement_places_once(
    trader: NotifierProcess,
    gateway: GatewayProcess,
    fakebot: FakeBotApi,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    await connect(trader, fakebot, sim)
    shown = await preview(fakebot, "/buy ETH 0.03")
    confirm = buttons_of(shown)["Confirm"]
    preview_id = int(confirm.split(":")[1])
    await gateway.terminate()  # the order cannot go out: it waits for the link
    fakebot.press(CHAT, shown.message_id or 0, confirm)
    db = tmp_path / "notifier.db"
    await eventually(lambda: state_of(db, preview_id)[0] == "confirmed", 20)
    await trader.kill()  # confirmed, not placed
    restarted = GatewayProcess(
        gateway.port, "--upstream", sim.ws_url, log_file=tmp_path / "gateway2.log"
    )
    await restarted.start()
    try:
        await up(trader, fakebot)
        await eventually_text(fakebot, CHAT, "✅ Filled: buy 0.03 ETH")
        cloid = state_of(db, preview_id)[1]
        assert cloid is not None
        assert len(orders_with(sim, sim.local_account.address, cloid)) == 1
        assert state_of(db, preview_id)[0] == "placed"
    finally:
        await trader.kill()
        await restarted.terminate()


async def test_kill_after_the_exchange_has_it_records_it_once(
    trader: NotifierProcess, fakebot: FakeBotApi, sim: Simulator, tmp_path: Path
) -> None:
    key = await connect(trader, fakebot, sim)
    account = sim.local_account.address
    shown = await preview(fakebot, "/sell ETH 0.03")
    confirm = buttons_of(shown)["Confirm"]
    preview_id = int(confirm.split(":")[1])
    db = tmp_path / "notifier.db"
    fakebot.press(CHAT, shown.message_id or 0, confirm)
    await eventually(lambda: state_of(db, preview_id)[1] is not None, 20)
    cloid = state_of(db, preview_id)[1]
    assert cloid is not None
    await eventually(lambda: bool(orders_with(sim, account, cloid)), 20)
    await trader.kill()  # the exchange has it; the notifier may not have recorded it
    await up(trader, fakebot)
    await eventually(lambda: state_of(db, preview_id)[0] == "placed", 30)
    fakebot.say(CHAT, "/limit")  # answered after whatever the restart had to say
    await eventually_text(fakebot, CHAT, "Largest order")
    told = [t for t in fakebot.texts(CHAT) if t.startswith(("✅", "Placed (order"))]
    assert len(told) == 1, told
    assert len(orders_with(sim, account, cloid)) == 1
    await trader.terminate()
    assert_key_nowhere(key, trader, fakebot, db)


def assert_key_nowhere(key: str, proc: NotifierProcess, fakebot: FakeBotApi, db: Path) -> None:
    """Not in the log (DEBUG), not in any message or edit, not in the database's files."""
    hexes = {key.removeprefix("0x").lower(), key.removeprefix("0x").upper()}
    raw = bytes.fromhex(key.removeprefix("0x"))
    log = proc.logs()
    assert "DEBUG" in log and "[redacted key]" in log  # the logs saw it, and hid it
    assert not any(h in log for h in hexes)
    said = [s.text for s in fakebot.sent] + [e.text for e in fakebot.edits]
    assert not any(h in text.lower() or h in text for text in said for h in hexes)
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert files
    for path in files:
        content = path.read_bytes()
        assert raw not in content and not any(h.encode() in content for h in hexes), path
    with sqlite3.connect(db) as conn:
        (sealed,) = conn.execute("SELECT sealed FROM agents").fetchone()
    assert str(sealed).startswith("v1:")

"""`/ledger on|off`: deposits, withdrawals and liquidations of the watched wallets, each
once, from the fake Bot API through a real gateway process to the simulator."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hlgateway.notifier.events import LEDGER
from hlgateway.notifier.service import Notifier
from hlgateway.simulator import Simulator
from tests.helpers import eventually
from tests.notifier.conftest import FAST, NotifierFactory
from tests.notifier.fakebot import FakeBotApi

WALLET = "0x" + "d7" * 20
CHAT = 2002
NOTIFIED = ("deposit", "withdraw", "liquidation")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """The conftest's simulator, with cashflows often enough for a test."""
    simulator = Simulator(
        dataclasses.replace(
            FAST, funding_interval=1.0, transfer_interval=0.5, liquidation_interval=2.5
        )
    )
    await simulator.start("127.0.0.1", 0)
    yield simulator
    await simulator.stop()


def ledger_lines(bot: FakeBotApi, chat: int) -> list[str]:
    return [
        line
        for text in bot.texts(chat)
        for line in text.split("\n")
        if line.startswith(("Deposit ", "Withdrawal ", "⚠️ Liquidated"))
    ]


def expected_line(update: dict[str, Any], label: str) -> str:
    delta = update["delta"]
    if delta["type"] == "deposit":
        return f"Deposit {delta['usdc']} USDC · {label}"
    if delta["type"] == "withdraw":
        return f"Withdrawal {delta['usdc']} USDC (fee {delta['fee']}) · {label}"
    positions = ", ".join(f"{p['coin']} {p['szi']}" for p in delta["liquidatedPositions"])
    return f"⚠️ Liquidated: {positions} · notional {delta['liquidatedNtlPos']} USDC · {label}"


async def ledger_since(notifier: Notifier, chat: int) -> int:
    async with notifier.repo.db.transaction() as tx:
        value = await tx.scalar("SELECT ledger_since FROM chats WHERE chat_id = ?", (chat,))
    assert value is not None
    return int(value)


async def test_ledger_is_off_by_default_and_on_delivers_each_event_once(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sim: Simulator, database_url: str
) -> None:
    notifier = make_notifier(database_url)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET} desk")
    await eventually(lambda: any("Watching" in t for t in fakebot.texts(CHAT)), 10)
    # Off by default: the wallet's ledger is not even read.
    assert WALLET in notifier.feed.watching()
    assert not notifier.feed.reading(LEDGER, WALLET)

    fakebot.say(CHAT, "/ledger on")
    await eventually(lambda: any("Ledger events on" in t for t in fakebot.texts(CHAT)), 10)
    await eventually(lambda: notifier.feed.reading(LEDGER, WALLET), 10)
    since = await ledger_since(notifier, CHAT)

    def expected() -> list[dict[str, Any]]:
        updates = sim.ledger(WALLET)["ledgerUpdates"]
        return [u for u in updates if u["delta"]["type"] in NOTIFIED and u["time"] >= since]

    # Every kind comes (a liquidation needs an open position: it comes now and then).
    await eventually(
        lambda: {u["delta"]["type"] for u in expected()} >= {"deposit", "liquidation"}, 40
    )
    cut = expected()
    await eventually(lambda: len(ledger_lines(fakebot, CHAT)) >= len(cut), 30)
    got = ledger_lines(fakebot, CHAT)
    assert got[: len(cut)] == [expected_line(u, "desk") for u in cut]
    assert len(set(got)) == len(got), "each event once"

    fakebot.say(CHAT, "/ledger off")
    await eventually(lambda: any("Ledger events off" in t for t in fakebot.texts(CHAT)), 10)
    await eventually(lambda: not notifier.feed.reading(LEDGER, WALLET), 10)
    await notifier.stop()

"""Confirm taps with faults (issue 23): are exactly the confirmed orders placed, no more?

The simulator in this process (its exchange and ledger outlive everything else), a
durable gateway process, a notifier process with a chat connected to an agent of the
simulator's funded account, and the tests' fake Bot API. Again and again: a trading
command, its preview, and Confirm pressed with a fault in turn: none, a double tap, a
callback Telegram delivers again, kill -9 of the notifier 0-300 ms after the tap, a
gateway restart around the tap, kill -9 the moment the exchange has the order. At the
end the notifier's previews are compared with the exchange's orders (by cloid) and the
chat's fill lines with the exchange's fills.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hlgateway.notifier.vault import new_master_key
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import GatewayProcess, eventually, free_port
from tests.notifier.fakebot import FakeBotApi, Sent, buttons_of
from tests.notifier.process import NotifierProcess
from tests.notifier.test_bot import fill_prefix
from tests.trading.test_orders_end_to_end import approve_agent

CHAT = 7001
FAULTS = (
    "none",
    "double_tap",
    "retried_callback",
    "kill9_after_tap",
    "gateway_restart",
    "kill9_when_placed",
)
COMMANDS = ("/buy ETH 0.01", "/sell ETH 0.01", "/buy SOL 0.2", "/sell SOL 0.2")


@dataclass
class TapReport:
    taps: int = 0  # Confirm presses (a double tap is two), re-deliveries not counted
    faults: dict[str, int] = field(default_factory=dict)
    redelivered_callbacks: int = 0
    notifier_kills: int = 0
    gateway_restarts: int = 0
    previews: int = 0
    confirmed: int = 0  # previews confirmed (each one order at most)
    orders_placed: int = 0  # confirmed previews with an order at the exchange
    refused_by_exchange: int = 0  # confirmed, sent, refused (no order)
    not_placed: int = 0  # confirmed, not sent in time (said so in the chat)
    expired_before_tap: int = 0  # previews that expired before Confirm came
    orders_twice: int = 0  # cloids with more than one order: must be 0
    orders_unconfirmed: int = 0  # orders at the exchange no confirmation stands for: must be 0
    still_confirmed: int = 0  # unresolved at the end: must be 0
    fills_at_exchange: int = 0
    fill_lines: int = 0
    fills_lost: int = 0
    fills_repeated: int = 0
    messages_sent_again: int = 0  # after a kill -9 right after Telegram accepted it
    # (fills_repeated counts the fill lines of those repeats; docs/notifier.md, the window)
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (
            self.orders_twice
            or self.orders_unconfirmed
            or self.still_confirmed
            or self.fills_lost
            or (self.fills_repeated and not self.messages_sent_again)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run(
    taps: int = 100, seed: int = 3, progress: Callable[[str], None] = lambda _: None
) -> TapReport:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="notifier-taps-"))
    sim = Simulator(SimConfig(seed=seed, book_interval=0.2, max_new_connections_per_minute=10_000))
    await sim.start("127.0.0.1", 0)
    bot = FakeBotApi()
    await bot.start()
    port = free_port()
    state = work / "gateway-state"

    def gateway_at(n: int) -> GatewayProcess:
        return GatewayProcess(
            port, "--upstream", sim.ws_url, log_file=work / f"gateway{n}.log", state_dir=state
        )

    gateway = gateway_at(0)
    await gateway.start()
    db = work / "notifier.db"
    notifier = NotifierProcess(
        gateway.ws,
        bot.url,
        bot.token,
        f"sqlite:///{db}",
        None,  # learned from the gateway
        work / "notifier.log",
        HLGATEWAY_NOTIFIER_KEY=new_master_key(),
        HLGATEWAY_NOTIFIER_CONFIRM_SECONDS="60",
        HLGATEWAY_NOTIFIER_TRADE_DAILY_ORDERS="10000",
    )
    report = TapReport()
    account = sim.local_account.address
    started = time.monotonic()

    async def up() -> None:
        polls = bot.polls
        await notifier.start()
        await eventually(lambda: bot.polls > polls, 60)

    async def ask(command: str) -> Sent:
        """Until the notifier answers with a preview (it may lack prices for a moment)."""
        for _ in range(120):
            before, said = len(bot.with_buttons(CHAT)), len(bot.texts(CHAT))
            bot.say(CHAT, command)
            await answered(said)
            if len(bot.with_buttons(CHAT)) > before:
                return bot.with_buttons(CHAT)[before]
            await asyncio.sleep(0.5)
        raise RuntimeError(f"no preview for {command}: {bot.texts(CHAT)[-1:]}")

    async def answered(said: int) -> None:
        await eventually(lambda: len(bot.texts(CHAT)) > said, 60)

    async def settled(preview_id: int) -> None:
        await eventually(lambda: preview_state(preview_id)[0] not in ("pending", "confirmed"), 120)

    async def at_exchange(preview_id: int) -> None:
        await eventually(lambda: preview_state(preview_id) != ("pending", None), 60)
        cloid = preview_state(preview_id)[1]
        if cloid is not None:  # else it expired before the tap
            await eventually(lambda: cloid in orders_by_cloid(), 60)

    def drained() -> bool:
        with sqlite3.connect(db) as conn:
            (waiting,) = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE state = 'pending'"
            ).fetchone()
            (unpacked,) = conn.execute(
                "SELECT COUNT(*) FROM lines WHERE message_id IS NULL"
            ).fetchone()
        return bool(waiting == 0 and unpacked == 0)

    async def answered_query(update: int) -> None:
        await eventually(lambda: any(q == f"q{update}" for q, _ in bot.answers), 60)

    def preview_state(preview_id: int) -> tuple[str, str | None]:
        with sqlite3.connect(db) as conn:
            state, cloid = conn.execute(
                "SELECT state, cloid FROM previews WHERE id = ?", (preview_id,)
            ).fetchone()
        return str(state), cloid

    def orders_by_cloid() -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for o in sim.ledger(account)["orders"]:
            if o.get("cloid"):
                out.setdefault(str(o["cloid"]), set()).add(int(o["oid"]))
        return out

    try:
        await up()
        key = await approve_agent(sim)
        bot.say(CHAT, f"/connect {account}")
        await eventually(lambda: any("Send me the private key" in t for t in bot.texts(CHAT)), 30)
        bot.say(CHAT, key)
        await eventually(lambda: any("Connected: agent" in t for t in bot.texts(CHAT)), 30)
        n = 0
        while report.taps < taps:
            # A person reads the answers before the next command: the chat's messages go
            # one a second, and a preview shown late would expire before its tap.
            await eventually(drained, 300)
            preview = await ask(rng.choice(COMMANDS))
            report.previews += 1
            data = buttons_of(preview)["Confirm"]
            preview_id, message = int(data.split(":")[1]), preview.message_id or 0
            fault = FAULTS[n % len(FAULTS)] if n < len(FAULTS) else rng.choice(FAULTS)
            n += 1
            report.faults[fault] = report.faults.get(fault, 0) + 1
            progress(f"{time.monotonic() - started:6.1f}s tap {report.taps + 1}: {fault}")
            if fault == "double_tap":
                bot.press(CHAT, message, data)
                bot.press(CHAT, message, data)
                report.taps += 2
            elif fault == "retried_callback":
                update = bot.press(CHAT, message, data)
                report.taps += 1
                await answered_query(update)
                bot.replay(update)
                report.redelivered_callbacks += 1
            elif fault == "kill9_after_tap":
                bot.press(CHAT, message, data)
                report.taps += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await notifier.kill()
                report.notifier_kills += 1
                await up()
            elif fault == "gateway_restart":
                await gateway.terminate()
                bot.press(CHAT, message, data)
                report.taps += 1
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                gateway = gateway_at(n)
                await gateway.start()
                report.gateway_restarts += 1
            elif fault == "kill9_when_placed":
                bot.press(CHAT, message, data)
                report.taps += 1
                await at_exchange(preview_id)
                await notifier.kill()
                report.notifier_kills += 1
                await up()
            else:
                bot.press(CHAT, message, data)
                report.taps += 1
            await settled(preview_id)

        # Settle: every confirmation resolved, every fill through.
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id, state, cloid FROM previews").fetchall()
        by_cloid = orders_by_cloid()
        confirmed = [(pid, st, cl) for pid, st, cl in rows if cl is not None]
        report.confirmed = len(confirmed)
        report.still_confirmed = sum(1 for _, st, _ in confirmed if st == "confirmed")
        report.orders_placed = sum(1 for _, _, cl in confirmed if cl in by_cloid)
        report.refused_by_exchange = sum(
            1 for _, st, cl in confirmed if cl not in by_cloid and st == "rejected"
        )
        report.not_placed = sum(
            1 for _, st, cl in confirmed if cl not in by_cloid and st != "rejected"
        )
        report.expired_before_tap = sum(1 for _, st, cl in rows if cl is None and st == "expired")
        report.orders_twice = sum(1 for oids in by_cloid.values() if len(oids) > 1)
        ours = {cl for _, _, cl in confirmed}
        report.orders_unconfirmed = sum(1 for cl in by_cloid if cl not in ours)
        fills = [fill_prefix(f) for f in sim.ledger(account)["fills"]]
        report.fills_at_exchange = len(fills)

        def lines() -> list[str]:
            """Every fill line the chat got (a repeat after a kill -9 included)."""
            return [
                ln.split(" · ")[0]
                for text in bot.texts(CHAT)
                for ln in text.split("\n")
                if ln.startswith(("Bought ", "Sold "))
            ]

        def outbox_empty() -> bool:
            # The chat's messages go one a second: wait until the last fills went.
            return drained() and len(lines()) >= len(fills)

        try:
            await eventually(outbox_empty, 900)
        except TimeoutError:
            report.examples.append("the chat's messages did not all go within 900 s")
        got = lines()
        report.fill_lines = len(got)
        # Compared as multisets: two fills may read alike (same size and price).
        report.fills_lost = sum((Counter(fills) - Counter(got)).values())
        report.fills_repeated = sum((Counter(got) - Counter(fills)).values())
        with sqlite3.connect(db) as conn:
            (recorded,) = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE state = 'sent' AND chat_id = ? "
                "AND edit_of IS NULL",
                (CHAT,),
            ).fetchone()
        # Telegram accepted more than the notifier recorded as sent: the kill -9 window.
        report.messages_sent_again = len(bot.delivered(CHAT)) - int(recorded)
        report.seconds = round(time.monotonic() - started, 1)
    finally:
        await notifier.kill()
        await gateway.kill()
        await bot.stop()
        await sim.stop()
    return report

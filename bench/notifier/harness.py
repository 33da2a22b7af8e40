"""Chaos run of the Telegram notifier: real processes, a fake Bot API, faults.

The simulator (in this process, so its ledger outlives everything else) trades
for a few wallets; a gateway process reads it; a notifier process serves chats
that watch those wallets through the tests' fake Bot API. Faults at random:
kill -9 of the notifier, SIGTERM of the notifier, a gateway restart, and 429s
(retry_after 1-3 s) for a random chat. At the end every chat's messages are
compared with the ledger: fills lost, repeated, out of order; messages; the
highest per-chat and bot-wide rates; requests made during a 429 hold; and the
window a kill -9 can repeat a message in (Telegram's accept -> our record).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import GatewayProcess, eventually, free_port
from tests.notifier.fakebot import Failure, FakeBotApi
from tests.notifier.process import NotifierProcess
from tests.notifier.test_bot import PAIRS, fill_prefix

WALLETS = ["0x" + "c7" * 20, "0x" + "c8" * 20]
FAULTS = ("kill9", "sigterm", "gateway", "429", "kill9_in_window")
# `--gateway-kills N`: only this fault, N times: kill -9 of the gateway, down DOWN_S.
GATEWAY_KILL = "gateway_kill9"
DOWN_S = (1.0, 20.0)
WINDOW_KILL_MS = 10.0  # kill9_in_window: kill within this long after Telegram's accept


@dataclass
class Report:
    seconds: float = 0.0
    chats: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    fills_expected: int = 0
    fills_delivered: int = 0
    fills_lost: int = 0
    fills_repeated: int = 0
    messages_repeated: int = 0
    out_of_order_chats: int = 0
    messages: int = 0
    fills_per_message: float = 0.0
    max_per_chat_in_1s: int = 0
    min_per_chat_gap_s: float = 0.0  # arrival at the fake Bot API
    min_per_chat_gap_sent_s: float = 0.0  # request starts, as the notifier's pacer decided them
    max_bot_wide_in_1s: int = 0
    requests_429: int = 0
    resyncs: int = 0  # streams the gateway could not replay (a reload filled them)
    reloads_with_fills: int = 0
    gateway_down_s: float = 0.0  # in all, over the gateway kills
    # Spot fills the chat saw under Hyperliquid's raw name (@107 for HYPE/USDC): the gateway
    # published them so (its downtime fills, before its market names are loaded).
    raw_spot_names: int = 0
    info_url: str = "given"  # or "learned from the gateway" (started as docs/notifier.md)
    violations_of_retry_after: int = 0
    window_ms_p50: float = 0.0
    window_ms_p99: float = 0.0
    window_ms_max: float = 0.0
    kills_in_window: int = 0  # kill -9 0-10 ms after an accept
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.fills_lost or self.out_of_order_chats or self.violations_of_retry_after)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_prefix = fill_prefix  # as the chat reads it (spot pairs by name)
RAW_SPOT = re.compile(r" (@\d+) @ ")


def _named(line: str) -> str:
    """A fill line with a spot pair under Hyperliquid's raw name (`@107`) compared under
    the gateway's (HYPE/USDC); they are counted apart (`raw_spot_names`)."""
    found = RAW_SPOT.search(line)
    if found is None:
        return line
    return line.replace(found.group(0), f" {PAIRS.get(found.group(1), found.group(1))} @ ")


async def _kill_in_window(bot: FakeBotApi, notifier: NotifierProcess, rng: random.Random) -> None:
    """Aim a kill -9 into the repeat window: 0-10 ms after Telegram accepted a message."""
    killed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def kill() -> None:
        if notifier.proc is not None and notifier.proc.returncode is None:
            notifier.proc.kill()
        killed.set()

    def aim(_: Any) -> None:
        bot.on_accept = None
        loop.call_later(rng.uniform(0, WINDOW_KILL_MS) / 1000, kill)

    bot.on_accept = aim
    await asyncio.wait_for(killed.wait(), 30)


async def run(
    seconds: float = 60.0,
    chats: int = 4,
    seed: int = 3,
    progress: Callable[[str], None] = lambda _: None,
    gateway_kills: int = 0,
) -> Report:
    """`seconds` of the faults in turn; or, with `gateway_kills`, that many kill -9s of
    the gateway (each down 1-20 s) and nothing else, the notifier started exactly as
    docs/notifier.md shows (no --info-url: it learns the info API from the gateway)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="notifier-chaos-"))
    sim = Simulator(
        SimConfig(
            seed=seed,
            book_interval=0.2,
            order_interval=0.25,
            max_fill_gap=1.0,
            track_rest_queries=True,
            max_new_connections_per_minute=10_000,
        )
    )
    await sim.start("127.0.0.1", 0)
    bot = FakeBotApi()
    await bot.start()
    port = free_port()
    # With --gateway-kills the gateway runs as `hlgateway serve` does by default: durable,
    # its state in a directory (here the run's own); the chaos run keeps it in memory.
    state = work / "gateway-state" if gateway_kills else "none"
    gateway = GatewayProcess(
        port, "--upstream", sim.ws_url, log_file=work / "gateway.log", state_dir=state
    )
    await gateway.start()
    db = work / "notifier.db"
    documented = gateway_kills > 0
    notifier = NotifierProcess(
        gateway.ws,
        bot.url,
        bot.token,
        f"sqlite:///{db}",
        None if documented else sim.http_url + "/info",
        work / "notifier.log",
        as_documented=documented,
    )
    report = Report(chats=chats, info_url="learned from the gateway" if documented else "given")
    chat_ids = list(range(5001, 5001 + chats))
    watches = {chat: WALLETS[n % len(WALLETS)] for n, chat in enumerate(chat_ids)}
    started = time.monotonic()

    async def up() -> None:
        polls = bot.polls
        await notifier.start()
        await eventually(lambda: bot.polls > polls, 30, every=0.05)

    try:
        await up()
        for chat, wallet in watches.items():
            bot.say(chat, f"/watch {wallet} chat{chat}")
        await eventually(lambda: all(bot.texts(c) for c in chat_ids), 30, every=0.05)
        end = time.monotonic() + seconds
        n = 0
        while (
            (report.faults.get(GATEWAY_KILL, 0) < gateway_kills)
            if documented
            else (time.monotonic() < end)
        ):
            await asyncio.sleep(rng.uniform(3.0, 6.0))
            if documented:
                kind = GATEWAY_KILL
            else:
                kind = FAULTS[n % len(FAULTS)] if n < len(FAULTS) else rng.choice(FAULTS)
            n += 1
            report.faults[kind] = report.faults.get(kind, 0) + 1
            progress(f"{time.monotonic() - started:5.1f}s fault {n}: {kind}")
            if kind == "kill9_in_window":
                await _kill_in_window(bot, notifier, rng)
                await notifier.kill()  # reap it
                report.kills_in_window += 1
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                await up()
            elif kind == "kill9":
                await notifier.kill()
                await asyncio.sleep(rng.uniform(0.2, 2.0))
                await up()
            elif kind == "sigterm":
                await notifier.terminate()
                await asyncio.sleep(rng.uniform(0.2, 2.0))
                await up()
            elif kind == GATEWAY_KILL:
                await gateway.kill()
                down = rng.uniform(*DOWN_S)
                report.gateway_down_s = round(report.gateway_down_s + down, 1)
                await asyncio.sleep(down)
                gateway = GatewayProcess(
                    port,
                    "--upstream",
                    sim.ws_url,
                    log_file=work / f"gateway{n}.log",
                    state_dir=state,
                )
                await gateway.start()
            elif kind == "gateway":
                await gateway.terminate()
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                gateway = GatewayProcess(
                    port, "--upstream", sim.ws_url, log_file=work / f"gateway{n}.log"
                )
                await gateway.start()
            else:
                bot.fail(rng.choice(chat_ids), Failure(429, retry_after=rng.randint(1, 3)))

        # Settle: everything up to a cut-off must arrive.
        with sqlite3.connect(db) as conn:
            since = dict(conn.execute("SELECT chat_id, since_ms FROM watches").fetchall())
        cutoff = int(time.time() * 1000) - 1000
        ledgers = {w: sim.ledger(w)["fills"] for w in WALLETS}
        expected: dict[int, list[str]] = {}
        full: dict[int, list[str]] = {}
        for chat, wallet in watches.items():
            fills = sorted(
                (f for f in ledgers[wallet] if f["time"] >= since[chat]),
                key=lambda f: (f["time"], f["tid"]),
            )
            full[chat] = [_prefix(f) for f in fills]
            expected[chat] = [_prefix(f) for f in fills if f["time"] <= cutoff]

        def lines_of(chat: int) -> list[list[str]]:
            out = []
            for text in bot.texts(chat):
                found = [
                    _named(ln.split(" · ")[0])
                    for ln in text.split("\n")
                    if ln.startswith(("Bought", "Sold"))
                ]
                if found:
                    out.append(found)
            return out

        def unique_lines(chat: int) -> tuple[list[str], set[int]]:
            """A chat's fill lines without repeats: a repeat is a whole message sent again
            right after the one it repeats (a kill -9 in the window)."""
            messages = lines_of(chat)
            repeats = {i for i in range(1, len(messages)) if messages[i] == messages[i - 1]}
            lines = [ln for i, m in enumerate(messages) if i not in repeats for ln in m]
            return lines, repeats

        def settled() -> bool:
            return all(len(unique_lines(c)[0]) >= len(expected[c]) for c in chat_ids)

        try:
            await eventually(settled, 60, every=0.05)
        except TimeoutError:
            report.examples.append("did not settle within 60 s")
        await notifier.terminate()
        report.seconds = round(time.monotonic() - started, 1)
        ledgers = {w: sim.ledger(w)["fills"] for w in WALLETS}  # now, with what came since
        for chat, wallet in watches.items():
            full[chat] = [
                _prefix(f)
                for f in sorted(
                    (f for f in ledgers[wallet] if f["time"] >= since[chat]),
                    key=lambda f: (f["time"], f["tid"]),
                )
            ]

        report.raw_spot_names = sum(
            1
            for c in chat_ids
            for text in bot.texts(c)
            for ln in text.split("\n")
            if ln.startswith(("Bought", "Sold")) and RAW_SPOT.search(ln.split(" · ")[0])
        )
        for chat in chat_ids:
            messages = lines_of(chat)
            lines, repeats = unique_lines(chat)
            report.messages_repeated += len(repeats)
            report.fills_repeated += sum(len(messages[i]) for i in repeats)
            report.fills_expected += len(expected[chat])
            report.fills_delivered += len(lines)
            # Lost: in the ledger up to the cut-off, and never delivered (counted as a
            # multiset: one sweep may make equal lines). Order: separately.
            missing = Counter(expected[chat]) - Counter(lines)
            report.fills_lost += sum(missing.values())
            if missing:
                report.examples.append(f"chat {chat}: lost {list(missing.elements())[:3]}")
            if lines != full[chat][: len(lines)]:
                report.out_of_order_chats += 1
                at = next(
                    i for i, (a, b) in enumerate(zip(lines, full[chat], strict=False)) if a != b
                )
                report.examples.append(
                    f"chat {chat}: line {at} is {lines[at]!r}, the ledger has {full[chat][at]!r}"
                    f" there (then {full[chat][at + 1 : at + 4]}; delivered next "
                    f"{lines[at + 1 : at + 4]})"
                )
            report.messages += len(bot.delivered(chat))
            times = [s.at for s in bot.sent if s.chat_id == chat]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            if gaps:
                gap = min(gaps)
                report.min_per_chat_gap_s = (
                    round(gap, 3)
                    if not report.min_per_chat_gap_s
                    else round(min(report.min_per_chat_gap_s, gap), 3)
                )
            report.max_per_chat_in_1s = max(
                report.max_per_chat_in_1s,
                max((sum(1 for u in times if t <= u < t + 1) for t in times), default=0),
            )
        all_times = sorted(s.at for s in bot.sent)
        report.max_bot_wide_in_1s = max(
            (sum(1 for u in all_times if t <= u < t + 1) for t in all_times), default=0
        )
        report.fills_per_message = round(report.fills_delivered / max(1, report.messages), 2)
        report.requests_429 = sum(1 for s in bot.sent if s.status == 429)
        report.violations_of_retry_after = len(bot.violations)
        log_lines = (work / "notifier.log").read_text(errors="replace").splitlines()
        report.resyncs = sum(1 for ln in log_lines if "user_fills" in ln and "resync" in ln)
        report.reloads_with_fills = sum(1 for ln in log_lines if "reloaded" in ln)
        # The repeat window: Telegram's accept (the fake's clock) -> the notifier's record.
        accepted = {s.message_id: s.at for s in bot.sent if s.message_id is not None}
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT telegram_id, sent_ms FROM messages WHERE state = 'sent'"
            ).fetchall()
        with sqlite3.connect(db) as conn:
            starts = conn.execute(
                "SELECT chat_id, attempted_ms FROM messages WHERE attempted_ms IS NOT NULL "
                "ORDER BY chat_id, attempted_ms"
            ).fetchall()
        by_chat: dict[int, list[int]] = {}
        for chat, at in starts:
            by_chat.setdefault(chat, []).append(at)
        sent_gaps = [b - a for times in by_chat.values() for a, b in itertools.pairwise(times)]
        report.min_per_chat_gap_sent_s = min(sent_gaps, default=0) / 1000
        windows = sorted(ms - accepted[tg] * 1000 for tg, ms in rows if tg in accepted)
        if windows:
            report.window_ms_p50 = round(windows[len(windows) // 2], 1)
            report.window_ms_p99 = round(windows[int(len(windows) * 0.99)], 1)
            report.window_ms_max = round(windows[-1], 1)
    finally:
        await notifier.kill()
        await gateway.kill()
        await bot.stop()
        await sim.stop()
    return report

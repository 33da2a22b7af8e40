"""Issue 19's notifier run: the notifier started as docs/notifier.md shows, the gateway
restarted under it (`python -m bench.restarts.notifier [--restarts 10]`).

The simulator trades for a wallet (in this process: its ledger outlives everything);
one `hlgateway serve` with default settings (bench/restarts/harness.py's
`RestartingGateway`); one `hlgateway notifier --gateway ws://...` with nothing
else but the fake Bot API's address (tests/notifier/fakebot.py) and the bot
token: its database is the default one, its info API the one the gateway names.
Chats `/watch` the wallet; the gateway is killed with -9 and stopped with
SIGTERM, alternately, `--restarts` times, each down 1-20 s. At the end every
chat must hold every fill of the wallet since its watch began, once, in order.

Left runnable for the notifier's owner (the notifier's half of issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.restarts.harness import STOPS, RestartingGateway
from bench.table import machine, write_section
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import eventually
from tests.notifier.fakebot import FakeBotApi
from tests.notifier.process import NotifierProcess
from tests.notifier.test_bot import fill_prefix

WALLET = "0x" + "e6" * 20


@dataclass
class NotifierRestartReport:
    restarts: int = 0
    stops: dict[str, int] = field(default_factory=dict)
    chats: int = 0
    fills_expected: int = 0
    fills_delivered: int = 0
    fills_lost: int = 0
    fills_repeated: int = 0
    out_of_order_chats: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.fills_lost or self.fills_repeated or self.out_of_order_chats)


# A ledger fill as the chat reads it: a spot pair by its name (HYPE/USDC), as the gateway
# names it, not by Hyperliquid's raw coin (@107) that the simulator's ledger keeps.
_line = fill_prefix


def _fill_lines(texts: list[str]) -> list[str]:
    return [
        line.split(" · ")[0]
        for text in texts
        for line in text.split("\n")
        if line.startswith(("Bought", "Sold"))
    ]


async def run_notifier_restarts(
    restarts: int = 10,
    *,
    chats: int = 2,
    down: tuple[float, float] = (1.0, 20.0),
    up: tuple[float, float] = (3.0, 6.0),
    seed: int = 23,
) -> NotifierRestartReport:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="hlgw-notifier-restarts-"))
    home = work / "home"
    sim = Simulator(
        SimConfig(
            seed=seed,
            order_interval=0.5,
            max_fill_gap=2.0,
            track_grace=600.0,
            track_rest_queries=True,
            max_new_connections_per_minute=10_000,
        )
    )
    await sim.start("127.0.0.1", 0)
    bot = FakeBotApi()
    await bot.start()
    gateway = RestartingGateway(sim.ws_url, home, work)
    await gateway.start()
    # As docs/notifier.md starts it: --gateway only (plus the fake Bot API's address);
    # the default database (under XDG_STATE_HOME), the info API from the gateway.
    notifier = NotifierProcess(gateway.ws, bot.url, bot.token, "", "", work / "notifier.log")
    notifier.args = ["--gateway", gateway.ws, "--telegram-api", bot.url]
    notifier.env["XDG_STATE_HOME"] = str(home)
    report = NotifierRestartReport(chats=chats)
    chat_ids = list(range(7001, 7001 + chats))
    started = time.monotonic()
    try:
        polls = bot.polls
        await notifier.start()
        await eventually(lambda: bot.polls > polls, 30, every=0.05)
        for chat in chat_ids:
            bot.say(chat, f"/watch {WALLET} chat{chat}")
        await eventually(lambda: all(_fill_lines(bot.texts(c)) for c in chat_ids), 60)
        for n in range(restarts):
            await asyncio.sleep(rng.uniform(*up))
            how = STOPS[n % len(STOPS)]
            await gateway.stop(how)
            await asyncio.sleep(rng.uniform(*down))
            await gateway.start()
            report.restarts += 1
            report.stops[how] = report.stops.get(how, 0) + 1
            print(f"restart {n + 1}/{restarts} ({how})", file=sys.stderr, flush=True)
        await asyncio.sleep(5.0)
        cutoff = int(time.time() * 1000) - 2000
        with sqlite3.connect(home / "hlgateway" / "notifier.db") as db:
            since = dict(db.execute("SELECT chat_id, since_ms FROM watches").fetchall())
        fills = sorted(sim.ledger(WALLET)["fills"], key=lambda f: (f["time"], f["tid"]))
        expected = {
            chat: [_line(f) for f in fills if since[chat] <= f["time"] <= cutoff]
            for chat in chat_ids
        }

        def settled() -> bool:
            return all(len(_fill_lines(bot.texts(c))) >= len(expected[c]) for c in chat_ids)

        with contextlib.suppress(TimeoutError):
            await eventually(settled, 120, every=0.1)
        await notifier.terminate()
        report.seconds = round(time.monotonic() - started, 1)
        everything = sorted(sim.ledger(WALLET)["fills"], key=lambda f: (f["time"], f["tid"]))
        for chat in chat_ids:
            lines = _fill_lines(bot.texts(chat))
            full = [_line(f) for f in everything if f["time"] >= since[chat]]
            report.fills_expected += len(expected[chat])
            report.fills_delivered += len(lines)
            head = lines[: len(expected[chat])]
            pairs = zip(head, expected[chat], strict=False)
            report.fills_lost += sum(1 for a, b in pairs if a != b)
            report.fills_lost += max(0, len(expected[chat]) - len(head))
            report.fills_repeated += max(0, len(lines) - len(full))
            if lines != full[: len(lines)]:
                report.out_of_order_chats += 1
                report.examples.append(f"chat {chat}: delivered != ledger")
        return report
    finally:
        with contextlib.suppress(Exception):
            await notifier.kill()
        await gateway.close()
        await bot.stop()
        await sim.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restarts.notifier")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--chats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    report = asyncio.run(run_notifier_restarts(args.restarts, chats=args.chats))
    command = f"python -m bench.restarts.notifier --restarts {args.restarts} --chats {args.chats}"
    body = "\n".join(
        [
            "# The notifier across gateway restarts: `python -m bench.restarts.notifier`",
            "",
            f"machine: {machine()}; result: {'ok' if report.ok() else 'FAILED'}",
            f"command: `{command}`",
            "",
            "| measure | value |",
            "|---|---|",
            *(f"| {key} | {value} |" for key, value in asdict(report).items()),
        ]
    )
    print(body)
    if args.write:
        write_section(command, body)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

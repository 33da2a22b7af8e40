"""`python -m bench.overlap`: what graceful moves of overlapping topics cost.

Two nodes (`hlgateway serve --broker redis://...`, a redis-server of the run's own,
each leaving from its own 127.0.0.x address) on the simulator. One client on the
first node subscribes `user_fills` for N wallets, K topics per wallet (`{userId,
wallet}` with K user ids: topics that share the wallet's upstream stream, as a
user's every-wallet topic and a one-wallet one do). Placement spreads the wallets
over both nodes and keeps each wallet's topics together. The second node is then
stopped (SIGTERM): its topics move to the first, which did not feed their wallets.

Measured on the node they move to: the time until it holds every lease, the time
until every moved topic delivered a fill made after the stop, the REST recoveries
it ran (a wallet's feed started from where it was delivered to, and a topic's own
read-back when it comes back behind a wallet fed for another topic) and the REST
weight its address spent from the stop until 5 s after the last of those; and
every topic's fills against the simulator's ledger (none lost, none twice).

Side by side in one run: K=1 (no overlap) and K=`--per-wallet` (overlap) on this
checkout, and with `--before-src DIR` the same K on another checkout's `src` (the
nodes' PYTHONPATH), e.g. the main branch before a change.
Results: bench/overlap/build/results.json, a table on stdout and in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from bench.fanout import procs as P
from bench.fleet.run import Connection, Node, _formed, wallet
from bench.table import machine, write_section
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "bench" / "overlap" / "build"
USERS = "abcd"


class Reader(Connection):
    """One client on the node the topics move to: every fill, by topic."""

    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        super().__init__(session, node)
        self.fills: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)  # topic -> tids
        self.times: dict[tuple[str, str], list[int]] = defaultdict(list)  # fill timestamps
        self.replies: dict[str, dict[str, Any]] = {}

    def received(self, body: dict[str, Any], now: float) -> None:
        if body.get("type") == "data" and body.get("channel") == "user_fills":
            params = body["params"]
            key = (params["userId"], params["wallet"])
            for fill in body["data"]["fills"]:
                self.fills[key][fill["id"]] += 1
                self.times[key].append(fill["timestamp"])
        elif "id" in body:
            self.replies[body["id"]] = body

    async def subscribe(self, topics: list[tuple[str, str]]) -> None:
        assert self._ws is not None
        for user, w in topics:
            params = {"userId": user, "wallet": w}
            await self._ws.send_json(
                {"type": "subscribe", "channel": "user_fills", "params": params, "id": user + w}
            )
            await asyncio.sleep(0.06)  # 20 messages a second per connection
        await eventually(lambda: all(u + w in self.replies for u, w in topics), 60)
        refused = [r for r in self.replies.values() if r.get("type") == "error"]
        assert not refused, refused


async def held(session: aiohttp.ClientSession, node: Node) -> int:
    return int((await node.health(session))["leases"]["held"])


async def recoveries(session: aiohttp.ClientSession, node: Node) -> int:
    return int((await node.health(session))["upstream"]["wallets"]["recoveries"])


async def scenario(
    sim: Simulator, redis_url: str, logs: Path, wallets: int, per_wallet: int, src: str | None
) -> dict[str, Any]:
    env = {"PYTHONPATH": src} if src else {}
    async with aiohttp.ClientSession() as session:
        nodes = [Node(i, sim, redis_url, logs) for i in range(2)]
        with _environment(env):
            await asyncio.gather(*(node.start(session) for node in nodes))
        stays, leaves = nodes
        reader = Reader(session, stays)
        try:
            await _formed(session, nodes)
            await reader.connect()
            topics = [
                (f"{USERS[k]}{w[2:8]}", w)
                for w in (wallet(n) for n in range(2001, 2001 + wallets))
                for k in range(per_wallet)
            ]
            await reader.subscribe(topics)

            async def all_held() -> bool:
                return await held(session, stays) + await held(session, leaves) == len(topics)

            await eventually(all_held, 60, every=0.2)
            await eventually(lambda: all(reader.times[t] for t in topics), 60, every=0.2)
            moving = await held(session, leaves)
            before = await recoveries(session, stays)
            weight = sim.rest_usage().get(stays.address, {}).get("total", 0)
            stopped_ms = int(time.time() * 1000)
            stopped = time.monotonic()
            await leaves.stop()

            async def holds_all() -> bool:
                return await held(session, stays) == len(topics)

            await eventually(holds_all, 60, every=0.05)
            moved = time.monotonic() - stopped
            await eventually(
                lambda: all(max(reader.times[t]) > stopped_ms for t in topics), 60, every=0.05
            )
            delivered = time.monotonic() - stopped
            await asyncio.sleep(5)  # recoveries of the move are over by then
            ran = await recoveries(session, stays) - before
            spent = sim.rest_usage().get(stays.address, {}).get("total", 0) - weight
            lost, twice, total = _check(sim, reader, topics)
            return {
                "topicsPerWallet": per_wallet,
                "code": "this checkout" if src is None else f"{src} ({_commit(src)})",
                "wallets": wallets,
                "topics": len(topics),
                "moved": moving,
                "movedSeconds": round(moved, 2),
                "deliveringSeconds": round(delivered, 2),
                "recoveries": ran,
                "restWeight": spent,
                "fills": total,
                "lost": lost,
                "duplicated": twice,
            }
        finally:
            await reader.close()
            await asyncio.gather(*(node.stop() for node in nodes))


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Any:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check(sim: Simulator, reader: Reader, topics: list[tuple[str, str]]) -> tuple[int, int, int]:
    """Each topic's fills from its first one received to 2 s ago, against the ledger."""
    cut = int(time.time() * 1000) - 2000
    lost = twice = total = 0
    for key in topics:
        first = min(reader.times[key])
        got = reader.fills[key]
        expected = {f["tid"] for f in sim.ledger(key[1])["fills"] if first <= f["time"] <= cut}
        total += len(expected)
        lost += len(expected - set(got))
        twice += sum(1 for tid in expected if got[tid] > 1)
    return lost, twice, total


def _commit(src: str) -> str:
    out = subprocess.run(
        ["git", "-C", src, "rev-parse", "--short", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


COLUMNS = [
    ("code", "code"),
    ("topicsPerWallet", "topics per wallet"),
    ("wallets", "wallets"),
    ("moved", "topics moved"),
    ("movedSeconds", "all leases held after s"),
    ("deliveringSeconds", "every topic delivering after s"),
    ("recoveries", "REST recoveries"),
    ("restWeight", "REST weight"),
    ("fills", "fills checked"),
    ("lost", "lost"),
    ("duplicated", "twice"),
]


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for run in runs:
        lines.append("| " + " | ".join(str(run[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    logs = Path(tempfile.mkdtemp(prefix="hlgw-bench-overlap-"))
    config = SimConfig(seed=args.seed, tick=0.05, track_rest_queries=True, history=0)
    plan: list[tuple[int, str | None]] = [(1, None), (args.per_wallet, None)]
    if args.before_src:
        plan.append((args.per_wallet, args.before_src))
    out = []
    with P.Procs(logs).session() as procs, P.own_redis(procs) as (redis_url, _):
        for _ in range(args.rounds):
            for per_wallet, src in plan:
                sim = Simulator(config)
                await sim.start("127.0.0.1", 0)
                try:
                    outcome = await scenario(sim, redis_url, logs, args.wallets, per_wallet, src)
                finally:
                    await sim.stop()
                P.flush_redis(redis_url)
                out.append(outcome)
                print(table([outcome]).splitlines()[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overlap", description=__doc__)
    parser.add_argument("--wallets", type=int, default=10, help="wallets (<= 20: WebSockets)")
    parser.add_argument("--per-wallet", type=int, default=2, choices=range(2, len(USERS) + 1))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--before-src", help="another checkout's src directory to compare")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    started, load = time.time(), os.getloadavg()
    runs = asyncio.run(run(args))
    end_load = os.getloadavg()
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "results.json").write_text(json.dumps(runs, indent=2))
    command = "python -m bench.overlap " + " ".join(argv if argv is not None else sys.argv[1:])
    body = "\n".join(
        [
            f"### Graceful moves of overlapping topics (`{command.strip()}`)",
            "",
            f"machine: {machine()}; load average {load[0]:.2f} at the start, {end_load[0]:.2f} "
            f"at the end; {(time.time() - started) / 60:.0f} min. Two nodes on a redis-server of "
            "the run's own, each from its own 127.0.0.x address; the second stopped (SIGTERM), "
            "its topics move to the first (bench/overlap/run.py).",
            "",
            table(runs),
        ]
    )
    print(body)
    if not args.no_docs:
        write_section(command.strip(), body)
    return 1 if any(r["lost"] or r["duplicated"] for r in runs) else 0

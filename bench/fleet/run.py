"""`python -m bench.fleet`: a fleet that adds Hyperliquid capacity, measured.

Each node is `hlgateway serve --broker redis://...` (a redis-server of the
benchmark's own) leaving from its own address, `--upstream-source-address
127.0.0.{2,3,...}`, on the simulator (in this process, on 127.0.0.1), which
counts Hyperliquid's per-IP limits per client address: so each node has an
IP's budget, 10 wallets on WebSocket user streams and 1200 REST weight a
minute. One client on the first node subscribes `user_fills` (with `--channels
all` also `user_orders` and `account_updates`) for N wallets, one topic each:
every wallet is demanded through that one node.

The capacity runs (`--nodes 1 3 5`, `--wallets 10 50 100`): once the placement
has settled, for `--window` seconds, the wallets on WebSockets and polled (per
node, from /health), each fill's latency (its receipt by the client minus its
time on the exchange's clock, the simulator's) p50/p99 per class (a wallet
on a WebSocket user stream, or polled), the REST weight each address spent
per minute (the simulator's count) against its budget, and the wallets
refused (UPSTREAM_UNAVAILABLE: more than the fleet can poll within the
accepted latency).

The handover run (`--handover`): 3 nodes and 40 wallets; a node is killed
(SIGKILL) and, later, a new one with another address joins; the time until
the placement has settled again each time, and every fill of every wallet,
compared with the simulator's ledger: none lost, none delivered twice.

Results: bench/fleet/build/results.json, Markdown tables on stdout and in
docs/benchmarks.md (a section per command, replaced by the next run of it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.fanout import procs as P
from bench.table import machine, write_section
from hlgateway.auth import issue_token
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "bench" / "fleet" / "build"
SECRET = "bench-fleet-" + "s" * 24
SETTLE_TIMEOUT = 90.0
CHANNELS = {"fills": ("user_fills",), "all": ("user_fills", "user_orders", "account_updates")}


def wallet(n: int) -> str:
    return f"0x{n:04x}" + "f1ee7" * 7 + "0"


def address(index: int) -> str:
    return f"127.0.0.{2 + index}"


class Node:
    """One `hlgateway serve --broker` process leaving from its own address."""

    def __init__(self, index: int, sim: Simulator, redis_url: str, logs: Path) -> None:
        self.index = index
        self.name = f"n{index}"
        self.address = address(index)
        self.port = 0
        self._sim = sim
        self._redis = redis_url
        self._log = logs / f"{self.name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.port = P.free_port()
        env = {
            **os.environ,
            "JWT_SECRET": SECRET,
            "HLGATEWAY_NODE_NAME": self.name,
            "HLGATEWAY_LOG_LEVEL": "INFO",
            # The client asks for more wallets than the fleet can take on purpose:
            # every refusal is an error reply, which would close it after 10.
            "HLGATEWAY_ERROR_LIMIT": "1000",
        }
        with self._log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hlgateway",
                "serve",
                "--port",
                str(self.port),
                "--upstream",
                self._sim.ws_url,
                "--broker",
                self._redis,
                "--upstream-source-address",
                self.address,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                state = await self.health(session)
                if state["upstream"]["marketsLoaded"]:
                    return
            if time.monotonic() > deadline or not self.alive:
                raise RuntimeError(f"node {self.name} did not start: see {self._log}")
            await asyncio.sleep(0.1)

    async def health(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.http}/health") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()


@dataclass
class Receipts:
    """What the client got: each fill's receipt time, and every reply."""

    fills: list[tuple[str, int, float, int]] = field(default_factory=list)  # wallet, tid, at, ts
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def counts(self) -> dict[str, Counter[int]]:
        out: dict[str, Counter[int]] = defaultdict(Counter)
        for w, tid, _, _ in self.fills:
            out[w][tid] += 1
        return out


class Connection:
    """An admin's WebSocket client on one node, handing each message it is sent, with
    its receipt time (ms), to `received` (bench.fleet's client, bench.overlap's)."""

    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        self._session = session
        self._node = node
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        token = issue_token(SECRET, "bench", role="admin", ttl_seconds=3600)
        self._ws = await self._session.ws_connect(
            f"ws://127.0.0.1:{self._node.port}/ws?token={token}", max_msg_size=0
        )
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.time() * 1000
            self.received(json.loads(msg.data), now)

    def received(self, body: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._ws is not None:
            await self._ws.close()


class Client(Connection):
    """One WebSocket client on the first node, reading everything it is sent."""

    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        super().__init__(session, node)
        self.got = Receipts()

    def received(self, body: dict[str, Any], now: float) -> None:
        if body.get("type") == "data" and body.get("channel") == "user_fills":
            for fill in body["data"]["fills"]:
                self.got.fills.append((fill["wallet"], fill["id"], now, fill["timestamp"]))
        elif "id" in body:
            self.got.replies[body["id"]] = body

    async def subscribe(self, wallets: list[str], channels: tuple[str, ...]) -> list[str]:
        """Subscribe every channel of each wallet; the wallets refused (any channel)."""
        assert self._ws is not None
        ids: dict[str, str] = {}
        for w in wallets:
            for channel in channels:
                rid = f"{channel}:{w}"
                ids[rid] = w
                params = {"userId": f"u{w[2:8]}", "wallet": w}
                await self._ws.send_json(
                    {"type": "subscribe", "channel": channel, "params": params, "id": rid}
                )
                # The gateway allows 20 messages a second per connection (a burst of 100).
                await asyncio.sleep(0.06)
        await eventually(lambda: all(rid in self.got.replies for rid in ids), 60)
        return sorted({w for rid, w in ids.items() if self.got.replies[rid].get("type") == "error"})


async def fleet_view(session: aiohttp.ClientSession, nodes: list[Node]) -> dict[str, Any]:
    out = {}
    for node in nodes:
        if node.alive:
            with contextlib.suppress(aiohttp.ClientError):
                out[node.name] = (await node.health(session))["upstream"]["wallets"]
    return out


async def settle(
    session: aiohttp.ClientSession, nodes: list[Node], wallets: int, steady: float = 3.0
) -> tuple[dict[str, Any], float]:
    """Until every wallet is served and the split between WebSockets and polling
    has not changed for `steady` seconds; the nodes' view, and when (monotonic)
    it last changed."""
    started = time.monotonic()
    last: tuple[int, int] | None = None
    since = started
    while True:
        view = await fleet_view(session, nodes)
        split = (
            sum(v["websocket"] for v in view.values()),
            sum(v["restPolled"] for v in view.values()),
        )
        now = time.monotonic()
        if split != last:
            last, since = split, now
        elif sum(split) == wallets and now - since >= steady:
            return view, since
        if now - started > SETTLE_TIMEOUT:
            raise TimeoutError(f"not settled: {split} of {wallets} wallets; {view}")
        await asyncio.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ws_wallets(sim: Simulator) -> set[str]:
    return {s["user"] for link in sim.links() for s in link["subscriptions"] if s.get("user")}


async def capacity_run(
    sim: Simulator,
    redis_url: str,
    count: int,
    wallets: int,
    channels: tuple[str, ...],
    window: float,
    logs: Path,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        nodes = [Node(i, sim, redis_url, logs) for i in range(count)]
        await asyncio.gather(*(node.start(session) for node in nodes))
        client = Client(session, nodes[0])
        try:
            await _formed(session, nodes)
            await client.connect()
            demanded = [wallet(n) for n in range(1, wallets + 1)]
            asked = time.monotonic()
            refused = await client.subscribe(demanded, channels)
            served = len(demanded) - len(refused)
            view, settled_at = await settle(session, nodes, served)
            took = settled_at - asked
            # Wallets placed together are first polled one after another over one
            # interval, and the WebSocket wallets' first recoveries take REST weight
            # for a minute: measure from the second round after that, the steady state.
            intervals = [v["pollIntervalSeconds"] or 0 for v in view.values() if v["restPolled"]]
            if intervals:
                await asyncio.sleep(60 + max(intervals))
            on_ws = ws_wallets(sim)
            before = {a: sim.rest_usage().get(a, {}).get("total", 0) for a in _addresses(nodes)}
            start_ms = time.time() * 1000
            await asyncio.sleep(window)
            end_ms = time.time() * 1000
            usage = sim.rest_usage()
            view = await fleet_view(session, nodes)
            latency: dict[str, list[float]] = {"websocket": [], "polled": []}
            for w, _, at, ts in client.got.fills:
                if start_ms <= at <= end_ms and w not in refused:
                    latency["websocket" if w in on_ws else "polled"].append(at - ts)
            per_node = []
            for node in nodes:
                spent = usage.get(node.address, {}).get("total", 0) - before[node.address]
                state = view.get(node.name, {})
                per_node.append(
                    {
                        "node": node.name,
                        "address": node.address,
                        "websocket": state.get("websocket"),
                        "polled": state.get("restPolled"),
                        "pollInterval": state.get("pollIntervalSeconds"),
                        "restWeightPerMinute": round(spent * 60 / window),
                        "restRefused": usage.get(node.address, {}).get("refused", 0),
                    }
                )
            return {
                "nodes": count,
                "wallets": wallets,
                "channels": list(channels),
                "refused": len(refused),
                "settleSeconds": round(took, 1),
                "websocket": sum(n["websocket"] or 0 for n in per_node),
                "polled": sum(n["polled"] or 0 for n in per_node),
                "latency": {
                    cls: {
                        "fills": len(values),
                        "p50": round(percentile(values, 0.5)) if values else None,
                        "p99": round(percentile(values, 0.99)) if values else None,
                    }
                    for cls, values in latency.items()
                },
                "perNode": per_node,
            }
        finally:
            await client.close()
            await asyncio.gather(*(node.stop() for node in nodes))


def _addresses(nodes: list[Node]) -> list[str]:
    return [node.address for node in nodes]


async def _formed(session: aiohttp.ClientSession, nodes: list[Node]) -> None:
    """Until the placement counts every node (their capacity is in Redis)."""
    deadline = time.monotonic() + 30
    while True:
        state = await nodes[0].health(session)
        fleet = state["leases"].get("fleet") or {}
        if fleet.get("nodes") == sum(1 for n in nodes if n.alive):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet did not form: {fleet}")
        await asyncio.sleep(0.1)


async def handover_run(
    sim: Simulator, redis_url: str, channels: tuple[str, ...], logs: Path
) -> dict[str, Any]:
    """3 nodes, 40 wallets; a node killed, later one added: every fill once."""
    async with aiohttp.ClientSession() as session:
        nodes = [Node(i, sim, redis_url, logs) for i in range(3)]
        await asyncio.gather(*(node.start(session) for node in nodes))
        client = Client(session, nodes[0])
        try:
            await _formed(session, nodes)
            await client.connect()
            demanded = [wallet(n) for n in range(1001, 1041)]
            refused = await client.subscribe(demanded, channels)
            assert not refused, f"refused: {refused}"
            before, _ = await settle(session, nodes, 40)
            await asyncio.sleep(15)
            await nodes[1].kill()
            killed = time.monotonic()
            after_kill, settled_at = await settle(session, nodes, 40, steady=2.0)
            kill_settle = settled_at - killed
            await asyncio.sleep(15)
            joined = Node(3, sim, redis_url, logs)
            nodes.append(joined)
            added = time.monotonic()
            await joined.start(session)
            after_join, settled_at = await settle(session, nodes, 40, steady=5.0)
            join_settle = settled_at - added
            cut = time.time() * 1000
            await eventually(
                lambda: all(any(f["time"] > cut for f in sim.ledger(w)["fills"]) for w in demanded),
                60,
            )
            lost, twice, total = 0, 0, 0
            await asyncio.sleep(2)  # the last fills before the cut reach the client
            for _ in range(30):
                counts = client.got.counts()
                lost, twice, total = 0, 0, 0
                for w in demanded:
                    ledger = sim.ledger(w)
                    expected = {
                        f["tid"]
                        for f in ledger["fills"]
                        if ledger["trackedSince"] < f["time"] <= cut
                    }
                    got = counts.get(w, Counter())
                    total += len(expected)
                    lost += len(expected - set(got))
                    twice += sum(1 for tid in expected if got[tid] > 1)
                if not lost:
                    break
                await asyncio.sleep(1)
            return {
                "nodes": "3, one killed, one added",
                "wallets": 40,
                "before": _split(before),
                "afterKill": _split(after_kill),
                "killSettleSeconds": round(kill_settle, 1),
                "afterJoin": _split(after_join),
                "joinSettleSeconds": round(max(0.0, join_settle), 1),
                "fills": total,
                "lost": lost,
                "duplicated": twice,
            }
        finally:
            await client.close()
            await asyncio.gather(*(node.stop() for node in nodes))


def _split(view: dict[str, Any]) -> str:
    return ", ".join(f"{n}: {v['websocket']}+{v['restPolled']}" for n, v in sorted(view.items()))


def capacity_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes | wallets | refused | on WebSocket | polled | poll interval s (per node) "
        "| WS fill latency p50 / p99 ms | polled fill latency p50 / p99 ms "
        "| REST weight/min per node (of 1200) |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for run in runs:
        ws, polled = run["latency"]["websocket"], run["latency"]["polled"]
        intervals = " / ".join(
            "-" if not n["polled"] else f"{n['pollInterval']}" for n in run["perNode"]
        )
        weights = " / ".join(str(n["restWeightPerMinute"]) for n in run["perNode"])
        lines.append(
            f"| {run['nodes']} | {run['wallets']} | {run['refused']} | {run['websocket']} "
            f"| {run['polled']} | {intervals} | {_lat(ws)} | {_lat(polled)} | {weights} |"
        )
    return "\n".join(lines)


def _lat(stats: dict[str, Any]) -> str:
    if not stats["fills"]:
        return "-"
    return f"{stats['p50']} / {stats['p99']} ({stats['fills']} fills)"


def handover_table(run: dict[str, Any]) -> str:
    return "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            *(f"| {key} | {value} |" for key, value in run.items()),
        ]
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    channels = CHANNELS[args.channels]
    logs = Path(tempfile.mkdtemp(prefix="hlgw-bench-fleet-"))
    config = SimConfig(seed=args.seed, tick=0.05, track_rest_queries=True, history=0)
    results: dict[str, Any] = {"capacity": [], "handover": None, "logs": str(logs)}
    with P.Procs(logs).session() as procs, P.own_redis(procs) as (redis_url, _):
        for count in args.nodes:
            for wallets in args.wallets:
                sim = Simulator(config)
                await sim.start("127.0.0.1", 0)
                try:
                    outcome = await capacity_run(
                        sim, redis_url, count, wallets, channels, args.window, logs
                    )
                finally:
                    await sim.stop()
                P.flush_redis(redis_url)
                results["capacity"].append(outcome)
                print(capacity_table([outcome]).splitlines()[-1], flush=True)
        if args.handover:
            sim = Simulator(config)
            await sim.start("127.0.0.1", 0)
            try:
                results["handover"] = await handover_run(sim, redis_url, channels, logs)
            finally:
                await sim.stop()
            print(handover_table(results["handover"]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--wallets", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--channels", choices=sorted(CHANNELS), default="fills")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per run")
    parser.add_argument("--handover", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    started = time.time()
    load = os.getloadavg()
    results = asyncio.run(run(args))
    results["machine"] = machine()
    results["load"] = [round(x, 2) for x in load] + [round(x, 2) for x in os.getloadavg()]
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "results.json").write_text(json.dumps(results, indent=2))
    command = "python -m bench.fleet " + " ".join(argv if argv is not None else sys.argv[1:])
    body = docs_section(command.strip(), results, time.time() - started)
    print(body)
    if not args.no_docs:
        write_section(command.strip(), body)
    handover = results["handover"]
    return 1 if handover and (handover["lost"] or handover["duplicated"]) else 0


def docs_section(command: str, results: dict[str, Any], seconds: float) -> str:
    load = results["load"]
    parts = [
        f"### Fleet capacity (`{command}`)",
        "",
        f"machine: {results['machine']}; load average {load[0]} at the start, "
        f"{load[3]} at the end; {seconds / 60:.0f} min. Each node leaves from its own "
        "127.0.0.x address (the simulator's per-IP limits: 10 users on WebSockets, 1200 "
        "REST weight a minute each); every wallet demanded through the first node.",
        "",
        capacity_table(results["capacity"]),
    ]
    if results["handover"]:
        parts += [
            "",
            "Handover (node killed, node added):",
            "",
            handover_table(results["handover"]),
        ]
    return "\n".join(parts)

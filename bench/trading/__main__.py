"""`python -m bench.trading [--posts 1000] [--clients 1000] [--crowd python|c|both]
[--gateway-ref REF] [--pin] [--write]`

A post's round trip through the gateway beside the same post straight to the
simulator, while market-data clients take prices and a book from the same
gateway. Three processes besides this one: the simulator, `hlgateway
serve` on it, and the crowd of data clients (bench/trading/crowds.py: the
Python one, aiohttp parsing every message, or `--crowd c`, the fan-out
benchmark's C load generator, which counts frames without parsing). This
process signs orders with the simulator's funded account (the SDK's signing
functions, before each timed request) and alternates the two paths, one post
each in turn, so both see the same machine at the same moment: a resting order
far from the market, then its cancel. Sequential: one post in flight at a time.

Everything runs from one IP, so Hyperliquid's per-IP message limit (2000 a
minute, which both the simulator and the gateway enforce) is raised on both
sides, as are the gateway's post and message rates: the run is about latency,
not flow control (tests/trading covers the limits). Prints a Markdown report;
`--write` puts it into docs/benchmarks.md.

`--gateway-ref REF` measures the gateway of commit REF (`git archive` of its
src/, its C delivery loops built beside it) and the working tree's in one
invocation, in rounds that alternate which goes first, each round a fresh
simulator, gateway and crowd: a before/after on the same machine at the same
hour. `--crowd-nice N` runs the data clients at that niceness: they stand in
for 1,000 remote clients, whose parsing would not take this machine's cores
from the processes measured (both settings are reported as they ran).
`--pin` gives the gateway CPU 0 to itself and puts the simulator, the crowd
and this process on CPU 1: in production the exchange and the clients are on
other machines and never take the gateway's core (the report says which
placement ran). `--crowd both` (without `--gateway-ref`) alternates the two crowds in rounds
with the working tree's gateway. The gateway, the simulator and this posting
process are the same in every case; only the stand-in for the remote data
clients changes, and the report says which ran and what its clients received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import eth_account
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)

from bench.table import machine, write_section
from bench.trading import crowds
from bench.trading.child import Child
from hlgateway.auth import issue_token

SECRET = "bench-trading-secret-long-enough-for-hs256-keys!!"
LIFTED = 1_000_000  # the per-IP message limit, raised for a run from one IP
ETH = 1


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


class Signer:
    def __init__(self, key: str) -> None:
        self.account = eth_account.Account.from_key(key)
        self.last = 0

    def body(self, action: dict[str, Any]) -> dict[str, Any]:
        self.last = max(self.last + 1, time.time_ns() // 1_000_000)
        signature = sign_l1_action(self.account, action, None, self.last, None, False)
        return {"action": action, "nonce": self.last, "signature": signature}

    @staticmethod
    def place(px: float) -> dict[str, Any]:
        wire = order_request_to_order_wire(
            {
                "coin": "ETH",
                "is_buy": True,
                "sz": 0.01,
                "limit_px": px,
                "order_type": {"limit": {"tif": "Gtc"}},
                "reduce_only": False,
            },
            ETH,
        )
        action: dict[str, Any] = order_wires_to_order_action([wire])
        return action

    @staticmethod
    def cancel(oid: int) -> dict[str, Any]:
        return {"type": "cancel", "cancels": [{"a": ETH, "o": oid}]}


class Direct:
    """Hyperliquid's own WebSocket post, straight to the simulator."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        request = {"type": "action", "payload": body}
        await self.ws.send_str(
            json.dumps({"method": "post", "id": self.next_id, "request": request})
        )
        while True:
            frame = json.loads((await self.ws.receive(timeout=10)).data)
            if frame.get("channel") == "post" and frame["data"]["id"] == self.next_id:
                payload: dict[str, Any] = frame["data"]["response"]["payload"]
                return payload


class Relayed:
    """The gateway's `post`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        rid = f"p{self.next_id}"
        await self.ws.send_str(json.dumps({"type": "post", "id": rid, "request": body}))
        while True:
            message = json.loads((await self.ws.receive(timeout=10)).data)
            if message.get("id") == rid:
                assert message["type"] == "post_result", message
                return {"status": message["status"], "response": message["response"]}


async def timed(
    path: Direct | Relayed, body: dict[str, Any], log: list[list[Any]] | None = None
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = await path.post(body)
    ended = time.perf_counter()
    assert answer["status"] == "ok", answer
    if log is not None:  # bench.trading.trace: (path, request id, sent, answered)
        if isinstance(path, Direct):
            log.append(["direct", path.next_id, started, ended])
        else:
            log.append(["relayed", f"p{path.next_id}", started, ended])
    return (ended - started) * 1000, answer


async def measure(
    sim_ws: str,
    gateway_ws: str,
    token: str,
    key: str,
    posts: int,
    warmup: int,
    log: list[list[Any]] | None = None,
) -> tuple[list[float], list[float]]:
    signer = Signer(key)
    direct_ms: list[float] = []
    relayed_ms: list[float] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            sim_ws.replace("ws://", "http://").replace("/ws", "/info"), json={"type": "allMids"}
        ) as resp:
            px = round(float((await resp.json())["ETH"]) * 0.8, 1)  # rests: never fills
        sim = await session.ws_connect(sim_ws)
        gateway = await session.ws_connect(f"{gateway_ws}?token={token}")
        await gateway.receive(timeout=10)  # welcome
        paths: tuple[Direct | Relayed, ...] = (Direct(sim), Relayed(gateway))
        samples = (direct_ms, relayed_ms)
        for n in range(warmup + posts):
            for path, into in zip(paths, samples, strict=True):
                traced = log if n >= warmup else None
                placed_ms, answer = await timed(path, signer.body(Signer.place(px)), traced)
                oid = answer["response"]["data"]["statuses"][0]["resting"]["oid"]
                canceled_ms, _ = await timed(path, signer.body(Signer.cancel(oid)), traced)
                if n >= warmup:  # the first posts open the gateway's post link
                    into += [placed_ms, canceled_ms]
        await sim.close()
        await gateway.close()
    return direct_ms, relayed_ms


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user + system), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    posts: int,
    clients: int,
    seed: int,
    gateway_src: Path | None = None,
    crowd_nice: int = 0,
    trace: Path | None = None,
    crowd_kind: str = "python",
    pin: bool = False,
) -> dict[str, Any]:
    """One measurement: a fresh simulator, gateway and crowd. With `trace`, the
    gateway and simulator run under bench/trading/trace.py's timestamps, written
    into that directory. With `pin`, the gateway has CPU 0 to itself and the
    others (simulator, crowd, this process) share CPU 1 (PLACEMENT)."""
    from bench.fanout.procs import free_port

    def program(module: str, role: str) -> list[str]:
        cpu = (0 if role == "gateway" else 1) if pin else None
        prefix = crowds.launcher(cpu=cpu)
        if trace is None:
            return [*prefix, sys.executable, "-m", module]
        return [*prefix, sys.executable, "-m", "bench.trading.trace", role]

    logs = Path(tempfile.mkdtemp(prefix="bench-trading-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sim_port, gateway_port = free_port(), free_port()
    gateway_env = {
        **env,
        "JWT_SECRET": SECRET,
        "HLGATEWAY_LOG_LEVEL": "WARNING",
        # One IP's thousand data clients, and the bench's own pace of posts.
        "HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_IP": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_USER": "0",
        "HLGATEWAY_POST_RATE": "0",
        "HLGATEWAY_MESSAGE_RATE": "0",
        "HLGATEWAY_UPSTREAM_MAX_MESSAGES": str(LIFTED),
        "HLGATEWAY_SHUTDOWN_TIMEOUT": "2",
        # Trading, not restarts: in memory, no state directory left behind in the user's.
        "HLGATEWAY_STATE_DIR": "none",
    }
    if gateway_src is not None:  # ahead of the editable install's src/
        gateway_env["PYTHONPATH"] = str(gateway_src)
    if trace is not None:
        env["TRACE_DIR"] = gateway_env["TRACE_DIR"] = str(trace)
    log: list[list[Any]] | None = [] if trace is not None else None
    children: list[Child] = []
    crowd: crowds.PythonCrowd | crowds.CCrowd | None = None
    try:
        sim = Child(
            [
                *program("hlgateway.simulator", "simulator"),
                "--port",
                str(sim_port),
                "--seed",
                str(seed),
                "--max-messages-per-minute",
                str(LIFTED),
            ],
            env,
            logs / "simulator.log",
        )
        children.append(sim)
        key = sim.line(r"key (0x[0-9a-f]{64})").group(1)
        gateway = Child(
            [
                *program("hlgateway", "gateway"),
                "serve",
                "--upstream",
                f"ws://127.0.0.1:{sim_port}/ws",
                "--port",
                str(gateway_port),
            ],
            gateway_env,
            logs / "gateway.log",
        )
        children.append(gateway)
        gateway.line(r"hlgateway is up")
        gateway_ws = f"ws://127.0.0.1:{gateway_port}/ws"
        reader = issue_token(SECRET, "crowd", ttl_seconds=3600)
        crowd = crowds.start(
            crowd_kind,
            gateway_port,
            reader,
            clients,
            crowds.launcher(crowd_nice, 1 if pin else None),
            env,
            logs / "crowd.log",
        )
        ready = crowd.ready()
        trader = issue_token(SECRET, "trader", ttl_seconds=3600, trade=True)
        load_before = os.getloadavg()
        pids = {"gateway": gateway.proc.pid, "crowd": crowd.proc.pid, "simulator": sim.proc.pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        crowd.mark()
        started = time.monotonic()
        mine = os.sched_getaffinity(0)
        if pin:
            os.sched_setaffinity(0, {1})
        try:
            direct_ms, relayed_ms = asyncio.run(
                measure(f"ws://127.0.0.1:{sim_port}/ws", gateway_ws, trader, key, posts, 20, log)
            )
        finally:
            os.sched_setaffinity(0, mine)
        seconds = time.monotonic() - started
        load_after = os.getloadavg()
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        counted = crowd.finish()
    finally:
        if crowd is not None:
            crowd.stop()
        for child in reversed(children):
            child.stop()
    direct, relayed = percentiles(direct_ms), percentiles(relayed_ms)
    return {
        "direct_ms": direct_ms,
        "relayed_ms": relayed_ms,
        "direct": direct,
        "relayed": relayed,
        "samples": len(direct_ms),
        "clients": clients,
        "ready": ready,
        "crowd": crowd_kind,
        "pin": pin,
        "received": counted.received,
        "per_client": counted.per_client,
        "seconds": seconds,
        "load": (load_before, load_after),
        "cpu": cpu,
        "trace": log,
    }


def report(command: str, result: dict[str, Any]) -> str:
    direct, relayed = result["direct"], result["relayed"]
    lines = [
        "## Order entry: post round trip through the gateway vs straight to the simulator",
        "",
        f"machine: {machine()}",
        f"command: `{command}`",
        f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in result['load'][0])}; "
        f"after: {', '.join(f'{x:.2f}' for x in result['load'][1])}",
        f"market data meanwhile: {result['ready']}/{result['clients']} clients on prices "
        f"(BTC, ETH) and the BTC book, {result['received']:,} data messages received during the "
        f"{result['seconds']:.1f} s run ({fed(result)} data messages per client, min/median/max)",
        f"data clients: {crowds.NAMES[result['crowd']]}",
        f"placement: {PLACEMENT[result['pin']]}",
        f"CPU used meanwhile: {cpu_line(result)}",
        "",
        f"{result['samples']} posts each way (half orders resting far from the market, half "
        "their cancels), one at a time, the two paths taking turns:",
        "",
        "| ms | p50 | p90 | p99 | max | mean |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in (
        ("straight to the simulator (WS post)", direct),
        ("through the gateway", relayed),
    ):
        lines.append(
            f"| {name} | {row['p50']:.2f} | {row['p90']:.2f} | {row['p99']:.2f} | "
            f"{row['max']:.2f} | {row['mean']:.2f} |"
        )
    lines.append(
        f"| added by the gateway | {relayed['p50'] - direct['p50']:+.2f} | "
        f"{relayed['p90'] - direct['p90']:+.2f} | {relayed['p99'] - direct['p99']:+.2f} | | "
        f"{relayed['mean'] - direct['mean']:+.2f} |"
    )
    target = relayed["p99"] - direct["p99"] < 1.0
    lines += [
        "",
        f"Target (under 1 ms added at p99): {'met' if target else 'not met'} in this run.",
        "",
        NOTE,
    ]
    return "\n".join(lines)


PLACEMENT = {
    False: "every process on either CPU, as the kernel schedules them",
    True: "the gateway alone on CPU 0; the simulator, the data clients and this posting "
    "process on CPU 1 (`taskset`): the parties that stand in for remote ones never take the "
    "gateway's core, as on a host of its own",
}

NOTE = (
    "Both paths share the machine's cores with the simulator, the gateway and the data "
    "clients' process (CPU each used, above). The gateway writes a market tick to its data "
    "clients a slice of them per loop turn (a smaller slice while a post is in flight), and "
    "a post's answer ahead of any data queued for its client; what the relayed path still "
    "adds at p99 is mostly waiting for a core (two more process wake-ups than the direct "
    "path) on a shared machine: see docs/benchmarks.md, 'Order entry: where the p99 goes'. "
    "The data clients stand in for remote ones: the Python crowd parses every message on "
    "this machine's cores, the C crowd (loadgen.c) only counts frames; the gateway's work "
    "is the same (the messages each client received, above). The p99 of a few thousand "
    "samples moves with the machine's load (recorded above)."
)


def fed(result: dict[str, Any]) -> str:
    """What each data client received during the measurement: min/median/max."""
    return "/".join(str(n) for n in result["per_client"])


def cpu_line(result: dict[str, Any]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["cpu"].items())


def compare(command: str, labels: tuple[str, str], rounds: list[tuple[str, dict[str, Any]]]) -> str:
    """The before/after (or crowd beside crowd) report: each label's samples pooled over
    its rounds."""
    first = rounds[0][1]
    ran = sorted({r["crowd"] for _, r in rounds})
    lines = [
        "## Order entry: post round trip, before/after, through the gateway vs straight to the "
        "simulator",
        "",
        f"machine: {machine()}",
        f"command: `{command}`",
        f"market data meanwhile: {first['clients']} clients on prices (BTC, ETH) and the BTC "
        "book, from a fresh simulator, gateway and crowd each round",
        "data clients: " + "; ".join(crowds.NAMES[kind] for kind in ran),
        f"placement: {PLACEMENT[first['pin']]}",
        "",
        "| round | run | crowd | load before | load after | clients ready | data messages | "
        "per client min/median/max | seconds | CPU seconds meanwhile | direct p99 | "
        "through p99 | added p50 | added p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, (label, result) in enumerate(rounds):
        direct, relayed = result["direct"], result["relayed"]
        lines.append(
            f"| {n // 2 + 1} | {label} | {result['crowd']} | "
            f"{', '.join(f'{x:.2f}' for x in result['load'][0])} | "
            f"{', '.join(f'{x:.2f}' for x in result['load'][1])} | {result['ready']} | "
            f"{result['received']:,} | {fed(result)} | {result['seconds']:.1f} | "
            f"{cpu_line(result)} | "
            f"{direct['p99']:.2f} | {relayed['p99']:.2f} | "
            f"{relayed['p50'] - direct['p50']:+.2f} | {relayed['p99'] - direct['p99']:+.2f} |"
        )
    lines += [
        "",
        "Pooled over the rounds (ms; each post alternates with one straight to the simulator):",
        "",
        "| run | posts | direct p50 | direct p99 | through p50 | through p99 | through max "
        "| added p50 | added p90 | added p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        mine = [r for name, r in rounds if name == label]
        direct = percentiles([x for r in mine for x in r["direct_ms"]])
        relayed = percentiles([x for r in mine for x in r["relayed_ms"]])
        lines.append(
            f"| {label} | {sum(r['samples'] for r in mine)} | {direct['p50']:.2f} | "
            f"{direct['p99']:.2f} | {relayed['p50']:.2f} | {relayed['p99']:.2f} | "
            f"{relayed['max']:.2f} | {relayed['p50'] - direct['p50']:+.2f} | "
            f"{relayed['p90'] - direct['p90']:+.2f} | {relayed['p99'] - direct['p99']:+.2f} |"
        )
    lines += ["", NOTE]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trading")
    parser.add_argument("--posts", type=int, default=1000, help="order + cancel pairs per path")
    parser.add_argument("--clients", type=int, default=1000, help="market-data clients")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--gateway-ref", help="also measure this commit's gateway (before/after, in rounds)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --gateway-ref: rounds of each")
    parser.add_argument(
        "--crowd-nice", type=int, default=0, help="the data clients' niceness (0: as this process)"
    )
    parser.add_argument(
        "--crowd",
        choices=(*crowds.CROWDS, "both"),
        default="python",
        help="the data clients: Python (aiohttp), C (loadgen.c), or both in alternating rounds",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the gateway alone on CPU 0, the simulator, crowd and poster on CPU 1",
    )
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs two CPUs")
    if not 1 <= args.posts <= 5000:
        parser.error("--posts: 1..5000")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds: 1..10")
    if args.crowd == "both" and args.gateway_ref is not None:
        parser.error("--crowd both compares crowds on one gateway: not with --gateway-ref")
    command = (
        f"python -m bench.trading --posts {args.posts} --clients {args.clients} --seed {args.seed}"
    )
    if args.crowd != "python":
        command += f" --crowd {args.crowd}"
    if args.crowd_nice:
        command += f" --crowd-nice {args.crowd_nice}"
    if args.pin:
        command += " --pin"
    if args.gateway_ref is None and args.crowd != "both":
        result = run(
            args.posts,
            args.clients,
            args.seed,
            crowd_nice=args.crowd_nice,
            crowd_kind=args.crowd,
            pin=args.pin,
        )
        text = report(command, result)
    else:
        from bench.fanout.run import build_delivery, export_ref, git_commit

        # Each label: (the gateway's source, None for the working tree's; the crowd).
        variants: dict[str, tuple[Path | None, str]]
        if args.gateway_ref is not None:
            command += f" --gateway-ref {args.gateway_ref} --rounds {args.rounds}"
            src, sha = export_ref(args.gateway_ref)
            build_delivery(src)
            variants = {
                f"{sha} (before)": (src, args.crowd),
                f"{git_commit()} (after)": (None, args.crowd),
            }
        else:
            command += f" --rounds {args.rounds}"
            variants = {f"{git_commit()}, {kind} crowd": (None, kind) for kind in crowds.CROWDS}
        first, second = variants
        rounds: list[tuple[str, dict[str, Any]]] = []
        each = max(1, args.posts // args.rounds)
        for n in range(args.rounds):
            order = (first, second) if n % 2 == 0 else (second, first)
            for label in order:
                print(f"round {n + 1}: {label}", file=sys.stderr, flush=True)
                source, kind = variants[label]
                result = run(
                    each,
                    args.clients,
                    args.seed,
                    source,
                    args.crowd_nice,
                    crowd_kind=kind,
                    pin=args.pin,
                )
                rounds.append((label, result))
        text = compare(command, (first, second), rounds)
    print(text)
    if args.write:
        print(f"written to {write_section(command, text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.scaleout`: the fan-out scenarios on four topologies, side by side.

Topologies (each with the same tick pump and load generator as bench/fanout,
on 127.0.0.1; a redis-server of the benchmark's own, never the machine's):

- `memory-1`: one gateway process, in-memory engine (the default `make serve`);
- `redis-1`:  one gateway with `--broker`: every message goes through Redis
  (Lua publish, PUB/SUB) and back to the same node;
- `redis-2`:  two gateways on one Redis; node A holds the upstream lease (a
  probe client made it want the stream first), every load client is on node B:
  each message crosses nodes (A -> Redis -> B);
- `workers-2`: `hlgateway serve --workers 2 --broker ...`: two workers on one
  port (SO_REUSEPORT), the clients spread over them by the kernel, placed by
  the scheduler;
- `workers-2-pinned`: the same with worker i pinned to core i (the load
  generator, the pump and Redis stay on core 1);
- `durable-1`: one gateway process with its state on disk (the default engine,
  a fresh state directory each run), beside `memory-1` (bench.durable compares them).

Measured per run: delivered messages/s, latency (load generator's clock minus
the pump's send time) p50/p99, the first receipt of each tick p50/p99 (the way
through the server, across nodes for redis-2, without the fan-out's spread),
broadcast completion p99, and the CPU of the gateway processes and of
redis-server over the measured window; from these the CPU seconds per delivered
message. With `--rounds N` the topologies alternate N times per scenario, and
the cross-node hop (redis-2 minus memory-1 of the same round) is summed up per
round and as the median of the rounds. Results:
bench/scaleout/build/results.json and Markdown tables on stdout (copied into
docs/scaling.md by hand).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket
from bench.fanout import procs as P
from bench.fanout.run import (
    CLIENT_CORE,
    SERVER_CORE,
    Context,
    Display,
    _follow,
    _http_json,
    build_loadgen,
    issue_bench_token,
    loadgen_argv,
    machine,
    metrics,
    pump_mode,
    pump_process,
    summary_line,
    wait_gateway,
)
from bench.fanout.run import gateway_env as fanout_gateway_env
from bench.fanout.scenarios import Scenario
from bench.fanout.steering import describe, steer_receives
from bench.table import write_section

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "bench" / "scaleout" / "build"
TOPOLOGIES = ("memory-1", "redis-1", "redis-2", "workers-2", "workers-2-pinned", "durable-1")
DEFAULT_TOPOLOGIES = ("memory-1", "redis-1", "redis-2", "workers-2")


def plan(quick: bool) -> list[Scenario]:
    out = [
        Scenario(
            "hop",
            "10 ticks/s, one client (the cross-node hop alone)",
            1,
            "rate",
            rate=10.0,
            duration=5.0 if quick else 30.0,
        ),
        Scenario(
            "rate-10",
            "10 ticks/s (cross-node hop latency)",
            1000,
            "rate",
            rate=10.0,
            # 300 ticks: a p99 over ticks is then the 3rd worst, not the worst.
            duration=5.0 if quick else 30.0,
        ),
        Scenario(
            "saturation",
            "Saturation (32 ticks in flight)",
            1000,
            "window",
            duration=3.0 if quick else 5.0,
        ),
    ]
    if not quick:
        out.append(
            Scenario(
                "rate-1",
                "1 tick/s, 10k clients (broadcast completion)",
                10_000,
                "rate",
                rate=1.0,
                duration=20.0,
            )
        )
    return out


@dataclass
class Topology:
    name: str
    port: int  # where the load clients connect
    pids: dict[str, int]  # gateway processes (and redis-server) whose CPU is measured
    procs: list[P.Proc] = field(default_factory=list)
    probe: websocket.WebSocket | None = None
    state_dir: str | None = None  # a durable gateway's, removed when it stops


def gateway_env(scenario: Scenario, broker: str | None) -> dict[str, str]:
    env = fanout_gateway_env(scenario)
    if broker is not None:
        env["HLGATEWAY_BROKER"] = broker
    return env


def start_gateway(
    ctx: Context,
    tag: str,
    scenario: Scenario,
    broker: str | None,
    core: int | None,
    port: int | None = None,
    extra: list[str] | None = None,
) -> tuple[P.Proc, int]:
    port = port or P.free_port()
    argv = [sys.executable, "-c", "import sys; from hlgateway.cli import main; sys.exit(main())"]
    argv += ["serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--upstream", f"ws://127.0.0.1:{ctx.pump_port}/ws", *(extra or [])]
    proc = ctx.procs.start(tag, P.pinned(argv, core), env=gateway_env(scenario, broker))
    proc.wait_line("hlgateway is up", timeout=60)
    wait_gateway(port, 1)
    return proc, port


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in out.stdout.split()]


def start_topology(
    ctx: Context, name: str, scenario: Scenario, redis: tuple[str, int], tag: str
) -> Topology:
    url, redis_pid = redis
    if name == "memory-1":
        proc, port = start_gateway(ctx, f"{tag}-gw", scenario, None, SERVER_CORE)
        return Topology(name, port, {"gateway": proc.pid}, [proc])
    if name == "durable-1":
        state = tempfile.mkdtemp(prefix="hlgw-bench-state-")
        extra = ["--state-dir", state]
        try:
            proc, port = start_gateway(ctx, f"{tag}-gw", scenario, None, SERVER_CORE, extra=extra)
        except BaseException:
            shutil.rmtree(state, ignore_errors=True)
            raise
        return Topology(name, port, {"gateway": proc.pid}, [proc], state_dir=state)
    P.flush_redis(url)
    if name == "redis-1":
        proc, port = start_gateway(ctx, f"{tag}-gw", scenario, url, SERVER_CORE)
        return Topology(name, port, {"gateway": proc.pid, "redis": redis_pid}, [proc])
    if name == "redis-2":
        # Node A (the upstream holder, light work) shares the client core; node B,
        # which writes to every client, has the server core to itself.
        a, a_port = start_gateway(ctx, f"{tag}-a", scenario, url, CLIENT_CORE)
        probe = websocket.create_connection(
            f"ws://127.0.0.1:{a_port}/ws?token={ctx.token}", timeout=10
        )
        probe.send(scenario.subscribe)
        deadline = time.monotonic() + 20
        while _http_json(f"http://127.0.0.1:{a_port}/health")["leases"]["held"] < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("node A did not take the upstream lease")
            time.sleep(0.1)
        b, b_port = start_gateway(ctx, f"{tag}-b", scenario, url, SERVER_CORE)
        pids = {"gateway": b.pid, "gateway_a": a.pid, "redis": redis_pid}
        return Topology(name, b_port, pids, [a, b], probe)
    if name in ("workers-2", "workers-2-pinned"):
        port = P.free_port()
        proc, _ = start_gateway(
            ctx, f"{tag}-w", scenario, url, None, port, ["--workers", "2", "--broker", url]
        )
        deadline = time.monotonic() + 20
        workers = worker_pids(proc.pid)
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = worker_pids(proc.pid)
        time.sleep(2.0)  # the second worker's market list
        if name == "workers-2-pinned":
            for core, pid in enumerate(sorted(workers)):
                os.sched_setaffinity(pid, {core % 2})
        pids = {f"gateway_w{i}": pid for i, pid in enumerate(workers)}
        pids["redis"] = redis_pid
        return Topology(name, port, pids, [proc])
    raise ValueError(name)


def stop_topology(ctx: Context, topology: Topology) -> None:
    if topology.probe is not None:
        with contextlib.suppress(Exception):
            topology.probe.close()
    for proc in reversed(topology.procs):
        ctx.procs.stop(proc, timeout=10)
    if topology.state_dir is not None:
        shutil.rmtree(topology.state_dir, ignore_errors=True)


def run_once(ctx: Context, scenario: Scenario, name: str, redis: tuple[str, int]) -> dict[str, Any]:
    tag = f"{scenario.key}-{scenario.clients}-{name}"
    label = f"{name} {scenario.id}"
    ctx.display.begin(label)
    topology = start_topology(ctx, name, scenario, redis, tag)
    lg: P.Proc | None = None
    try:
        time.sleep(1.0)
        lg = ctx.procs.start(
            f"{tag}-loadgen",
            loadgen_argv(ctx, scenario, topology.port),
            watch="stderr",
            stdin=True,
        )
        connect_timeout = 30 + scenario.clients / 250
        ready = _follow(ctx, lg, lambda e: e.get("event") == "ready", connect_timeout + 30, label)
        assert ready is not None and lg.popen.stdin is not None
        cpu = P.CpuWindow({**topology.pids, "pump": ctx.pump_pid})
        if scenario.mode == "window":
            pump_mode(ctx, {"mode": "window", "window": scenario.window})
        else:
            pump_mode(ctx, {"mode": "rate", "rate": scenario.rate})
        lg.popen.stdin.write(b"go\n")
        lg.popen.stdin.flush()
        _follow(ctx, lg, None, scenario.warmup, label)
        cpu.begin()
        _follow(ctx, lg, None, scenario.duration + 60, label)
        pump = pump_mode(ctx, {"mode": "idle"})
        out, _ = lg.popen.communicate(timeout=60)
        report = json.loads(out.decode().strip().splitlines()[-1])
        measured = report["phases"].get("measure", {})
        used = cpu.end({"loadgen": measured.get("cpu_util", 0.0)})
        gateway_cpu = sum(v for k, v in used.items() if k.startswith("gateway"))
        result: dict[str, Any] = {
            "topology": name,
            "scenario": scenario.id,
            "loadgen": report,
            "pump": pump,
            "cpu": {**used, "server": gateway_cpu},
        }
        m = metrics(scenario, result)
        rate = max(m["msgs_per_s"], 1)
        m["gateway_cpu"] = round(gateway_cpu, 3)
        m["redis_cpu"] = used.get("redis", 0.0)
        m["cpu_us_per_msg"] = round(gateway_cpu / rate * 1e6, 3)
        m["cpu_us_per_msg_with_redis"] = round(
            (gateway_cpu + used.get("redis", 0.0)) / rate * 1e6, 3
        )
        result["metrics"] = m
        ctx.display.done(
            f"{label}: {summary_line(scenario, m)}; "
            f"{m['cpu_us_per_msg']} us CPU/msg (+redis {m['cpu_us_per_msg_with_redis']})"
        )
        return result
    finally:
        with contextlib.suppress(Exception):
            pump_mode(ctx, {"mode": "idle"})
        if lg is not None:
            ctx.procs.stop(lg)
        stop_topology(ctx, topology)


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | topology | delivered msg/s | latency p50 / p99 ms "
        "| first receipt p50 / p99 ms | completion p99 ms "
        "| gateway CPU | redis CPU | CPU us/msg (gateway) | (+redis) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "metrics" not in run:
            lines.append(f"| {run['scenario']} | {run['topology']} | failed: {run['error']} |")
            continue
        m = run["metrics"]
        lines.append(
            f"| {run['scenario']} | {run['topology']} | {m['msgs_per_s']:,} | "
            f"{m['latency_p50_ms']:.2f} / {m['latency_p99_ms']:.2f} | "
            f"{m['first_p50_ms']:.2f} / {m['first_p99_ms']:.2f} | "
            f"{m['completion_p99_ms']:.2f} | "
            f"{m['gateway_cpu']:.2f} | {m['redis_cpu']:.2f} | {m['cpu_us_per_msg']:.2f} | "
            f"{m['cpu_us_per_msg_with_redis']:.2f} |"
        )
    return "\n".join(lines)


HOP_KEYS = ("latency_p50_ms", "latency_p99_ms", "first_p50_ms", "first_p99_ms")


HOP_SCENARIOS = ("hop@1", "rate-10@1000")


def hop(runs: list[dict[str, Any]], scenario: str) -> dict[str, Any] | None:
    """What crossing nodes adds: redis-2 minus memory-1 of the same round."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if run["scenario"] == scenario and "metrics" in run:
            by_round.setdefault(run["round"], {})[run["topology"]] = run["metrics"]
    rounds = []
    for number, pair in sorted(by_round.items()):
        if "memory-1" in pair and "redis-2" in pair:
            one, two = pair["memory-1"], pair["redis-2"]
            rounds.append({"round": number, **{k: round(two[k] - one[k], 3) for k in HOP_KEYS}})
    if not rounds:
        return None
    median = {k: round(statistics.median(r[k] for r in rounds), 3) for k in HOP_KEYS}
    return {"scenario": scenario, "rounds": rounds, "median": median}


def hop_table(summary: dict[str, Any]) -> str:
    lines = [
        f"Cross-node hop ({summary['scenario']}): redis-2 minus memory-1 of the same round",
        "",
        "| round | added latency p50 / p99 ms | added first receipt p50 / p99 ms |",
        "|---|---:|---:|",
    ]
    for r in [*summary["rounds"], {"round": "median", **summary["median"]}]:
        lines.append(
            f"| {r['round']} | {r['latency_p50_ms']:+.2f} / {r['latency_p99_ms']:+.2f} | "
            f"{r['first_p50_ms']:+.2f} / {r['first_p99_ms']:+.2f} |"
        )
    return "\n".join(lines)


PLACEMENT = (
    "the gateway (node B for redis-2) pinned to core 0; the pump, the load generator, "
    "redis-server and node A on core 1; workers-2 placed by the scheduler, workers-2-pinned "
    "with worker i on core i"
)


def docs_section(command: str, results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Scale-out: `{command}`",
        "",
        f"{results['date']}, {m['nproc']} cores ({m['cpu']}), kernel {m['kernel']}, Python "
        f"{m['python']}; {results['seconds']} s. Placement: {PLACEMENT}; "
        f"{describe(results['receive_steering'])}. Written by the run itself; what the numbers "
        'mean and the targets are in docs/scaling.md, "Measured".',
        "",
        table(results["runs"]),
    ]
    for summary in results["hop"]:
        lines += ["", hop_table(summary)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter, without the 10k run")
    parser.add_argument(
        "--topologies", nargs="*", default=list(DEFAULT_TOPOLOGIES), choices=TOPOLOGIES
    )
    parser.add_argument("--only", nargs="*", default=[], help="scenario keys (rate-10 ...)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the topologies this many times"
    )
    parser.add_argument("--plain", action="store_true")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="leave docs/benchmarks.md alone (a --quick run always does)",
    )
    parser.add_argument("--no-steering", action="store_true")
    args = parser.parse_args(argv)
    scenarios = [s for s in plan(args.quick) if not args.only or s.key in args.only]
    loadgen = build_loadgen()
    procs = P.Procs(BUILD / "logs")
    runs: list[dict[str, Any]] = []
    started = time.time()
    total = len(scenarios) * len(args.topologies) * args.rounds
    with (
        procs.session(),
        Display(total, args.plain) as display,
        steer_receives(CLIENT_CORE, not args.no_steering) as steering,
    ):
        display.note(f"bench.scaleout: {total} runs; {describe(steering)}")
        with (
            pump_process(procs) as (pump, pump_port, feedback_port),
            P.own_redis(procs, CLIENT_CORE) as redis,
        ):
            ctx = Context(
                procs, loadgen, issue_bench_token(), pump_port, feedback_port, pump.pid, display
            )
            for scenario in scenarios:
                for number in range(1, args.rounds + 1):
                    for name in args.topologies:
                        try:
                            run = run_once(ctx, scenario, name, redis)
                        except (TimeoutError, RuntimeError, OSError, ValueError, KeyError) as exc:
                            display.done(f"{name} {scenario.id}: FAILED: {exc}")
                            run = {"topology": name, "scenario": scenario.id, "error": str(exc)}
                        runs.append({**run, "round": number})
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": round(time.time() - started),
        "machine": machine(),
        "receive_steering": steering,
        "runs": runs,
        "hop": [h for s in HOP_SCENARIOS if (h := hop(runs, s)) is not None],
    }
    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / f"results{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    if not args.quick and not args.no_docs:
        shown = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--plain",)]
        command = " ".join(["python -m bench.scaleout", *shown])
        print(f"docs: {write_section(command, docs_section(command, results))}", file=sys.stderr)
    print(table(runs))
    for summary in results["hop"]:
        print()
        print(hop_table(summary))
    print(f"results: {path}", file=sys.stderr)
    return 1 if any("error" in r for r in runs) else 0

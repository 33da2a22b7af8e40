"""The whole gateway, durable beside memory: bench.scaleout's processes on a lossless stream.

The tick pump pushes Hyperliquid `trades` (one trade a tick, a lossless stream
for the gateway: offsets, history, and for `durable-1` the store), the C load
generator's clients subscribe to BTC's trades, and `memory-1` (`--state-dir
none`) and `durable-1` (a fresh state directory) alternate, round after round,
on the same machine in one run. Measured per run as bench.scaleout does: the
gateway's CPU per delivered message (here also per publication: times the
clients), delivered messages/s, latency from the pump's send to the client's
receipt p50/p99.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.fanout import procs as P
from bench.fanout.run import (
    CLIENT_CORE,
    Context,
    Display,
    build_loadgen,
    issue_bench_token,
    pump_process,
)
from bench.fanout.scenarios import Scenario
from bench.fanout.steering import describe, steer_receives
from bench.scaleout.run import BUILD, run_once

TOPOLOGIES = ("memory-1", "durable-1")


def plan(quick: bool) -> list[Scenario]:
    seconds = 3.0 if quick else 10.0
    return [
        Scenario(
            "rate-1000", "1,000 trades/s, one client (each in a loop turn of its own)", 1,
            "rate", rate=1000.0, channel="trades", duration=seconds,
        ),
        Scenario(
            "saturation", "Saturation, 1,000 clients", 1000, "window",
            channel="trades", duration=seconds,
        ),
        Scenario(
            "rate-100", "100 trades/s, one client (latency)", 1, "rate", rate=100.0,
            channel="trades", duration=seconds * 2,
        ),
        Scenario(
            "rate-100", "100 trades/s, 1,000 clients (latency)", 1000, "rate", rate=100.0,
            channel="trades", duration=seconds * 2,
        ),
    ]  # fmt: skip


def run(quick: bool, rounds: int, plain: bool = True) -> list[dict[str, Any]]:
    scenarios = plan(quick)
    loadgen = build_loadgen()
    procs = P.Procs(BUILD / "logs-durable")
    runs: list[dict[str, Any]] = []
    total = len(scenarios) * len(TOPOLOGIES) * rounds
    with (
        procs.session(),
        Display(total, plain) as display,
        steer_receives(CLIENT_CORE, True) as steering,
    ):
        display.note(f"bench.durable --gateway: {total} runs; {describe(steering)}")
        with pump_process(procs, "trades") as (pump, pump_port, feedback_port):
            ctx = Context(
                procs, loadgen, issue_bench_token(), pump_port, feedback_port, pump.pid, display
            )
            for scenario in scenarios:
                for number in range(1, rounds + 1):
                    for name in TOPOLOGIES:
                        try:
                            result = run_once(ctx, scenario, name, ("", 0))
                        except (TimeoutError, RuntimeError, OSError, ValueError, KeyError) as exc:
                            display.done(f"{name} {scenario.id}: FAILED: {exc}")
                            result = {"topology": name, "scenario": scenario.id, "error": str(exc)}
                        runs.append({**result, "round": number, "clients": scenario.clients})
    return runs


def summary(runs: list[dict[str, Any]]) -> list[str]:
    """Per scenario: the medians of the rounds, durable beside memory."""
    lines = [
        "| scenario | engine | delivered msg/s | CPU us per publication | durable / memory "
        "| latency p50 / p99 ms | added p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    scenarios = dict.fromkeys(r["scenario"] for r in runs)
    for scenario in scenarios:
        medians: dict[str, dict[str, float]] = {}
        for name in TOPOLOGIES:
            ok = [r for r in runs if r["scenario"] == scenario and r["topology"] == name]
            ok = [r for r in ok if "metrics" in r]
            if not ok:
                continue
            clients = ok[0]["clients"]
            medians[name] = {
                "rate": statistics.median(r["metrics"]["msgs_per_s"] for r in ok),
                "cpu": statistics.median(r["metrics"]["cpu_us_per_msg"] * clients for r in ok),
                "p50": statistics.median(r["metrics"]["latency_p50_ms"] for r in ok),
                "p99": statistics.median(r["metrics"]["latency_p99_ms"] for r in ok),
            }
        memory = medians.get("memory-1")
        for name, m in medians.items():
            ratio = f"{m['cpu'] / memory['cpu']:.2f}x" if memory and name != "memory-1" else ""
            added = f"{m['p99'] - memory['p99']:+.2f}" if memory and name != "memory-1" else ""
            lines.append(
                f"| {scenario} | {name} | {m['rate']:,.0f} | {m['cpu']:.1f} | {ratio} | "
                f"{m['p50']:.2f} / {m['p99']:.2f} | {added} |"
            )
    return lines

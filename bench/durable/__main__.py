"""`python -m bench.durable [--quick] [--rounds 3] [--parts engine gateway] [--write]`

The durable engine beside the memory engine, the two alternating `--rounds`
times (medians kept):
- `engine` (bench/durable/engine.py): CPU per lossless publication at
  saturation on the node's own path without sockets, the latency the durable
  engine adds before a publication reaches its subscriber, bytes on disk per
  retained message, the start-up with 1,000 busy streams retained;
- `gateway` (bench/durable/gateway.py): whole gateway processes on a lossless
  stream (trades), the C load generator's clients, CPU per publication and
  latency at saturation and at a fixed rate.
Prints Markdown; `--write` puts it into docs/benchmarks.md (a section replaced
by a later run of the same command).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from typing import Any

from bench.durable import gateway
from bench.durable.engine import cost, latency, size_and_startup
from bench.table import machine, write_section


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def command(args: argparse.Namespace) -> str:
    quick = " --quick" if args.quick else ""
    return f"python -m bench.durable{quick} --rounds {args.rounds} --parts {' '.join(args.parts)}"


def gateway_part(args: argparse.Namespace) -> str:
    runs = gateway.run(args.quick, args.rounds)
    return "\n".join(
        [
            "Whole gateway processes on a lossless stream (`trades`, one trade a tick from "
            "bench.fanout's pump; the C load generator's clients; bench.scaleout's placement: "
            "the gateway on core 0, pump and clients on core 1); `memory-1` is `--state-dir none`, "
            f"`durable-1` a fresh state directory; medians of {args.rounds} alternating rounds. "
            "CPU us per publication: the gateway process's CPU per trade published (per "
            "delivered message times the clients); latency: pump send to client receipt:",
            "",
            *gateway.summary(runs),
        ]
    )


async def engine_part(args: argparse.Namespace) -> str:
    count = 20_000 if args.quick else 100_000
    lines = [
        "CPU per lossless publication at saturation, on the node's path (Publisher, engine, frame, "
        "hub; no socket write), one subscriber per stream, 100 streams; median of "
        f"{args.rounds} alternating rounds:",
        "",
        "| publications per loop turn | memory us CPU | durable us CPU | durable / memory "
        "| durable publications/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for per_turn in (1, 10, 100):
        memory: list[float] = []
        durable: list[float] = []
        rate: list[int] = []
        for _ in range(args.rounds):
            m = await cost("memory", count, per_turn, 100)
            d = await cost("durable", count, per_turn, 100)
            memory.append(m["cpu_us_per_publication"])
            durable.append(d["cpu_us_per_publication"])
            rate.append(d["publications_per_s"])
            print(f"cost per_turn={per_turn}: memory {m}  durable {d}", file=sys.stderr)
        mem, dur = statistics.median(memory), statistics.median(durable)
        lines.append(
            f"| {per_turn} | {mem:.2f} | {dur:.2f} | {dur / mem:.2f}x | "
            f"{int(statistics.median(rate)):,} |"
        )
    seconds = 5.0 if args.quick else 20.0
    lines += [
        "",
        "Latency the durable engine adds from `publish` to the subscriber's frame (the memory "
        f"engine delivers within `publish`), 100 streams, {seconds:.0f} s per rate with the "
        "checkpointer running beside it:",
        "",
        "| publications/s | publications | checkpoints | added p50 ms | added p99 ms "
        "| added max ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rate_per_s in (100.0, 1000.0):
        row: dict[str, Any] = await latency(rate_per_s, seconds, 100)
        print(f"latency: {row}", file=sys.stderr)
        lines.append(
            f"| {int(rate_per_s):,} | {row['publications']:,} | {row['checkpoints_during']} | "
            f"{row['added_p50_ms']:.3f} | {row['added_p99_ms']:.3f} | {row['added_max_ms']:.3f} |"
        )
    streams, messages = (100, 1000) if args.quick else (1000, 1000)
    row = await size_and_startup(streams, messages)
    print(f"size and start-up: {row}", file=sys.stderr)
    lines += [
        "",
        f"State on disk and start-up, {streams:,} busy user_fills streams of {messages:,} one-fill "
        "messages each (every stream wanted, its ledger and position kept), after a clean stop:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| retained messages | {row['retained_messages']:,} |",
        f"| payload per message | {row['payload_bytes_per_message']} B |",
        f"| state.db | {row['state_db_bytes'] / 2**20:.1f} MiB |",
        f"| on disk per retained message (history, ledger item, position) | "
        f"{row['disk_bytes_per_message']} B |",
        f"| start-up: open, check the schema, load everything | {row['startup_seconds']} s |",
        f"| topics resumed | {row['resumed_topics']:,} |",
        f"| memory after loading (max RSS growth) | {row['max_rss_growth_mib']} MiB |",
        f"| a `hlgateway serve` process on it: spawned to serving (health, markets) | "
        f"{row['process_serving_seconds']} s |",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    parts = [
        "# Durable state: `python -m bench.durable`",
        "",
        f"machine: {machine()}; load average at start: {load()}",
        f"command: `{command(args)}`",
    ]
    if "gateway" in args.parts:
        parts += ["", gateway_part(args)]
    if "engine" in args.parts:
        parts += ["", asyncio.run(engine_part(args))]
    parts += ["", f"load average at the end: {load()}"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.durable", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (~1 min)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--parts", nargs="+", choices=["engine", "gateway"], default=["engine", "gateway"]
    )
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args(argv)
    body = run(args)
    print(body)
    if args.write:
        write_section(command(args), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What waiting for the replica costs: `python -m bench.sentinel.cost [--rounds 3] [--write]`.

A primary and its replica of our own (no sentinels: the cost is the same); two
engines in one process, A publishing lossless messages of ~200 bytes to a room,
B subscribed, with `min_replicas` 0 (published at once, as without Sentinel)
and 1 (stored, WAIT for the replica, then committed: broker/replicated.py),
alternating, `rounds` times each:

- hop: one publication every 10 ms (`--hop` of them), from A's `publish` to B's
  receipt, p50 / p99;
- saturation: `--count` publications as fast as A's pipeline goes:
  publications per second, and the CPU of the primary and of the replica per
  publication.

Prints the medians of the rounds side by side with their ratio; `--write` puts
them into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from bench.fanout.procs import proc_cpu_seconds
from bench.sentinel.group import SentinelGroup
from bench.table import machine, write_section
from hlgateway.broker import Retention
from hlgateway.broker.redis import RedisBroker
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import Topic, room_topic
from tests.helpers import eventually

ROOM = room_topic("cost")


def message(topic: Topic, n: int) -> bytes:
    head = encoding.data_head(topic.channel, topic.params_json)
    return encoding.data_frame(head, {"n": n, "pad": "x" * 120})


async def one_round(
    url: str, pids: tuple[int, int], hops: int, count: int, tag: str
) -> dict[str, float]:
    retention = Retention(1000, 600, 2000)
    a = RedisBroker(url, retention, node=f"a-{tag}")
    b = RedisBroker(url, retention, node=f"b-{tag}")
    sent: dict[int, float] = {}
    delays: list[float] = []
    got = 0

    def sink(_topic: Topic, payload: bytes, _offset: int) -> None:
        nonlocal got
        got += 1
        n = int(payload.split(b'"n":', 1)[1].split(b",", 1)[0])
        if n in sent:
            delays.append((time.perf_counter() - sent.pop(n)) * 1000)

    a.bind(lambda *_: None)
    b.bind(sink)
    await a.start()
    await b.start()
    try:
        await b.read(ROOM, None)
        b.demand(ROOM)
        for n in range(hops):
            sent[n] = time.perf_counter()
            a.publish(ROOM, message(ROOM, n))
            await asyncio.sleep(0.01)
        await eventually(lambda: got >= hops, 60, every=0.005)
        primary0, replica0 = (proc_cpu_seconds(p) for p in pids)
        start, base = time.monotonic(), got
        for n in range(hops, hops + count):
            a.publish(ROOM, message(ROOM, n))
            if n % 1000 == 999:
                await asyncio.sleep(0)
        await eventually(lambda: got - base >= count, 300, every=0.005)
        wall = time.monotonic() - start
        primary = proc_cpu_seconds(pids[0]) - primary0
        replica = proc_cpu_seconds(pids[1]) - replica0
    finally:
        await a.stop()
        await b.stop()
    delays.sort()
    return {
        "hop_p50_ms": statistics.median(delays),
        "hop_p99_ms": delays[max(0, int(len(delays) * 0.99) - 1)],
        "publications_per_s": count / wall,
        "primary_us": primary / count * 1e6,
        "replica_us": replica / count * 1e6,
    }


async def run(rounds: int, hops: int, count: int) -> dict[int, list[dict[str, float]]]:
    results: dict[int, list[dict[str, float]]] = {0: [], 1: []}
    async with SentinelGroup(replicas=1, sentinels=0) as group:
        primary, replica = group.servers
        assert primary.proc is not None and replica.proc is not None
        pids = (primary.proc.pid, replica.proc.pid)
        for index in range(rounds):
            for setting in (0, 1):
                url = f"redis://127.0.0.1:{primary.port}/0?min_replicas={setting}"
                row = await one_round(url, pids, hops, count, f"{index}-{setting}")
                results[setting].append(row)
                print(f"round {index + 1} min_replicas={setting}: {row}", file=sys.stderr)
    return results


def report(command: str, results: dict[int, list[dict[str, float]]], load: tuple[str, str]) -> str:
    def med(setting: int, key: str) -> float:
        return statistics.median(r[key] for r in results[setting])

    rows = [
        ("hop p50 (ms)", "hop_p50_ms", 2),
        ("hop p99 (ms)", "hop_p99_ms", 2),
        ("publications/s, one node publishing", "publications_per_s", 0),
        ("primary CPU per publication (us)", "primary_us", 1),
        ("replica CPU per publication (us)", "replica_us", 1),
    ]
    lines = [
        "## Redis Sentinel: what waiting for the replica costs",
        "",
        f"machine: {machine()}",
        f"command: {command}",
        f"load average (1, 5, 15 min) before: {load[0]}; after: {load[1]}",
        "",
        "A primary and its replica of the run's own; two engines in one process, A publishing",
        "lossless ~200-byte messages to a room, B subscribed. `min_replicas=0`: published at",
        "once (one Lua run), as without Sentinel. `min_replicas=1`: stored, `WAIT 1` for the",
        "replica, then committed (a second Lua run per stream and round). Medians of the rounds.",
        "",
        "| measure | min_replicas=0 | min_replicas=1 | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, key, digits in rows:
        zero, one = med(0, key), med(1, key)
        ratio = f"{one / zero:.2f}x" if zero else "-"
        lines.append(f"| {name} | {zero:,.{digits}f} | {one:,.{digits}f} | {ratio} |")
    return "\n".join(lines)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sentinel.cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hop", type=int, default=500, help="publications 10 ms apart")
    parser.add_argument("--count", type=int, default=20_000, help="publications at saturation")
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args(argv)
    before = _load()
    results = asyncio.run(run(args.rounds, args.hop, args.count))
    command = (
        f"python -m bench.sentinel.cost --rounds {args.rounds} --hop {args.hop} "
        f"--count {args.count}"
    )
    text = report(command, results, (before, _load()))
    print(text)
    if args.write:
        print(f"written to {write_section(command, text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

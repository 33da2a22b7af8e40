"""`python -m bench.sentinel [--failovers 10] [--min-replicas 1 0] [--clients 4] [--write]`

Redis Sentinel failovers under load (bench/sentinel/harness.py): prints, for each
`min_replicas` asked, the failovers and what the clients got against the
simulator's ledger, side by side; with `--write` the result goes into
docs/benchmarks.md. Exits non-zero if a fill was lost or duplicated for a client
that came back, or a client was handed a wrong replay (or, with min_replicas >= 1,
told `recovered: false`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys

from bench.sentinel.group import KINDS
from bench.sentinel.harness import SentinelReport, run_failovers
from bench.table import machine, write_section


def report(command: str, results: list[SentinelReport], load: tuple[str, str]) -> str:
    lines = [
        "## Redis Sentinel: failovers under load",
        "",
        f"machine: {machine()}",
        f"command: {command}",
        f"load average (1, 5, 15 min) before: {load[0]}; after: {load[1]}",
        "",
        "Two `hlgateway serve --broker redis+sentinel://...` processes on a Sentinel group of",
        "the run's own (a primary, a replica, three sentinels; down-after 2 s), the simulator",
        "trading three wallets (an order event every ~0.2 s each, a fill at least every 0.8 s,",
        "funding, transfers and liquidations on user_ledger);",
        "raw clients (docs/protocol.md) that leave every 0.5-4 s and come back to either node",
        "with `since`, and a Python SDK client on node b throughout. Failovers in turn: `kill`",
        "(the primary SIGKILLed), `manual` (`SENTINEL FAILOVER`: the old primary keeps",
        "accepting writes until the sentinels turn it into a replica), `lagging` (the primary",
        "killed while its replica is SIGSTOPped: the new primary lacks the last writes).",
        "",
    ]
    head = "| measure | " + " | ".join(f"min_replicas={r.min_replicas}" for r in results) + " |"
    lines += [head, "|---|" + "---:|" * len(results)]

    def row(name: str, values: list[object]) -> None:
        lines.append(f"| {name} | " + " | ".join(str(v) for v in values) + " |")

    def total(attr: str, r: SentinelReport) -> int:
        return sum(getattr(c, attr) for c in r.ledgers)

    row("failovers", [len(r.failovers) for r in results])
    row("clients (raw + SDK)", [r.clients for r in results])
    row("connections (comebacks with since)", [r.reconnects for r in results])
    row("fills produced (per client)", [r.ledgers[0].fills_produced for r in results])
    row("**fills lost** (all clients)", [total("fills_lost", r) for r in results])
    row("fills duplicated", [total("fills_duplicated", r) for r in results])
    row("order transitions lost", [total("transitions_lost", r) for r in results])
    row("order transitions duplicated", [total("transitions_duplicated", r) for r in results])
    row("ledger events lost", [total("events_lost", r) for r in results])
    row("ledger events duplicated", [total("events_duplicated", r) for r in results])
    row("wallets out of order", [total("out_of_order_wallets", r) for r in results])
    row("items published twice in the streams", [r.republished for r in results])
    row("**wrong replays**", [r.wrong_replays for r in results])
    row("... offsets naming two contents", [r.conflicts for r in results])
    row("... offsets skipped or repeated in an epoch", [r.broken_replays for r in results])
    row("`recovered: true`", [r.recovered for r in results])
    row("`recovered: false`", [r.not_recovered for r in results])
    row("epochs seen (two streams)", [r.epochs for r in results])
    row("new epochs in live data (raw clients)", [r.new_epochs for r in results])
    for name in ("rewound", "newEpochs", "unreplicated", "replicaWaits", "failovers"):
        row(
            f"nodes' {name} (a + b)",
            [sum(n.get(name, 0) for n in r.nodes.values()) for r in results],
        )
    row("fill delay p50 / p99 ms (SDK)", [_delays(r) for r in results])
    for kind in KINDS:
        row(f"{kind}: switch / settled / pause s (median)", [_kind(r, kind) for r in results])
    row("seconds", [r.seconds for r in results])
    lines.append("")
    lines.append(
        "switch: until the sentinels named the new primary; settled: until the old primary "
        "followed it in sync; pause: the SDK client's longest wait for a message around the "
        "failover (fills and order events come several times a second otherwise)."
    )
    for r in results:
        if r.not_recovered_examples:
            examples = r.not_recovered_examples[:5]
            lines.append(f"recovered: false (min_replicas={r.min_replicas}): {examples}")
        if r.republished_examples:
            lines.append(
                f"published twice (min_replicas={r.min_replicas}): {r.republished_examples}"
            )
        if r.conflict_examples:
            lines.append(f"conflicts (min_replicas={r.min_replicas}): {r.conflict_examples}")
    return "\n".join(lines)


def _delays(r: SentinelReport) -> str:
    d = r.fill_delay_ms
    return f"{d.get('p50', '-')} / {d.get('p99', '-')}"


def _kind(r: SentinelReport, kind: str) -> str:
    mine = [f for f in r.failovers if f.kind == kind]
    if not mine:
        return "-"

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}"

    return (
        f"{med([f.switched_s for f in mine])} / {med([f.settled_s for f in mine])} / "
        f"{med([f.pause_s for f in mine])}"
    )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sentinel")
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--min-replicas", type=int, nargs="+", default=[1])
    parser.add_argument("--clients", type=int, default=4, help="raw clients that come and go")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    if not 1 <= args.failovers <= 50:
        parser.error("--failovers: 1..50")
    logging.basicConfig(level=logging.ERROR)
    before = _load()
    results = []
    for setting in args.min_replicas:
        results.append(
            asyncio.run(
                run_failovers(
                    args.failovers,
                    min_replicas=setting,
                    clients=args.clients,
                    seed=args.seed,
                    progress=lambda line: print(line, file=sys.stderr, flush=True),
                )
            )
        )
    replicas = " ".join(str(m) for m in args.min_replicas)
    command = (
        f"python -m bench.sentinel --failovers {args.failovers} --min-replicas {replicas} "
        f"--clients {args.clients} --seed {args.seed}"
    )
    text = report(command, results, (before, _load()))
    print(text)
    if args.write:
        print(f"written to {write_section(command, text)}", file=sys.stderr)
    return 0 if all(r.ok() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

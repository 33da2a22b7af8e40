"""`python -m bench.notifier [--seconds 60] [--chats 4] [--seed 3] [--gateway-kills N] [--write]`

Chaos run of the Telegram notifier (see harness.py); prints the report as a
Markdown table (the one in docs/notifier.md) and its JSON; exits non-zero if a
fill was lost or reordered or a 429 was not honoured. `--gateway-kills N`: only
kill -9s of the gateway, N of them, the notifier started as docs/notifier.md
shows. `--write`: the results into docs/benchmarks.md, in a section of the
command's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from bench.notifier import taps
from bench.notifier.harness import Report, run
from bench.table import machine, print_report, write_section


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifier")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--gateway-kills", type=int, default=0)
    parser.add_argument(
        "--confirm-taps", type=int, default=0, help="the trading fault run (bench/notifier/taps.py)"
    )
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    if args.confirm_taps:
        return taps_main(args.confirm_taps, args.seed, args.write)
    report = asyncio.run(
        run(
            args.seconds,
            args.chats,
            args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            gateway_kills=args.gateway_kills,
        )
    )
    command = f"python -m bench.notifier --chats {args.chats} --seed {args.seed}"
    command += (
        f" --gateway-kills {args.gateway_kills}"
        if args.gateway_kills
        else f" --seconds {args.seconds:g}"
    )
    load = os.getloadavg()
    at_end = " / ".join(f"{x:.2f}" for x in load)
    rows = {**report.as_dict(), "load (1/5/15 min) at the end": at_end}
    print_report(command, rows)
    print()
    print(json.dumps(report.as_dict()))
    if args.write:
        print(f"docs: {write_section(command, section(command, report, load))}", file=sys.stderr)
    return 0 if report.ok() else 1


def taps_main(count: int, seed: int, write: bool) -> int:
    result = asyncio.run(
        taps.run(count, seed, progress=lambda line: print(line, file=sys.stderr, flush=True))
    )
    command = f"python -m bench.notifier --confirm-taps {count} --seed {seed}"
    at_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = {**result.as_dict(), "load (1/5/15 min) at the end": at_end}
    print_report(command, rows)
    print()
    print(json.dumps(result.as_dict()))
    if write:
        body = "\n".join(
            [
                f"## Trading from Telegram: confirm taps with faults (`{command}`)",
                "",
                f"Machine: {machine()}; load average at the end {at_end}."
                ' See docs/notifier.md "Trading" for what the run does.',
                "",
                "| measure | value |",
                "|---|---|",
                *(f"| {k} | {v} |" for k, v in result.as_dict().items() if k != "examples"),
            ]
        )
        print(f"docs: {write_section(command, body)}", file=sys.stderr)
    return 0 if result.ok() else 1


def section(command: str, report: Report, load: tuple[float, float, float]) -> str:
    title = (
        "The notifier across gateway kills"
        if report.faults.get("gateway_kill9")
        else "The notifier's chaos run"
    )
    lines = [
        f"## {title} (`{command}`)",
        "",
        f"Machine: {machine()}; load average at the end {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f}. See docs/notifier.md for what the run does.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    rows = report.as_dict()
    lines += [f"| {key} | {value} |" for key, value in rows.items() if key != "examples"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

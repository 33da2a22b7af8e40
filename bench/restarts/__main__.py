"""`python -m bench.restarts [--restarts 50] [--clients raw python] [--seed 19] [--write]`

Issue 19's "Done when" run: one `hlgateway serve` with default settings on the
simulator, a raw client (from docs/protocol.md) and the Python client on a
trading wallet; the gateway killed with -9 and stopped with SIGTERM, alternately,
`--restarts` times, each time down 1-20 s (bench/restarts/harness.py). Prints
the report as a Markdown table (with `--write`, into docs/benchmarks.md); exits
non-zero if any fill or order transition was lost, repeated or reordered for any
client, or any resubscribe was not recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from bench.restarts.harness import run_restarts
from bench.table import machine, write_section


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restarts")
    parser.add_argument("--restarts", type=int, default=50)
    parser.add_argument("--clients", nargs="+", default=["raw", "python"])
    parser.add_argument("--down", type=float, nargs=2, default=(1.0, 20.0))
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    load = os.getloadavg()
    report = asyncio.run(
        run_restarts(
            args.restarts,
            clients=tuple(args.clients),
            down=(args.down[0], args.down[1]),
            seed=args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )
    command = (
        f"python -m bench.restarts --restarts {args.restarts} --clients {' '.join(args.clients)} "
        f"--down {args.down[0]:g} {args.down[1]:g} --seed {args.seed}"
    )
    lines = [
        "# Restarts under clients: `python -m bench.restarts`",
        "",
        f"machine: {machine()}; load average at start: "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; result: "
        f"{'every fill and transition once, in order, recovered' if report.ok() else 'FAILED'}",
        f"command: `{command}`",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in report.as_dict().items()),
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section(command, body)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

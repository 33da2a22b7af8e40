"""`python -m bench.recovery [--reconnects 100] [--client raw] [--seed 13]`

Forces a client to reconnect again and again (resets, 4008, 1001) while three
wallets trade; prints the report as a Markdown table (docs/benchmarks.md) and
exits non-zero if anything was lost, duplicated, reordered or not recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys

from bench.recovery.harness import KINDS, run_recovery


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery")
    parser.add_argument("--reconnects", type=int, default=100)
    parser.add_argument("--client", choices=sorted(KINDS), default="raw")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(
        run_recovery(
            args.reconnects,
            client=args.client,
            seed=args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"command: python -m bench.recovery --reconnects {args.reconnects} "
        f"--client {args.client} --seed {args.seed}"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    for key, value in report.as_dict().items():
        print(f"| {key} | {value} |")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.recovery [--reconnects 100] [--client raw] [--seed 13]`

Forces a client to reconnect again and again (resets, 4008, 1001) while three
wallets trade; prints the report as a Markdown table (docs/benchmarks.md) and
exits non-zero if anything was lost, duplicated, reordered or not recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bench.recovery.harness import KINDS, run_recovery
from bench.table import print_report


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
    print_report(
        f"python -m bench.recovery --reconnects {args.reconnects} --client {args.client} "
        f"--seed {args.seed}",
        report.as_dict(),
    )
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.chaos [--faults 60] [--interval 1.2] [--seed 11]`

A longer chaos run than the test suite's: prints progress, then the report as a
Markdown table (the one in docs/upstream.md), and exits non-zero if anything
was lost, duplicated or reordered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bench.chaos.harness import run_chaos
from bench.table import print_report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--faults", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.2, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(
        run_chaos(
            args.faults,
            interval=args.interval,
            seed=args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )
    print_report(
        f"python -m bench.chaos --faults {args.faults} --interval {args.interval} "
        f"--seed {args.seed}",
        report.as_dict(),
    )
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

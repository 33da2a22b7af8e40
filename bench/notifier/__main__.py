"""`python -m bench.notifier [--seconds 60] [--chats 4] [--seed 3]`

Chaos run of the Telegram notifier (see harness.py); prints the report as a
Markdown table (the one in docs/notifier.md) and its JSON; exits non-zero if a
fill was lost or reordered or a 429 was not honoured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys

from bench.notifier.harness import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifier")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    report = asyncio.run(
        run(
            args.seconds,
            args.chats,
            args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    )
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: python -m bench.notifier --seconds {args.seconds} --chats {args.chats}")
    print()
    print("| measure | value |")
    print("|---|---|")
    for key, value in report.as_dict().items():
        print(f"| {key} | {value} |")
    print()
    print(json.dumps(report.as_dict()))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

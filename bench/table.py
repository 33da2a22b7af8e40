"""How the runs print their results: the machine, the command, a Markdown table."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def print_report(command: str, rows: dict[str, Any]) -> None:
    print(f"machine: {machine()}")
    print(f"command: {command}")
    print()
    print("| measure | value |")
    print("|---|---|")
    for key, value in rows.items():
        print(f"| {key} | {value} |")

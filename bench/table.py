"""How the runs print their results: the machine, the command, a Markdown table."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


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


def write_section(command: str, body: str, doc: Path = DOC) -> Path:
    """Put a run's results into docs/benchmarks.md, in a section of its command's own.

    A later run of the same command replaces its section; other commands' sections stay
    beside it. The sections sit after bench.fanout's `other:begin` marker, which its page
    generator keeps as it is.
    """
    key = hashlib.sha1(command.encode()).hexdigest()[:10]
    begin, end = f"<!-- run {key}:begin -->", f"<!-- run {key}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = doc.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc

"""A benchmark's child process: its stdout read line by line, its stderr to a log file."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import IO


def terminate(proc: subprocess.Popen[str], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Child:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._err, env=env, text=True
        )

    def line(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            text = self.proc.stdout.readline()
            if not text:
                break
            seen.append(text)
            match = re.search(pattern, text)
            if match:
                return match
        raise RuntimeError(f"no line like {pattern!r}: {seen[-5:]} (log {self.log})")

    def stop(self) -> None:
        terminate(self.proc)
        self._err.close()

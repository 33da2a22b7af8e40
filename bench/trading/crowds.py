"""The market-data clients beside bench.trading's posts: two stand-ins for 1,000 remote clients.

- `python`: bench/trading/crowd.py, one aiohttp process that parses every message.
- `c`: bench/fanout/loadgen.c, one epoll process that counts data frames without
  parsing them (the fan-out benchmark's load generator, sent the same subscribe
  frames).

Both subscribe every client to `prices` (BTC, ETH) and the BTC `orderbook`, so the
gateway's work is the same; what differs is what the stand-in costs the machine's
two cores. Each counts the data messages its clients receive between `mark()` (the
measurement starts) and `finish()` (it ends), so a report can show both crowds
were fed alike.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from bench.trading.child import Child, terminate

# What every data client sends (bench/trading/crowd.py sends the same).
SUBSCRIBES = (
    '{"type":"subscribe","channel":"prices","params":{"symbols":["BTC","ETH"]}}',
    '{"type":"subscribe","channel":"orderbook","params":{"symbol":"BTC"}}',
)
CROWDS = ("python", "c")
NAMES = {"python": "Python crowd (aiohttp, parses every message)", "c": "C crowd (loadgen.c)"}


class Counted:
    """What a crowd's clients received during the measurement."""

    def __init__(self, received: int, per_client: tuple[int, int, int]) -> None:
        self.received = received
        self.per_client = per_client  # min, median, max data messages of one client


class PythonCrowd:
    """bench/trading/crowd.py; SIGUSR1 makes it print what its clients got since the last one."""

    name = "python"

    def __init__(
        self, url: str, clients: int, prefix: list[str], env: dict[str, str], log: Path
    ) -> None:
        argv = [sys.executable, "-m", "bench.trading.crowd", url, str(clients)]
        self._child = Child([*prefix, *argv], env, log)
        self.proc = self._child.proc

    def _line(self, pattern: str, timeout: float) -> re.Match[str]:
        return self._child.line(pattern, timeout)

    def ready(self) -> int:
        return int(self._line(r"ready (\d+)", 120).group(1))

    def _count(self) -> Counted:
        self.proc.send_signal(signal.SIGUSR1)
        m = self._line(r"count (\d+) (\d+) (\d+) (\d+)", 30)
        return Counted(int(m.group(1)), (int(m.group(2)), int(m.group(3)), int(m.group(4))))

    def mark(self) -> None:
        self._count()

    def finish(self) -> Counted:
        return self._count()

    def stop(self) -> None:
        self._child.stop()


class CCrowd:
    """bench/fanout/loadgen.c: `go` on stdin starts its measurement, EOF ends it (a JSON report)."""

    name = "c"

    def __init__(
        self, port: int, path: str, clients: int, prefix: list[str], env: dict[str, str], log: Path
    ) -> None:
        from bench.fanout.run import build_loadgen

        argv = [str(build_loadgen()), "--port", str(port), "--path", path, "-n", str(clients)]
        for subscribe in SUBSCRIBES:
            argv += ["--subscribe", subscribe]
        # No warm-up: "go" starts the count; the measurement ends when stdin closes.
        argv += ["--warmup", "0", "--duration", "100000", "--max-seconds", "3600"]
        self.log = log
        self._log: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self._drain: threading.Thread | None = None

    def ready(self) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 120
        subscribed = -1
        while time.monotonic() < deadline:
            text = self.proc.stderr.readline()
            if not text:
                break
            self._log.write(text)
            event: dict[str, Any] = json.loads(text) if text.startswith("{") else {}
            if event.get("event") == "ready":
                subscribed = int(event["subscribed"])
            # Like the Python crowd's `ready`: not before data flows (a progress line a second).
            if subscribed >= 0 and event.get("msgs_per_s", 0) > 0:
                # Its progress lines from here on go to the log, so its stderr never fills.
                self._drain = threading.Thread(target=self._copy, daemon=True)
                self._drain.start()
                return subscribed
            if event.get("event") == "error":
                break
        raise RuntimeError(f"C crowd: no ready line (log {self.log})")

    def _copy(self) -> None:
        assert self.proc.stderr is not None
        for text in self.proc.stderr:
            self._log.write(text)

    def mark(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> Counted:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()  # the load generator prints its report and exits
        report = json.loads(self.proc.stdout.readline())
        phases = report["phases"]
        received = sum(int(p["msgs"]) for p in phases.values())
        each = phases.get("measure", {}).get("per_conn_msgs", {"min": 0, "p50": 0, "max": 0})
        return Counted(received, (int(each["min"]), int(each["p50"]), int(each["max"])))

    def stop(self) -> None:
        terminate(self.proc)
        if self._drain is not None:
            self._drain.join(5)
        self._log.close()


def launcher(nice: int = 0, cpu: int | None = None) -> list[str]:
    """What a child's command starts with: `taskset` to keep it on one CPU, `nice`."""
    return [
        *(["taskset", "-c", str(cpu)] if cpu is not None else []),
        *(["nice", "-n", str(nice)] if nice else []),
    ]


def start(
    kind: str,
    gateway_port: int,
    token: str,
    clients: int,
    prefix: list[str],
    env: dict[str, str],
    log: Path,
) -> PythonCrowd | CCrowd:
    if kind == "python":
        url = f"ws://127.0.0.1:{gateway_port}/ws?token={token}"
        return PythonCrowd(url, clients, prefix, env, log)
    return CCrowd(gateway_port, f"/ws?token={token}", clients, prefix, env, log)

"""Processes of a benchmark run: start (pinned), watch (/proc), stop (always).

Every child is registered in a `Procs` and stopped by its pid (SIGTERM, then
SIGKILL) when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    """`taskset -c CORE argv` when the machine has that core and taskset exists."""
    if core is None or core >= cpu_count() or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", str(core), *argv]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of the whole process (all threads), in seconds; 0 if gone.

    From the scheduler's own count (`/proc/PID/task/*/schedstat`, nanoseconds of
    each thread on a CPU) where there is one: utime + stime are sampled at the
    clock tick (10 ms here), too coarse for a server that is busy 30 ms a second.
    """
    total_ns = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/schedstat") as fh:
                total_ns += int(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        total_ns = 0
    if total_ns:
        return total_ns / 1e9
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def tree(pid: int) -> list[int]:
    """`pid` and every process below it (a server's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def _started(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie is gone already
        return None
    return int(fields[19])


def group_cpu_seconds(pids: Sequence[int]) -> float:
    return sum(proc_cpu_seconds(pid) for pid in pids)


def group_rss_kib(pids: Sequence[int]) -> int:
    return sum(proc_rss_kib(pid) for pid in pids)


def cpu_times() -> dict[str, tuple[float, float]]:
    """Per line of /proc/stat (`cpu`, `cpu0`, ...): (busy seconds, irq + softirq seconds)."""
    out: dict[str, tuple[float, float]] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if not line.startswith("cpu"):
                break
            name, *parts = line.split()
            values = [int(v) for v in parts[:8]]
            idle = values[3] + values[4]
            out[name] = ((sum(values) - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK)
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    return cpu_times()["cpu"][0]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_line(self, predicate: str, timeout: float) -> str:
        """The first line (from the watched stream) containing `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no line with {predicate!r} in {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if not self.alive():
                    raise RuntimeError(
                        f"{self.name} exited with {self.popen.returncode}{self._log_hint()}"
                    ) from None
                continue
            if predicate in line:
                return line

    def _log_hint(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        return f" (log {self.log}: {' | '.join(tail)})"


class Procs:
    """The registry: start children, and stop every one of them at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        watch: str = "stdout",
        stdin: bool = False,
        log_stderr: bool = True,
    ) -> Proc:
        """Start `argv`; lines of `watch` ("stdout" or "stderr") go to `Proc.lines`.

        The other stream goes to a log file (stderr) or stays a pipe (stdout, read
        by the caller) when `watch` is "stderr".
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        log_fh: IO[bytes] | int = subprocess.DEVNULL
        if log_stderr and watch == "stdout":
            log_fh = open(log, "wb")  # noqa: SIM115 - closed when the process ends
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if watch == "stderr" else log_fh,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children
        )
        if not isinstance(log_fh, int):
            log_fh.close()  # the child holds its own copy
        proc = Proc(name, popen, log if log_stderr and watch == "stdout" else None)
        stream = popen.stdout if watch == "stdout" else popen.stderr
        assert stream is not None
        threading.Thread(target=_pump_lines, args=(stream, proc.lines), daemon=True).start()
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; then whatever the process had started
        and left behind (a supervisor's workers) is killed too. Returns how many of
        those were still there."""
        # (pid, start time): a pid reused by someone else's process is never killed.
        below = [(pid, _started(pid)) for pid in tree(proc.pid)[1:]] if proc.alive() else []
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait(timeout=5)
        left = 0
        for pid, started in below:
            if started is None or _started(pid) != started:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                left += 1
        for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self._procs:
            self._procs.remove(proc)
        return left

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, timeout=3.0)

    @contextlib.contextmanager
    def session(self) -> Iterator[Procs]:
        """Stop everything on the way out, whatever happened (Ctrl-C, SIGTERM included)."""

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            yield self
        finally:
            self.stop_all()
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def own_redis(procs: Procs, core: int | None = None) -> Iterator[tuple[str, int]]:
    """A redis-server of the run's own (no persistence, pinned to `core`): its URL and pid.

    Every benchmark that needs a broker starts it here, so that no run touches the
    machine's Redis or another run's."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="hlgw-bench-redis-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", workdir]
    proc = procs.start("redis", pinned(argv, core))
    proc.wait_line("Ready to accept connections", timeout=30)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        procs.stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def flush_redis(url: str) -> None:
    """A fresh broker for the next start: no leases, demand or streams left by the last."""
    port = url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    subprocess.run(["redis-cli", "-p", port, "flushall"], capture_output=True, check=False)


def _pump_lines(stream: IO[bytes], out: queue.Queue[str]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for raw in stream:
            out.put(raw.decode(errors="replace").rstrip("\n"))


@dataclass
class Sampler:
    """Samples a process's RSS and CPU (and the machine's busy CPU) in a thread."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, rss KiB, cpu s)
    extra: Sequence[int] = ()  # more processes counted with `pid` (its workers, its Redis)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def start(self) -> Sampler:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [self.pid, *self.extra]
            self.samples.append(
                (time.monotonic() - self._t0, group_rss_kib(pids), group_cpu_seconds(pids))
            )
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    @property
    def max_rss_kib(self) -> int:
        return max((s[1] for s in self.samples), default=0)


@dataclass
class CpuWindow:
    """CPU used by some processes, and by everything else on the machine, over a window.

    A name maps to one pid or to a group of them (a server and its workers), summed.
    """

    pids: Mapping[str, int | Sequence[int]]
    _start: dict[str, float] = field(default_factory=dict)
    _busy0: float = 0.0
    _cores0: dict[str, tuple[float, float]] = field(default_factory=dict)
    _t0: float = 0.0

    def begin(self) -> None:
        self._t0 = time.monotonic()
        self._cores0 = cpu_times()
        self._busy0 = self._cores0["cpu"][0]
        self._start = {name: self._cpu(name) for name in self.pids}

    def _cpu(self, name: str) -> float:
        pids = self.pids[name]
        return group_cpu_seconds([pids] if isinstance(pids, int) else pids)

    def end(self, known: Mapping[str, float] | None = None) -> dict[str, float]:
        """Utilisation (1.0 = one core busy) per name, plus `other` (the rest of the machine).

        `known` adds utilisations measured elsewhere over the same window (the load
        generator's own getrusage), so that they are not counted as `other`.
        """
        wall = max(time.monotonic() - self._t0, 1e-6)
        cores = cpu_times()
        busy = cores["cpu"][0] - self._busy0
        used = {name: (self._cpu(name) - self._start[name]) / wall for name in self.pids}
        used.update(known or {})
        used["other"] = max(0.0, busy / wall - sum(used.values()))
        # Per core: busy (all of it, kernel included) and the irq/softirq part of it, where
        # loopback TCP's receive path runs: it is nobody's process time.
        for name, (busy1, irq1) in cores.items():
            if name != "cpu" and name in self._cores0:
                busy0, irq0 = self._cores0[name]
                used[f"{name}_busy"] = (busy1 - busy0) / wall
                used[f"{name}_irq"] = (irq1 - irq0) / wall
        return {k: round(v, 5) for k, v in used.items()}

"""The fan-out benchmark: one command, every scenario, both servers, one report.

    .venv/bin/python -m bench.fanout [--quick] [--label NAME] [--only KEY ...]

Builds the C load generator and the C floor server (`cc -O2`, into
bench/fanout/build/), installs the Node reference (`npm ci` in bench/reference/),
starts the tick pump, then for each scenario and repetition, alternating the
servers (the gateway, the Node reference, the floor): starts the server under
test (pinned to core 0), runs the load generator (pinned to core 1, like the
pump), collects its JSON and the server's CPU and RSS, and stops the server.
Past what one process may hold open (RLIMIT_NOFILE), every server runs as
several processes on one port (the gateway `--workers N` on a Redis of the
run's own, Node's `cluster`, the floor `--procs N`) and the clients come from
several load generators, whose reports are merged (bench/fanout/loadgens.py).
Results go to docs/bench/results-<label>.json; docs/benchmarks.md and the PNG
plots in docs/bench/ are regenerated from every results file there, so a later
design's run sits beside the baseline's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fanout import loadgens
from bench.fanout import procs as P
from bench.fanout.scenarios import ALIASES, MIB, Scenario, plan
from bench.fanout.steering import backlog_drops, describe, steer_receives, still_applied

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "bench" / "fanout"
BUILD = HERE / "build"
REFERENCE = ROOT / "bench" / "reference"
DOCS = ROOT / "docs"
SECRET = "hlgateway-bench-secret-not-for-production-use"
SERVER_CORE = 0
CLIENT_CORE = 1
SERVERS = ("gateway", "node", "floor")
FD_RESERVE = 100  # descriptors a process keeps besides its clients' sockets
# SO_REUSEPORT spreads connections over processes by a hash, not evenly: each
# process is planned at this share of what it may hold.
SPREAD = 0.85


def processes_for(clients: int, fd_limit: int) -> int:
    """Server processes for `clients` connections, each below its open-file limit."""
    room = fd_limit - FD_RESERVE
    return 1 if clients <= room else math.ceil(clients / (room * SPREAD))


def loadgens_for(clients: int, fd_limit: int) -> int:
    return math.ceil(clients / (fd_limit - FD_RESERVE))


# -- building ---------------------------------------------------------------
def have_zlib_headers() -> bool:
    probe = subprocess.run(
        ["cc", "-E", "-"], input=b"#include <zlib.h>\n", capture_output=True, check=False
    )
    return probe.returncode == 0


def _build(name: str, build: Path, libs: list[str]) -> Path:
    """Compile bench/fanout/NAME.c if the binary is missing or older than the source."""
    source = HERE / f"{name}.c"
    binary = build / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    build.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(source), *libs], check=True)
    return binary


def build_loadgen(build: Path = BUILD) -> Path:
    return _build("loadgen", build, ["-lz"] if have_zlib_headers() else ["-DNO_ZLIB"])


def build_floor(build: Path = BUILD) -> Path:
    return _build("floor", build, [])


def install_reference() -> None:
    stamp = REFERENCE / "node_modules" / ".installed"
    lock = REFERENCE / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=REFERENCE, check=True)
    stamp.touch()


def issue_bench_token() -> str:
    from hlgateway.auth import issue_token

    return issue_token(SECRET, "bench", username="bench", ttl_seconds=7 * 24 * 3600)


# -- the machine --------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as fh:
        cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    ws_version = "?"
    with contextlib.suppress(OSError, ValueError):
        ws_version = json.loads((REFERENCE / "node_modules/ws/package.json").read_text())["version"]
    import aiohttp

    mem_kib = 0
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo") as fh:
        mem_kib = int(next(line.split()[1] for line in fh if line.startswith("MemTotal")))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "node": node.stdout.strip(),
        "ws": ws_version,
        "fd_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def export_ref(ref: str) -> tuple[Path, str]:
    """`git archive REF src` into a temporary directory (read-only for the repository)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Outside the repository: a second `hlgateway` package under bench/ would confuse mypy.
    dest = Path(tempfile.gettempdir()) / "hlgateway-bench" / f"gateway-{sha}"
    if not (dest / "src" / "hlgateway").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "src"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src", sha


def build_delivery(src: Path) -> None:
    """Build an exported tree's C delivery loops as the install does (setup.py's flags)."""
    source = src / "hlgateway" / "server" / "_delivery.c"
    target = source.with_name("_delivery" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    if source.exists() and not target.exists():
        include = sysconfig.get_paths()["include"]
        subprocess.run(
            [
                "cc",
                "-O2",
                "-Wall",
                "-shared",
                "-fPIC",
                f"-I{include}",
                str(source),
                "-o",
                str(target),
            ],
            check=True,
        )


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = out.stdout.strip() or "?"
    return commit + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


# -- progress -------------------------------------------------------------------
class Display:
    """A rich progress bar on a terminal; plain lines otherwise."""

    def __init__(self, total: int, plain: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.plain = plain or not self.console.is_terminal
        self._last_plain = 0.0
        self._progress: Any = None
        if not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("runs", total=total, status="")

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def begin(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text, status="starting")
        else:
            self.console.print(f"[{time.strftime('%H:%M:%S')}] {text}")

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, status=text)
        elif time.monotonic() - self._last_plain > 5:
            self._last_plain = time.monotonic()
            self.console.print(f"           {text}")

    def done(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
            self._progress.advance(self._task)
        else:
            self.console.print(f"           {text}")

    def note(self, text: str) -> None:
        self.console.print(text)


# -- one run ---------------------------------------------------------------------
@dataclass
class Context:
    procs: P.Procs
    loadgen: Path
    token: str
    pump_port: int
    feedback_port: int
    pump_pid: int
    display: Display
    gateway_src: Path | None = None  # None: the working tree's src/
    runs: int = 0
    floor: Path | None = None  # the floor server's binary
    fd_limit: int = 20_000  # the hard RLIMIT_NOFILE: what one process may hold
    redis: tuple[str, int] | None = None  # the gateway workers' broker (url, pid), if needed
    steering: dict[str, Any] | None = None  # what steer_receives applied for the run
    loadgen_io: str = "uring"  # how the load generator receives (loadgen.c --io)


@dataclass
class Server:
    kind: str
    proc: P.Proc
    port: int
    processes: int = 1
    extra_pids: tuple[int, ...] = ()  # counted with the server (the workers' Redis)
    # The gateway's delivery loops as its /health says ("c", "python"; several if the
    # workers differ): a run of the Python loops must not pass for one of the C loops.
    delivery_loops: str = ""

    def pids(self) -> list[int]:
        """The server's processes now (its workers included) and what it relies on."""
        return [*P.tree(self.proc.pid), *self.extra_pids]


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def pump_mode(ctx: Context, mode: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _http_json(f"http://127.0.0.1:{ctx.pump_port}/bench/mode", mode)
    return result


def gateway_env(scenario: Scenario) -> dict[str, str]:
    """A benchmarked gateway's environment."""
    return {
        **os.environ,
        "JWT_SECRET": SECRET,
        "HLGATEWAY_LOG_LEVEL": os.environ.get("BENCH_GATEWAY_LOG_LEVEL", "WARNING"),
        # The abuse limits would refuse one IP's thousands of connections.
        "HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_IP": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_USER": "0",
        "HLGATEWAY_HANDSHAKE_TIMEOUT": "60",
        "HLGATEWAY_OUTBOX_MAX_BYTES": str(scenario.outbox_max_bytes),
        "HLGATEWAY_SHUTDOWN_TIMEOUT": "2",
        # Fan-out, not restarts: the in-memory engine (bench.durable compares the two).
        "HLGATEWAY_STATE_DIR": "none",
    }


def start_server(ctx: Context, kind: str, scenario: Scenario, tag: str) -> Server:
    port = P.free_port()
    upstream = f"ws://127.0.0.1:{ctx.pump_port}/ws"
    n = scenario.processes or processes_for(scenario.clients, ctx.fd_limit)
    extra: tuple[int, ...] = ()
    loops = ""
    if kind == "gateway":
        env = gateway_env(scenario)
        if ctx.gateway_src is not None:
            env["PYTHONPATH"] = str(ctx.gateway_src)  # ahead of the editable install's src/
        argv = [
            sys.executable,
            "-c",
            "import sys; from hlgateway.cli import main; sys.exit(main())",
        ]
        argv += ["serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--upstream", upstream]
        if n > 1:
            if ctx.redis is None:
                raise RuntimeError(f"{scenario.id}: {n} gateway workers need a broker")
            P.flush_redis(ctx.redis[0])
            argv += ["--workers", str(n), "--broker", ctx.redis[0]]
            extra = (ctx.redis[1],)
        proc = ctx.procs.start(f"{tag}-gateway", P.pinned(argv, SERVER_CORE), env=env)
        proc.wait_line("hlgateway is up", timeout=60)
        loops = wait_gateway(port, n)
    elif kind == "node":
        env = {**os.environ, "JWT_SECRET": SECRET}
        argv = ["node", "server.js", "--port", str(port), "--upstream", upstream]
        argv += ["--depth", str(scenario.depth)]
        if scenario.deflate:
            argv.append("--compress")
        if n > 1:
            argv += ["--cluster", str(n)]
        proc = ctx.procs.start(f"{tag}-node", P.pinned(argv, SERVER_CORE), env=env, cwd=REFERENCE)
        proc.wait_line('"event":"ready"', timeout=60)
    else:
        assert ctx.floor is not None
        argv = [str(ctx.floor), "--port", str(port), "--upstream-port", str(ctx.pump_port)]
        argv += ["--depth", str(scenario.depth), "--procs", str(n)]
        proc = ctx.procs.start(f"{tag}-floor", P.pinned(argv, SERVER_CORE))
        proc.wait_line('"event":"ready"', timeout=60)
    return Server(kind, proc, port, n, extra, loops)


def wait_gateway(port: int, workers: int, timeout: float = 60.0) -> str:
    """Until the market list is loaded in every worker (each names itself in /health);
    returns the delivery loops the workers run (their /health's deliveryLoops)."""
    ready: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            health = _http_json(f"http://127.0.0.1:{port}/health")
            if health.get("upstream", {}).get("marketsLoaded"):
                loops = str(health.get("websocket", {}).get("deliveryLoops", "?"))
                ready[str(health.get("node", ""))] = loops
                if len(ready) >= workers:
                    return ",".join(sorted(set(ready.values())))
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"gateway: market list loaded in {len(ready)} of {workers} workers "
                f"after {timeout:.0f} s"
            )
        time.sleep(0.05 if workers > 1 else 0.2)


def loadgen_argv(
    ctx: Context,
    scenario: Scenario,
    port: int,
    clients: int | None = None,
    src_first: int | None = None,
    detail: bool = False,
) -> list[str]:
    """One load generator's command: `clients` of the scenario's (all by default)."""
    ctx.runs += 1
    n = scenario.clients if clients is None else clients
    connect_timeout = 30 + scenario.clients / 250
    argv = [
        str(ctx.loadgen),
        "--port",
        str(port),
        "--path",
        f"/ws?token={ctx.token}",
        "-n",
        str(n),
        "--warmup",
        str(scenario.warmup),
        "--duration",
        str(scenario.duration),
        "--subscribe",
        scenario.subscribe,
        "--feedback-port",
        str(ctx.feedback_port),
        # A fresh source address per run: no TIME_WAIT left over from earlier runs.
        "--src-first",
        str(src_first if src_first is not None else 2 + (ctx.runs * 3) % 240),
        "--per-src",
        str(PER_SOURCE),
        "--connect-timeout",
        str(connect_timeout),
        "--max-seconds",
        str(connect_timeout + scenario.warmup + scenario.duration + scenario.settle + 120),
        "--io",
        ctx.loadgen_io,
    ]
    if detail:
        argv.append("--detail")
    if scenario.deflate:
        argv.append("--deflate")
    if scenario.slow:
        argv += ["--slow", str(scenario.slow), "--slow-after", str(scenario.slow_after)]
        if scenario.slow_rcvbuf:
            argv += ["--slow-rcvbuf", str(scenario.slow_rcvbuf)]
    return P.pinned(argv, CLIENT_CORE)


PER_SOURCE = 10_000  # connections per source address 127.0.0.x (ephemeral ports: ~28k)


def loadgen_argvs(ctx: Context, scenario: Scenario, port: int) -> list[list[str]]:
    """The scenario's clients over as many load generators as their open-file limit needs,
    each on source addresses of its own (window mode needs one: the pump's feedback)."""
    k = loadgens_for(scenario.clients, ctx.fd_limit)
    if k == 1:
        return [loadgen_argv(ctx, scenario, port)]
    if scenario.mode == "window":
        raise ValueError(f"{scenario.id}: window mode needs one load generator")
    shares = [scenario.clients // k + (1 if i < scenario.clients % k else 0) for i in range(k)]
    addresses = sum(math.ceil(share / PER_SOURCE) for share in shares)
    first = 2 + (ctx.runs * 7) % max(1, 250 - addresses)
    out = []
    for share in shares:
        out.append(loadgen_argv(ctx, scenario, port, share, first, detail=True))
        first += math.ceil(share / PER_SOURCE)
    return out


def _follow(
    ctx: Context,
    lg: P.Proc,
    until: Callable[[dict[str, Any]], bool] | None,
    timeout: float,
    label: str,
) -> dict[str, Any] | None:
    """Show the load generator's progress lines; return the first line `until` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lg.lines.get(timeout=0.2)
        except queue.Empty:
            if not lg.alive():
                return None
            continue
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "progress":
            ctx.display.status(
                f"{label}: {event['phase']} open {event['open']:,} "
                f"{event['msgs_per_s']:,.0f} msg/s (loadgen cpu {event['cpu']:.1f} s)"
            )
        elif event.get("event") == "error":
            ctx.display.note(f"loadgen: {event.get('message')}")
        if until is not None and until(event):
            return event
    if until is not None:
        raise TimeoutError(f"loadgen: no ready line in {timeout:.0f} s")
    return None


def send_queues(port: int) -> dict[str, int]:
    """Bytes in the kernel send queues of the server's sockets (`ss`), and how many are > 64 KiB."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    queues = [int(line.split()[1]) for line in out.splitlines() if len(line.split()) > 2]
    return {
        "sockets": len(queues),
        "bytes": sum(queues),
        "over_64k": sum(1 for q in queues if q > 65536),
        "max": max(queues, default=0),
    }


def _ready(ctx: Context, lgs: list[P.Proc], timeout: float, label: str) -> dict[str, Any]:
    """Every load generator's ready line, summed up."""
    lines = []
    for lg in lgs:
        line = _follow(ctx, lg, lambda e: e.get("event") == "ready", timeout, label)
        assert line is not None
        lines.append(line)
    return {
        "event": "ready",
        **{key: sum(int(line[key]) for line in lines) for key in ("open", "subscribed", "failed")},
        "seconds": max(float(line["seconds"]) for line in lines),
    }


def _held_rss(ctx: Context, server: Server, lgs: list[P.Proc], settle: float, label: str) -> int:
    """The server's RSS (all its processes) once the connections have settled."""
    end = time.monotonic() + settle
    while time.monotonic() < end:
        _follow(ctx, lgs[0], None, 0.5, label)
    pids = server.pids()
    rss = [P.group_rss_kib(pids)]
    for _ in range(3):
        time.sleep(0.3)
        rss.append(P.group_rss_kib(pids))
    return max(rss)


def run_once(ctx: Context, scenario: Scenario, kind: str, rep: int) -> dict[str, Any]:
    tag = f"{scenario.key}-{scenario.clients}-{kind}-{rep}"
    label = f"{kind} {scenario.id} #{rep + 1}"
    ctx.display.begin(label)
    server = start_server(ctx, kind, scenario, tag)
    lgs: list[P.Proc] = []
    sampler: P.Sampler | None = None
    try:
        time.sleep(1.0)
        started = server.pids()
        rss_base = P.group_rss_kib(started)
        if scenario.mode == "rate" and scenario.rate <= 1 and scenario.ticks_while_connecting:
            # Clients join a server that is already broadcasting, as they would in
            # production: its book snapshot is there for each new subscriber (with
            # --workers and no snapshot yet, each would be a Redis read).
            pump_mode(ctx, {"mode": "rate", "rate": scenario.rate})
        for i, argv in enumerate(loadgen_argvs(ctx, scenario, server.port)):
            lgs.append(ctx.procs.start(f"{tag}-loadgen{i}", argv, watch="stderr", stdin=True))
        connect_timeout = 30 + scenario.clients / 250
        ready = _ready(ctx, lgs, connect_timeout + 30, label)
        result: dict[str, Any] = {
            "server": kind,
            "scenario": scenario.id,
            "rep": rep,
            "ready": ready,
            "server_processes": server.processes,
            "delivery_loops": server.delivery_loops,
            "load_generators": len(lgs),
            "rss_base_kib": rss_base,
        }
        if scenario.mode == "idle" or scenario.hold_rss:
            # Before any tick: what holding the connections costs.
            result["rss_kib"] = _held_rss(ctx, server, lgs, scenario.settle, label)
        if scenario.mode != "idle":
            pids = server.pids()
            sampler = P.Sampler(pids[0], extra=pids[1:]).start()
            cpu = P.CpuWindow({"server": pids, "pump": ctx.pump_pid})
            if scenario.mode == "window":
                pump_mode(ctx, {"mode": "window", "window": scenario.window})
            else:
                pump_mode(ctx, {"mode": "rate", "rate": scenario.rate})
            for lg in lgs:
                assert lg.popen.stdin is not None
                lg.popen.stdin.write(b"go\n")
                lg.popen.stdin.flush()
            _follow(ctx, lgs[0], None, scenario.warmup, label)
            cpu.begin()
            drops = backlog_drops()
            if scenario.slow:
                # Where the slow clients' backlog sits at the end: the kernel's send queues.
                _follow(ctx, lgs[0], None, max(scenario.duration - 1.0, 0.0), label)
                result["send_queues"] = send_queues(server.port)
            for lg in lgs:
                _follow(ctx, lg, None, scenario.duration + 60, label)
            result["backlog_drops"] = backlog_drops() - drops
            result["steering_intact"] = still_applied(ctx.steering or {})
            pump = pump_mode(ctx, {"mode": "idle"})
            sampler.stop()
            result["pump"] = pump
            result["cpu_window"] = cpu
        # communicate() closes stdin: an idle load generator reports and exits.
        reports = []
        for lg in lgs:
            out, _ = lg.popen.communicate(timeout=60)
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        report = loadgens.merge(reports)
        result["loadgen"] = report
        # Did the server survive it whole (no process died or was replaced)?
        ended = set(server.pids())
        result["alive"] = server.proc.alive()
        result["processes_lost"] = len(set(started) - ended)
        if isinstance(result.get("cpu_window"), P.CpuWindow):
            window: P.CpuWindow = result.pop("cpu_window")
            measured = report["phases"].get("measure", {})
            slow = report["phases"].get("slow")
            lg_util = measured.get("cpu_util", 0.0)
            if slow:
                total = measured.get("seconds", 0) + slow.get("seconds", 0)
                cpu_s = measured.get("cpu_seconds", 0) + slow.get("cpu_seconds", 0)
                lg_util = cpu_s / total if total else 0.0
            result["cpu"] = window.end({"loadgen": lg_util})
        if sampler is not None:
            result["rss_series"] = [(round(t, 2), rss) for t, rss, _ in sampler.samples]
            result["rss_max_kib"] = sampler.max_rss_kib
        result["metrics"] = metrics(scenario, result)
        ctx.display.done(f"{label}: {summary_line(scenario, result['metrics'])}")
        return result
    finally:
        if sampler is not None:
            sampler.stop()
        with contextlib.suppress(Exception):
            pump_mode(ctx, {"mode": "idle"})
        for lg in lgs:
            ctx.procs.stop(lg)
        # A supervisor drains its workers first (HLGATEWAY_SHUTDOWN_TIMEOUT 2 s, + 10).
        left = ctx.procs.stop(server.proc, timeout=20.0 if server.processes > 1 else 5.0)
        if left:
            ctx.display.note(f"{label}: {left} processes of the server had to be killed")


# -- metrics -------------------------------------------------------------------------
def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


def metrics(scenario: Scenario, result: dict[str, Any]) -> dict[str, Any]:
    lg = result["loadgen"]
    m: dict[str, Any] = {
        "clients": scenario.clients,
        "open": lg["open"],
        "failed": lg["failed"],
        "connect_s": round(lg["connect_seconds"], 2),
        "accepts_per_s": round(lg["open"] / lg["connect_seconds"]) if lg["connect_seconds"] else 0,
        "server_processes": result.get("server_processes", 1),
        "delivery_loops": result.get("delivery_loops", ""),
        "load_generators": result.get("load_generators", 1),
        "alive": result.get("alive", True),
        "processes_lost": result.get("processes_lost", 0),
        "refused_http": lg.get("fail_status", {}),
        "refused_eof": lg.get("fail_eof", 0),
        "refused_errno": lg.get("fail_errno", {}),
    }
    if "rss_kib" in result:
        held = max(lg["open"], 1)
        m["rss_base_mib"] = round(result["rss_base_kib"] / 1024, 1)
        m["rss_mib"] = round(result["rss_kib"] / 1024, 1)
        m["kib_per_conn"] = round((result["rss_kib"] - result["rss_base_kib"]) / held, 2)
    if scenario.mode == "idle":
        return m
    measure = lg["phases"].get("measure", {})
    readers = max(lg["expected_readers"], 1) if not scenario.deflate else max(lg["open"], 1)
    m.update(
        {
            "msgs_per_s": round(measure.get("msgs_per_s", 0.0)),
            "ticks_per_s": round(measure.get("msgs_per_s", 0.0) / readers, 1),
            "latency_p50_ms": _ms(measure["latency_us"]["p50"]),
            "latency_p99_ms": _ms(measure["latency_us"]["p99"]),
            "latency_max_ms": _ms(measure["latency_us"]["max"]),
            "latency_samples": measure["latency_us"]["count"],
            # Per tick, the first client's latency: the way through the server
            # (and across nodes) without the fan-out's spread.
            "first_p50_ms": _ms(measure["first_us"]["p50"]),
            "first_p99_ms": _ms(measure["first_us"]["p99"]),
            "completion_p50_ms": _ms(measure["completion_us"]["p50"]),
            "completion_p99_ms": _ms(measure["completion_us"]["p99"]),
            "completion_max_ms": _ms(measure["completion_us"]["max"]),
            "ticks_complete": measure.get("ticks_complete", 0),
            "ticks_incomplete": measure.get("ticks_incomplete", 0),
            "per_conn_min": measure.get("per_conn_msgs", {}).get("min", 0),
            "per_conn_max": measure.get("per_conn_msgs", {}).get("max", 0),
            "bytes_per_msg": round(measure["wire_bytes"] / measure["msgs"], 1)
            if measure.get("msgs")
            else 0.0,
            "compressed_share": round(measure["compressed_frames"] / measure["msgs"], 3)
            if measure.get("msgs")
            else 0.0,
            "disconnects": measure.get("disconnects", 0),
            "loadgen_cpu": round(measure.get("cpu_util", 0.0), 3),
            "server_cpu": result.get("cpu", {}).get("server", 0.0),
            # The server's CPU (every process of it) per delivered message, in us.
            "cpu_us_per_msg": round(
                result.get("cpu", {}).get("server", 0.0) * 1e6 / measure["msgs_per_s"], 2
            )
            if measure.get("msgs_per_s")
            else 0.0,
            "pump_cpu": result.get("cpu", {}).get("pump", 0.0),
            "other_cpu": result.get("cpu", {}).get("other", 0.0),
            "core0_busy": result.get("cpu", {}).get("cpu0_busy", 0.0),
            "core0_irq": result.get("cpu", {}).get("cpu0_irq", 0.0),
            "core1_busy": result.get("cpu", {}).get("cpu1_busy", 0.0),
            "server_rss_max_mib": round(result.get("rss_max_kib", 0) / 1024, 1),
            "pump_timeouts": result.get("pump", {}).get("timeouts", 0),
            # Packets the receiving core's backlog dropped (TCP resends them 200+ ms later).
            "backlog_drops": result.get("backlog_drops", 0),
            # False: another run on the machine changed the receive steering meanwhile.
            "steering_intact": result.get("steering_intact", True),
            "pump_late_sends": result.get("pump", {}).get("late_sends", 0),
            "deflate_negotiated": lg["deflate_negotiated"],
            "close_codes": lg["close_codes"],
        }
    )
    if scenario.mode == "rate":  # every subscribed client reads in the measure phase
        m["demand_msgs_per_s"] = round(scenario.rate * max(lg["subscribed"], 1))
    slow = lg["phases"].get("slow")
    if slow:
        healthy = scenario.clients - scenario.slow
        series = result.get("rss_series", [])
        start = scenario.warmup + scenario.slow_after
        before = [rss for t, rss in series if t <= start] or [0]
        m.update(
            {
                "slow_msgs_per_s": round(slow.get("msgs_per_s", 0.0)),
                "slow_demand_msgs_per_s": round(scenario.rate * healthy),
                "slow_latency_p50_ms": _ms(slow["latency_us"]["p50"]),
                "slow_latency_p99_ms": _ms(slow["latency_us"]["p99"]),
                "slow_completion_p99_ms": _ms(slow["completion_us"]["p99"]),
                "slow_per_conn_min": slow.get("per_conn_msgs", {}).get("min", 0),
                "slow_disconnects": slow.get("disconnects", 0),
                "slow_seconds": round(slow.get("seconds", 0.0), 1),
                "rss_at_slow_start_mib": round(before[-1] / 1024, 1),
                "rss_growth_mib": round((result.get("rss_max_kib", 0) - before[-1]) / 1024, 1),
                "kernel_sendq_mib": round(result.get("send_queues", {}).get("bytes", 0) / MIB, 1),
                "kernel_sendq_max_kib": round(result.get("send_queues", {}).get("max", 0) / 1024),
            }
        )
    return m


def summary_line(scenario: Scenario, m: dict[str, Any]) -> str:
    if scenario.mode == "idle":
        return (
            f"{m['open']:,} open, {m['kib_per_conn']:.2f} KiB/conn "
            f"(RSS {m['rss_base_mib']} -> {m['rss_mib']} MiB)"
        )
    text = (
        f"{m['msgs_per_s']:,} msg/s, latency p50 {m['latency_p50_ms']:.1f} / "
        f"p99 {m['latency_p99_ms']:.1f} ms, completion p50 {m['completion_p50_ms']:.1f} / "
        f"p99 {m['completion_p99_ms']:.1f} ms, {m['cpu_us_per_msg']:.2f} us CPU/msg, "
        f"cpu server {m['server_cpu']:.2f} loadgen {m['loadgen_cpu']:.2f} "
        f"other {m['other_cpu']:.2f}; core0 {m['core0_busy']:.2f} core1 {m['core1_busy']:.2f}"
    )
    if m.get("delivery_loops"):
        text += f"; delivery loops: {m['delivery_loops']}"
    if "kib_per_conn" in m:
        text += f"; {m['open']:,} open ({m['accepts_per_s']:,}/s), {m['kib_per_conn']:.2f} KiB/conn"
    if not m.get("steering_intact", True):
        text += "; **receive steering changed by something else during the run**"
    if m.get("backlog_drops"):
        text += f"; {m['backlog_drops']:,} packets dropped by the backlog"
    if m["failed"] or not m["alive"] or m["processes_lost"]:
        text += (
            f"; refused {m['failed']:,} (HTTP {m['refused_http']}, closed {m['refused_eof']}, "
            f"errors {m['refused_errno']}); alive {m['alive']}, lost {m['processes_lost']}"
        )
    if "slow_msgs_per_s" in m:
        text += (
            f"; slow phase {m['slow_msgs_per_s']:,}/{m['slow_demand_msgs_per_s']:,} msg/s, "
            f"p99 {m['slow_latency_p99_ms']:.1f} ms, slow dropped {m['slow_disconnects']}, "
            f"RSS +{m['rss_growth_mib']} MiB"
        )
    return text


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario id -> server -> median of each numeric metric over the repetitions."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["scenario"], {}).setdefault(run["server"], []).append(run["metrics"])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario_id, by_server in grouped.items():
        for server, items in by_server.items():
            merged: dict[str, Any] = {"repeats": len(items)}
            for key in items[0]:
                values = [item[key] for item in items if key in item]
                if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                    median = statistics.median(values)
                    merged[key] = round(median, 3) if isinstance(median, float) else median
                    if len(values) > 1:
                        merged[f"{key}_runs"] = values
                else:
                    merged[key] = values[-1]
            out.setdefault(scenario_id, {})[server] = merged
    return out


# -- the whole run ---------------------------------------------------------------------
def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "run"


@contextlib.contextmanager
def pump_process(procs: P.Procs, channel: str = "l2Book") -> Iterator[tuple[P.Proc, int, int]]:
    argv = [sys.executable, "-m", "bench.fanout.pump", "--port", "0", "--channel", channel]
    proc = procs.start("pump", P.pinned(argv, CLIENT_CORE), cwd=ROOT)
    ready = json.loads(proc.wait_line('"event": "ready"', timeout=60))
    try:
        yield proc, int(ready["port"]), int(ready["feedback_port"])
    finally:
        procs.stop(proc)


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the scenarios of `new` replaced by `new`'s runs (same label, same machine)."""
    replaced = {s["id"] for s in new["scenarios"]}
    runs = [r for r in old["runs"] if r["scenario"] not in replaced] + new["runs"]
    scenarios = [s for s in old["scenarios"] if s["id"] not in replaced]
    scenarios += new["scenarios"]
    order = [s["id"] for s in old["scenarios"]]
    scenarios.sort(key=lambda s: order.index(s["id"]) if s["id"] in order else len(order))
    merged = {**old, "scenarios": scenarios, "runs": runs}
    merged["aggregate"] = aggregate([r for r in runs if "metrics" in r])
    merged["failures"] = [r for r in runs if "error" in r]
    merged["interrupted"] = old.get("interrupted", False) or new["interrupted"]
    merged["seconds"] = old["seconds"] + new["seconds"]
    merged["reruns"] = [
        *old.get("reruns", []),
        {"date": new["date"], "command": new["command"], "scenarios": sorted(replaced)},
    ]
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer sizes (~3 min)")
    parser.add_argument(
        "--label",
        default="baseline",
        help="the design measured; its results file and section (default: baseline)",
    )
    parser.add_argument("--description", default="", help="one line about the design measured")
    parser.add_argument(
        "--only", nargs="*", default=[], help="scenario keys to run (e.g. saturation idle)"
    )
    parser.add_argument("--servers", nargs="*", default=list(SERVERS), choices=SERVERS)
    parser.add_argument(
        "--clients", nargs="*", type=int, default=[], help="only scenarios with these client counts"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="repetitions of every scenario run (default: the plan's, 3 for saturation, else 1)",
    )
    parser.add_argument("--plain", action="store_true", help="plain progress lines")
    parser.add_argument(
        "--gateway-ref",
        help="measure the gateway of this git commit (exported with git archive) instead of "
        "the working tree's src/",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/")
    parser.add_argument(
        "--loadgen-io",
        choices=("uring", "epoll"),
        default="uring",
        help="how the load generator receives: io_uring multishot recv (default; epoll where "
        "io_uring is unavailable) or epoll_wait + recv (the load generator before issue 24's "
        "re-measurement)",
    )
    parser.add_argument(
        "--no-steering",
        action="store_true",
        help="leave loopback receives on the sending core (see bench/fanout/steering.py)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those scenarios' runs in the label's recorded results "
        "(or start them)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild docs/benchmarks.md and the plots from docs/bench/results-*.json",
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="docs directory (default docs/)")
    args = parser.parse_args(argv)
    if args.report_only:
        from bench.fanout import report

        print(f"report: {report.write_docs(args.out, args.out / 'bench')}", file=sys.stderr)
        return 0

    if shutil.which("node") is None or shutil.which("cc") is None:
        print("bench.fanout needs `node` and `cc` on PATH", file=sys.stderr)
        return 2
    info = machine()
    scenarios = plan(args.quick, int(info["fd_hard_limit"]))
    if args.only:
        keys = {key for only in args.only for key in ALIASES.get(only, (only,))}
        scenarios = [s for s in scenarios if s.key in keys]
    if args.clients:
        scenarios = [s for s in scenarios if s.clients in args.clients]
    if args.repeats:
        scenarios = [dataclasses.replace(s, repeats=args.repeats) for s in scenarios]
    command = shlex.join(
        ["python", "-m", "bench.fanout", *(argv if argv is not None else sys.argv[1:])]
    )
    fd_limit = int(info["fd_hard_limit"])

    def servers_of(scenario: Scenario) -> list[str]:
        return [kind for kind in args.servers if scenario.runs_on(kind)]

    total = sum(s.repeats * len(servers_of(s)) for s in scenarios)
    need_redis = "gateway" in args.servers and any(
        (s.processes or processes_for(s.clients, fd_limit)) > 1 for s in scenarios
    )
    gateway_src: Path | None = None
    gateway_source = f"working tree ({git_commit()})"
    if args.gateway_ref:
        gateway_src, sha = export_ref(args.gateway_ref)
        build_delivery(gateway_src)  # else an old commit would run its pure-Python loops
        gateway_source = f"commit {sha} (git archive of src/)"
    loadgen = build_loadgen()
    floor = build_floor()
    if "node" in args.servers:
        install_reference()
    procs = P.Procs(BUILD / "logs")
    runs: list[dict[str, Any]] = []
    started = time.time()
    interrupted = False
    with (
        procs.session(),
        Display(total, args.plain) as display,
        steer_receives(CLIENT_CORE, not args.no_steering) as steering,
    ):
        display.note(
            f"bench.fanout: {len(scenarios)} scenarios, {total} runs; servers on core "
            f"{SERVER_CORE}, load generator and pump on core {CLIENT_CORE}; "
            f"{describe(steering)}; logs in {BUILD / 'logs'}"
        )
        try:
            with (
                pump_process(procs) as (pump, pump_port, feedback_port),
                contextlib.ExitStack() as stack,
            ):
                ctx = Context(
                    procs,
                    loadgen,
                    issue_bench_token(),
                    pump_port,
                    feedback_port,
                    pump.pid,
                    display,
                    gateway_src,
                    floor=floor,
                    fd_limit=fd_limit,
                    redis=stack.enter_context(P.own_redis(procs, SERVER_CORE))
                    if need_redis
                    else None,
                    steering=steering,
                    loadgen_io=args.loadgen_io,
                )
                for scenario in scenarios:
                    for rep in range(scenario.repeats):
                        for kind in servers_of(scenario):
                            try:
                                runs.append(run_once(ctx, scenario, kind, rep))
                            except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
                                display.done(f"{kind} {scenario.id} #{rep + 1}: FAILED: {exc}")
                                runs.append(
                                    {
                                        "server": kind,
                                        "scenario": scenario.id,
                                        "rep": rep,
                                        "error": str(exc),
                                    }
                                )
        except KeyboardInterrupt:
            interrupted = True
            display.note("interrupted: stopping every process, writing what was measured")
    good = [r for r in runs if "metrics" in r]
    results: dict[str, Any] = {
        "label": args.label,
        "description": args.description,
        "commit": gateway_source,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command.strip(),
        "quick": args.quick,
        "interrupted": interrupted,
        "seconds": round(time.time() - started),
        "machine": info,
        "placement": {
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "taskset": shutil.which("taskset") is not None and P.cpu_count() > CLIENT_CORE,
            "receive_steering": steering,
            "loadgen_io": args.loadgen_io,
        },
        "scenarios": [s.as_dict() for s in scenarios],
        "aggregate": aggregate(good),
        "failures": [r for r in runs if "error" in r],
        "runs": runs,
    }
    from bench.fanout import report

    out_dir: Path = args.out
    results_dir = out_dir / "bench"
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"results-{slug(args.label)}.json"
    if args.merge and not args.quick:
        if path.exists():  # else these runs start the label's results
            results = merge(json.loads(path.read_text()), results)
    elif args.quick or args.only or args.no_docs:
        path = BUILD / f"results-{slug(args.label)}{'-quick' if args.quick else ''}.json"
        BUILD.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(report.console_table(results), file=sys.stderr)
    print(f"results: {path}", file=sys.stderr)
    if not (args.no_docs or args.quick or (args.only and not args.merge)):
        doc = report.write_docs(out_dir, results_dir)
        print(f"report: {doc}", file=sys.stderr)
    elif not args.no_docs:
        # A quick or partial run does not replace the recorded results, but shows its report.
        preview = report.write_docs(BUILD / "preview", results_dir, extra=[path])
        print(f"report preview (docs/ untouched): {preview}", file=sys.stderr)
    return 130 if interrupted else (1 if results["failures"] else 0)


__all__ = ["MIB", "main"]

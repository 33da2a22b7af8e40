"""Run the socket fuzzer against a real `hlgateway serve` process.

    .venv/bin/python -m bench.fuzz [--frames 100000] [--workers 16] [--time-limit 600]

Starts the gateway (embedded simulator, 127.0.0.1, a free port), connects one
well-behaved client that subscribes to live data and keeps reading, then sends
malformed frames from `workers` concurrent raw sockets until `frames` were sent
or `time_limit` passed. Afterwards it checks that the server is alive, that
every fuzz connection is gone, that the well-behaved client kept receiving, and
that the logs hold no unhandled exception. It prints a JSON report.

Traffic goes to 127.0.0.1 only. Each run is bounded in frames and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.fuzz.frames import CLOSE, frame, handshake, scenario
from hlgateway.auth import issue_token

SECRET = "fuzz-secret-fuzz-secret-fuzz-secret-0123"
MAX_MESSAGE = 65536
# aiohttp logs unparsable HTTP requests with a traceback; those were handled (400).
HANDLED = re.compile(r"aiohttp\.http_exceptions\.\w+|BadHttpMessage|BadStatusLine|LineTooLong")


@dataclass
class Report:
    frames_sent: int = 0
    connections: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    crash_details: list[str] = field(default_factory=list)
    server_alive: bool = True
    server_exit_code: int | None = None
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    clients_after: int = -1
    good_client_messages: int = 0
    good_client_messages_during_fuzz: int = 0
    good_client_longest_gap_s: float = 0.0
    good_client_connected: bool = False
    good_client_pings_answered: int = 0
    duration_s: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class GoodClient:
    """Subscribes to live data, counts it, and pings once a second."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.messages = 0
        self.pongs = 0
        self.last = time.monotonic()
        self.longest_gap = 0.0
        self.connected = False
        self.close_code: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"}) as ws,
        ):
            self.connected = True
            for request in (
                {"type": "subscribe", "channel": "prices", "params": {}},
                {"type": "subscribe", "channel": "orderbook", "params": {"symbol": "BTC"}},
                {"type": "subscribe", "channel": "trades", "params": {"symbol": "ETH"}},
            ):
                await ws.send_json(request)
            pinger = asyncio.ensure_future(self._ping(ws, stop))
            try:
                while not stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.5)
                    except TimeoutError:
                        self._gap()
                        continue
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        self.connected = False
                        self.close_code = ws.close_code
                        return
                    kind = json.loads(msg.data)["type"]
                    if kind == "data":
                        self.messages += 1
                        self._gap()
                        self.last = time.monotonic()
                    elif kind == "pong":
                        self.pongs += 1
            finally:
                pinger.cancel()
            self.connected = not ws.closed

    def _gap(self) -> None:
        self.longest_gap = max(self.longest_gap, time.monotonic() - self.last)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(1)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"type": "ping"})


async def fuzz_connection(
    port: int, token: str, rng: random.Random, report: Report, budget: list[int]
) -> None:
    frames, category, abrupt = scenario(rng, MAX_MESSAGE)
    frames = frames[: max(1, budget[0])]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    report.connections += 1
    try:
        if category != "bad_handshake":
            writer.write(handshake(port, token))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"handshake refused: {head[:60]!r}")
        for data in frames:
            writer.write(data)
            budget[0] -= 1
            report.frames_sent += 1
            report.by_category[category] = report.by_category.get(category, 0) + 1
        if not abrupt:  # then a proper close, so the server ends it without waiting
            writer.write(frame(CLOSE, struct.pack("!H", 1000)))
        await writer.drain()
        if abrupt:
            if rng.random() < 0.5:  # an RST instead of a FIN
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        # Read what the server says until it closes (error replies, its close frame).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_drain(reader), 2)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def crashes_in(logs: str) -> list[str]:
    """Log records with a traceback that was not a handled HTTP parse error."""
    found = []
    for record in re.split(r"\n(?=\d{4}-\d\d-\d\d )", logs):
        if ("Traceback" in record or "Exception in callback" in record) and not HANDLED.search(
            record
        ):
            found.append(record.strip().splitlines()[-1][:300])
        elif "never retrieved" in record:
            found.append(record.strip()[:300])
    return found


async def run(
    frames: int = 100_000,
    workers: int = 16,
    time_limit: float = 600.0,
    seed: int = 0,
    log_file: Path | None = None,
) -> Report:
    report = Report()
    port = free_port()
    log_path = log_file or Path(tempfile.mkstemp(prefix="hlgateway-fuzz-", suffix=".log")[1])
    env = {
        **os.environ,
        "JWT_SECRET": SECRET,
        "HLGATEWAY_LOG_LEVEL": "WARNING",
        "HLGATEWAY_SIM_SEED": str(seed),
        "HLGATEWAY_STATE_DIR": "none",  # a fresh gateway for each run
        # One source address makes every fuzz connection: per-IP limits would
        # refuse most of them and the frames would never reach the parser.
        "HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_IP": "0",
        "HLGATEWAY_MAX_CONNECTIONS_PER_USER": "0",
        "HLGATEWAY_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
    }
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hlgateway",
            "serve",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    good: GoodClient | None = None
    good_task: asyncio.Future[None] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, base, proc)
            good = GoodClient(f"ws://127.0.0.1:{port}/ws", issue_token(SECRET, "good"))
            good_task = asyncio.ensure_future(good.run(stop))
            deadline = time.monotonic() + 15
            while good.messages < 5:  # live data flows before the fuzzing starts
                if time.monotonic() > deadline or good_task.done():
                    raise RuntimeError("the well-behaved client received no data")
                await asyncio.sleep(0.05)
            report.rss_before_kib = rss_kib(proc.pid)
            before = good.messages
            good.longest_gap = 0.0

            rng = random.Random(seed)
            budget = [frames]
            token = issue_token(SECRET, "fuzzer", ttl_seconds=3600)
            started = time.monotonic()
            end = started + time_limit

            async def worker(index: int) -> None:
                wrng = random.Random(rng.random() + index)
                while budget[0] > 0 and time.monotonic() < end and proc.returncode is None:
                    try:
                        await fuzz_connection(port, token, wrng, report, budget)
                    except (OSError, RuntimeError, TimeoutError) as exc:
                        if proc.returncode is not None:
                            return
                        report.crash_details.append(f"fuzz connection failed: {exc!r}"[:300])

            await asyncio.gather(*(worker(i) for i in range(workers)))
            report.duration_s = round(time.monotonic() - started, 1)
            report.good_client_messages_during_fuzz = good.messages - before
            report.good_client_longest_gap_s = round(good.longest_gap, 2)

            report.server_alive = proc.returncode is None
            if report.server_alive:
                report.clients_after = await _settle(http, base)
                async with http.get(f"{base}/health") as resp:
                    health = await resp.json()
                report.limits = health.get("limits", {})
                report.rss_after_kib = rss_kib(proc.pid)
            stop.set()
            await asyncio.wait_for(good_task, 5)
            report.good_client_messages = good.messages
            report.good_client_pings_answered = good.pongs
            report.good_client_connected = good.connected
    finally:
        stop.set()
        if good_task is not None and not good_task.done():
            good_task.cancel()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                report.server_exit_code = await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                report.server_exit_code = -9
        else:
            report.server_exit_code = proc.returncode
    logs = log_path.read_text(errors="replace")
    crashes = crashes_in(logs)
    internal = int(report.limits.get("connectionsCut", {}).get("internalErrors", 0))
    report.crash_details = crashes + report.crash_details
    report.crashes = len(crashes) + internal + (0 if report.server_alive else 1)
    if log_file is None:
        log_path.unlink(missing_ok=True)
    return report


async def _ready(http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/health") as resp:
                if resp.status == 200 and (await resp.json())["upstream"]["marketsLoaded"]:
                    return
        if time.monotonic() > deadline or proc.returncode is not None:
            raise RuntimeError("gateway did not become ready")
        await asyncio.sleep(0.1)


async def _settle(http: aiohttp.ClientSession, base: str) -> int:
    """Wait (at most 10 s) until only the well-behaved client is left; return the count."""
    deadline = time.monotonic() + 10
    while True:
        async with http.get(f"{base}/health") as resp:
            clients = int((await resp.json())["websocket"]["clients"])
        if clients <= 1 or time.monotonic() > deadline:
            return clients
        await asyncio.sleep(0.1)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"nproc": os.cpu_count(), "cpu": model}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds, at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-file", type=Path, help="keep the gateway's stderr here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.frames, args.workers, args.time_limit, args.seed, args.log_file))
    out = {**asdict(report), "machine": machine()}
    print(json.dumps(out, indent=2))
    ok = (
        report.crashes == 0
        and report.server_alive
        and report.server_exit_code == 0
        and report.good_client_connected
        and report.clients_after <= 1
    )
    return 0 if ok else 1

"""The C floor server (bench/fanout/floor.c) does the benchmark's job, no less:
it answers a real WebSocket client's upgrade (RFC 6455 accept key), subscribes
it, sends every tick to every client once, in two processes on one port, and
answers a client beyond its open-file limit with a 503 instead of failing.
Two load generators' reports, merged, count the same as one."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from bench.fanout import loadgens
from bench.fanout import pump as pump_mod
from bench.fanout.run import build_floor, build_loadgen, loadgens_for, processes_for
from bench.fanout.scenarios import SUBSCRIBE
from tests.helpers import free_port

TICKS = 20
RATE = 25.0

pytestmark = pytest.mark.requires("cc")


@pytest.fixture
async def floor(
    pump: tuple[pump_mod.Pump, int, int],
    tmp_path: Path,
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    _, pump_port, _ = pump
    binary = await asyncio.to_thread(build_floor, tmp_path)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        "--port",
        str(port),
        "--upstream-port",
        str(pump_port),
        "--procs",
        "2",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert json.loads(line) == {"event": "ready", "port": port, "procs": 2}
    yield port, proc
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 10)


async def _loadgen(binary: Path, port: int, n: int, src_first: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(binary),
        "--port",
        str(port),
        "-n",
        str(n),
        "--warmup",
        "0",
        "--duration",
        str(TICKS / RATE + 1.0),
        "--src-first",
        str(src_first),
        "--detail",
        "--go",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.timeout(60)
async def test_the_floor_serves_every_tick_to_every_client(
    pump: tuple[pump_mod.Pump, int, int],
    floor: tuple[int, asyncio.subprocess.Process],
    tmp_path: Path,
) -> None:
    p, _, _ = pump
    port, _ = floor
    # A real client library checks the handshake (Sec-WebSocket-Accept) and the frames.
    got: list[dict[str, object]] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=x") as ws:
        assert json.loads(await ws.recv()) == {"type": "welcome"}
        await ws.send(SUBSCRIBE.format(depth=1))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await ws.ping()
        binary = await asyncio.to_thread(build_loadgen, tmp_path)
        lgs = [await _loadgen(binary, port, 15, 20 + i) for i in range(2)]
        for lg in lgs:  # every connection open and subscribed before the first tick
            assert lg.stderr is not None
            while b'"event":"ready"' not in await asyncio.wait_for(lg.stderr.readline(), 10):
                pass
        p.set_mode({"mode": "rate", "rate": RATE, "count": TICKS})
        reports = []
        for lg in lgs:
            out, _ = await asyncio.wait_for(lg.communicate(), 20)
            assert lg.returncode == 0
            reports.append(json.loads(out))
        while len(got) < TICKS:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert [m["type"] for m in got] == ["data"] * TICKS
    stamps = [m["data"]["timestamp"] for m in got]  # type: ignore[index]
    assert stamps == sorted(set(stamps))  # each tick once, in order
    assert got[0]["params"] == {"depth": 1, "symbol": "BTC"}
    merged = loadgens.merge(reports)
    assert merged["open"] == merged["subscribed"] == 30
    measure = merged["phases"]["measure"]
    assert measure["msgs"] == 30 * TICKS
    assert measure["per_conn_msgs"] == {"min": TICKS, "p50": TICKS, "max": TICKS}
    assert measure["ticks_complete"] == TICKS and measure["ticks_incomplete"] == 0
    assert measure["latency_us"]["count"] == 30 * TICKS
    assert measure["completion_us"]["count"] == TICKS
    # A tick's completion over both processes is at least either one's.
    for report in reports:
        assert (
            measure["completion_us"]["max"]
            >= report["phases"]["measure"]["completion_us"]["max"] - 1000
        )  # the per-process figure is a histogram bucket's middle


def test_at_its_open_file_limit_the_floor_answers_503(tmp_path: Path) -> None:
    """A floor process allowed 64 open files, offered 100 clients: the rest get 503."""
    binary = build_floor(tmp_path)
    loadgen = build_loadgen(tmp_path)
    port = free_port()
    # Accepting clients needs no ticks: a listener that never answers stands in for
    # the upstream (the floor only needs its TCP connect to succeed).
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    limit = 64
    floor_proc = subprocess.Popen(
        # The shell lowers its own open-file limit, then becomes the floor.
        [
            *("sh", "-c", f'ulimit -n {limit} && exec "$0" "$@"', str(binary)),
            *("--port", str(port), "--upstream-port", str(upstream.getsockname()[1])),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        # The floor reports ready only once subscribed upstream: wait for its listener.
        eventually_listening(port)
        out = subprocess.run(
            [
                *(str(loadgen), "--port", str(port), "-n", "100", "--connect-timeout", "10"),
                *("--max-seconds", "30", "--src-first", "40", "--go", "--warmup", "0"),
                *("--duration", "0.5"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        report = json.loads(out.stdout)
        assert floor_proc.poll() is None  # still serving
    finally:
        floor_proc.terminate()
        floor_proc.wait(10)
        upstream.close()
    assert report["open"] + report["failed"] == 100
    assert report["failed"] > 0 and report["fail_status"] == {"503": report["failed"]}


def eventually_listening(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {port}")
        time.sleep(0.05)


def test_merged_reports_add_up_exactly() -> None:
    """Sans I/O: two processes' reports with the ticks they saw."""

    def report(n: int, ticks: list[list[int]], buckets: list[list[int]]) -> dict[str, object]:
        phase = {
            "seconds": 5.0,
            "msgs": sum(t[3] for t in ticks),
            "msgs_per_s": sum(t[3] for t in ticks) / 5.0,
            "cpu_util": 0.1,
            "per_conn_msgs": {"min": len(ticks), "p50": len(ticks), "max": len(ticks)},
            "latency_us": {"count": sum(c for _, c in buckets), "mean": 10.0, "max": 100},
            "latency_buckets": buckets,
            "ticks": ticks,
        }
        return {
            "n": n,
            "open": n,
            "subscribed": n,
            "expected_readers": n,
            "phases": {"measure": phase},
        }

    # [tick time ms, first receipt us, last receipt us, clients that got it]
    a = report(2, [[1000, 1000_100, 1000_500, 2], [2000, 2000_000, 2000_100, 2]], [[10, 4]])
    b = report(3, [[1000, 1000_200, 1000_900, 3], [2000, 1999_900, 2000_050, 2]], [[20, 5]])
    merged = loadgens.merge([a, b])
    m = merged["phases"]["measure"]
    assert merged["open"] == merged["expected_readers"] == 5
    # Tick 1: all 5 got it, from 1000_100 to 1000_900 us; tick 2: 4 of 5, incomplete.
    assert m["ticks_complete"] == 1 and m["ticks_incomplete"] == 1
    assert m["completion_us"]["max"] == 800 and m["first_us"]["max"] == 100
    assert m["msgs"] == 9
    # 4 samples in bucket 10 and 5 in bucket 20: the median is in bucket 20.
    assert m["latency_us"]["count"] == 9
    assert m["latency_us"]["p50"] == loadgens.bucket_mid(20) == 20.0
    assert m["latency_us"]["p99"] == 20.0
    assert loadgens.bucket_mid(64) == 64.5 and loadgens.bucket_mid(128) == 129.0


def test_a_process_count_fits_the_open_file_limit() -> None:
    assert processes_for(19_900, 20_000) == 1
    assert processes_for(50_000, 20_000) == 3
    assert processes_for(100_000, 20_000) == 6
    assert loadgens_for(100_000, 20_000) == 6
    assert loadgens_for(21_000, 20_000) == 2

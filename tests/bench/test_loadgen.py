"""The fan-out benchmark's load generator counts what the gateway sends, exactly.

An in-process gateway on the benchmark's tick pump; the C load generator (built
here) opens 20 connections, and the pump sends exactly 40 ticks. Every client
must get every tick once: the load generator's totals, its per-tick accounting
and a Python client connected beside it must all agree, whichever way it
receives (--io epoll: epoll_wait + recv; --io uring: io_uring multishot recv).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.fanout import pump as pump_mod
from bench.fanout.run import build_loadgen
from bench.fanout.scenarios import SUBSCRIBE
from hlgateway.auth import issue_token
from hlgateway.upstream.networks import Endpoint
from tests.helpers import SECRET, GatewayServer, eventually, make_settings

CLIENTS = 20
TICKS = 40
RATE = 25.0

pytestmark = pytest.mark.requires("cc")


def _uring_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() == "0"
    except OSError:  # a kernel older than the switch
        return True


async def _python_client(url: str, subscribed: asyncio.Event, counts: list[int]) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(SUBSCRIBE.format(depth=1))
        async for msg in ws:
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == "subscribed":
                subscribed.set()
            elif data["type"] == "data":
                counts.append(data["data"]["timestamp"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("io", ["epoll", "uring"])
async def test_loadgen_counts_every_message(
    pump: tuple[pump_mod.Pump, int, int], tmp_path: Path, io: str
) -> None:
    p, pump_port, feedback_port = pump
    binary = await asyncio.to_thread(build_loadgen, tmp_path)
    settings = make_settings(
        new_connections_per_minute=0, max_connections_per_ip=0, max_connections_per_user=0
    )
    server = GatewayServer(
        Endpoint("bench", f"ws://127.0.0.1:{pump_port}/ws", f"http://127.0.0.1:{pump_port}/info"),
        settings,
    )
    await server.start()
    token = issue_token(SECRET, "bench", ttl_seconds=600)
    python_counts: list[int] = []
    subscribed = asyncio.Event()
    watcher = asyncio.create_task(
        _python_client(f"{server.ws}?token={token}", subscribed, python_counts)
    )
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        lg = await asyncio.create_subprocess_exec(
            str(binary),
            "--port",
            str(server.port),
            "--path",
            f"/ws?token={token}",
            "-n",
            str(CLIENTS),
            "--warmup",
            "0",
            "--duration",
            str(TICKS / RATE + 1.0),
            "--feedback-port",
            str(feedback_port),
            "--src-first",
            "0",
            "--go",
            "--io",
            io,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert lg.stderr is not None
        seen: list[bytes] = []
        while True:  # every connection open and subscribed before the first tick
            line = await asyncio.wait_for(lg.stderr.readline(), 10)
            assert line, "the load generator exited before it was ready"
            seen.append(line)
            if b'"event":"ready"' in line:
                break
        p.set_mode({"mode": "rate", "rate": RATE, "count": TICKS})
        out, rest = await asyncio.wait_for(lg.communicate(), 15)
        notes = b"".join(seen) + rest
        assert lg.returncode == 0
        report = json.loads(out)
        # The Python client may still be reading the last ticks: wait for them.
        await eventually(lambda: len(python_counts) >= TICKS, 5)
        # Nothing more can come: the gateway counted every data message it wrote,
        # and that is exactly one per tick for each of the CLIENTS + 1 connections.
        written = server.gateway.metrics.registry.get_sample_value(
            "hlgateway_messages_out_total", {"channel": "orderbook"}
        )
        assert written == (CLIENTS + 1) * TICKS
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await server.stop()

    assert p.stats.sent == TICKS
    assert len(python_counts) == TICKS == len(set(python_counts))
    # Where io_uring is unavailable the load generator says so and uses epoll.
    # Where io_uring is off (a kernel without it, io_uring_disabled) it says so and uses epoll.
    if io == "uring" and not _uring_enabled():
        assert report["io"] == "epoll" and b"io_uring" in notes
    else:
        assert report["io"] == io, notes
    assert report["open"] == report["subscribed"] == CLIENTS
    assert report["failed"] == 0
    assert report["total_msgs"] == CLIENTS * TICKS
    measure = report["phases"]["measure"]
    assert measure["msgs"] == CLIENTS * TICKS
    assert measure["per_conn_msgs"] == {"min": TICKS, "p50": TICKS, "max": TICKS}
    assert measure["ticks_complete"] == TICKS
    assert measure["ticks_incomplete"] == measure["ticks_open_at_end"] == 0
    assert measure["latency_us"]["count"] == CLIENTS * TICKS
    assert measure["completion_us"]["count"] == TICKS
    assert 0 < measure["latency_us"]["p50"] < 1_000_000
    # One first receipt per tick, never later than the latest receipt of any.
    assert measure["first_us"]["count"] == TICKS
    assert 0 < measure["first_us"]["p50"] <= measure["first_us"]["max"]
    assert measure["first_us"]["max"] <= measure["latency_us"]["max"]
    assert measure["cpu_seconds"] >= 0

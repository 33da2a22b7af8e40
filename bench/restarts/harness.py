"""Restart run: the gateway process killed (-9) and stopped (SIGTERM) again and again
under its clients, against the simulator's ledger.

The simulator runs in this process (its ledger outlives every gateway); a wallet
trades all along (the simulator keeps a wallet trading for `track_grace` after
its last subscription, longer than any downtime here). One `hlgateway serve`
with default settings (durable: its state directory is the default one, under a
temporary XDG_STATE_HOME) reads it; clients of several kinds (a raw client
written from docs/protocol.md, the Python `GatewayClient`; bench.recovery's
kinds) stay subscribed to the wallet's `user_fills`, `user_orders` and
`user_ledger` and come back by themselves with `since`. Again and again the
gateway is killed with -9 or SIGTERM (alternately), stays down 1-20 s while the
wallet trades, and is started again on the same port and directory. At the end
every fill, order transition and ledger event (a deposit, a funding payment) the
simulator produced in the window must have reached every client exactly once, in
order, each resubscribe answered `recovered: true`, every
stream in one epoch with offsets that run without a gap.

`RestartingGateway` is the piece another run reuses (the notifier's, over gateway
restarts: bench/notifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.ledger import Expected, LedgerCheck
from bench.recovery.harness import CHANNELS, KINDS, USER, Received
from hlgateway.auth import issue_token
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import SECRET, GatewayProcess, eventually, free_port

WALLET = "0x" + "e5" * 20
STOPS = ("kill", "sigterm")


class RestartingGateway:
    """One `hlgateway serve` with default settings on a fixed port, stopped and started
    again on the same state directory (the default one, under `home`)."""

    def __init__(self, upstream: str, home: Path, logs: Path) -> None:
        self.port = free_port()
        self.home = home
        self.logs = logs
        self.upstream = upstream
        self.starts = 0
        self.proc: GatewayProcess | None = None

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def state_dir(self) -> Path:
        return self.home / "hlgateway" / f"gateway-127.0.0.1-{self.port}"

    async def start(self) -> float:
        """Start it; the seconds until it serves (health answered, markets loaded)."""
        self.starts += 1
        self.proc = GatewayProcess(
            self.port,
            "--upstream",
            self.upstream,
            state_dir="",  # the default: one directory per listening address
            log_file=self.logs / f"gateway-{self.starts}.log",
            XDG_STATE_HOME=str(self.home),
            HLGATEWAY_LOG_LEVEL="INFO",
            # Clients come back after every restart: more than a person would.
            HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE="0",
        )
        began = time.monotonic()
        await self.proc.start()
        return time.monotonic() - began

    async def stop(self, how: str) -> None:
        assert self.proc is not None
        if how == "kill":
            await self.proc.kill()
        else:
            code = await self.proc.terminate(timeout=40)
            if code != 0:
                raise RuntimeError(f"the gateway exited {code} on SIGTERM")

    async def close(self) -> None:
        if self.proc is not None:
            await self.proc.kill()


@dataclass
class ClientReport:
    kind: str
    connections: int = 0
    resubscribes: int = 0
    recovered: int = 0
    not_recovered: int = 0
    epochs: int = 0
    offset_gaps: int = 0
    ledger: LedgerCheck = field(default_factory=LedgerCheck)

    def ok(self, restarts: int) -> bool:
        return (
            self.ledger.ok()
            and not self.not_recovered
            and not self.offset_gaps
            and self.epochs == len(CHANNELS)
            and self.recovered >= restarts * len(CHANNELS)
        )


@dataclass
class RestartReport:
    restarts: int = 0
    stops: dict[str, int] = field(default_factory=dict)
    downtime_seconds: float = 0.0
    longest_down_seconds: float = 0.0
    start_seconds_max: float = 0.0
    seconds: float = 0.0
    fills_in_downtime: int = 0
    transitions_in_downtime: int = 0
    clients: list[ClientReport] = field(default_factory=list)

    def ok(self) -> bool:
        return bool(self.clients) and all(c.ok(self.restarts) for c in self.clients)

    def as_dict(self) -> dict[str, Any]:
        rows = {k: v for k, v in asdict(self).items() if k != "clients"}
        for client in self.clients:
            for key, value in asdict(client).items():
                if key == "ledger":
                    for name, count in value.items():
                        rows[f"{client.kind}: {name}"] = count
                elif key != "kind":
                    rows[f"{client.kind}: {key}"] = value
        return rows


async def run_restarts(
    restarts: int = 50,
    *,
    clients: tuple[str, ...] = ("raw", "python"),
    down: tuple[float, float] = (1.0, 20.0),
    up: tuple[float, float] = (2.0, 5.0),
    seed: int = 19,
    progress: Callable[[str], None] | None = None,
) -> RestartReport:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="hlgw-restarts-"))
    sim = Simulator(
        SimConfig(
            seed=seed,
            order_interval=0.5,
            max_fill_gap=2.0,
            track_grace=600.0,  # the wallet trades on while no gateway runs
            track_rest_queries=True,
            max_new_connections_per_minute=10_000,
        )
    )
    await sim.start("127.0.0.1", 0)
    gateway = RestartingGateway(sim.ws_url, work / "home", work)
    token = issue_token(SECRET, USER, wallets=[WALLET], ttl_seconds=24 * 3600)
    received = {kind: Received() for kind in clients}
    tasks: list[asyncio.Task[None]] = []
    report = RestartReport()
    downtimes: list[tuple[int, int]] = []
    started = time.monotonic()

    def back(want: int) -> Callable[[], bool]:
        return lambda: all(r.subscribed_replies >= want for r in received.values())

    try:
        report.start_seconds_max = await gateway.start()
        for kind in clients:
            runner = KINDS[kind]()
            tasks.append(asyncio.create_task(runner.run(gateway.ws, token, received[kind])))
        await eventually(back(len(CHANNELS)), 60)
        await eventually(lambda: all(all(r.offsets.values()) for r in received.values()), 60)
        window_start = int(time.time() * 1000) + 1000
        for n in range(restarts):
            await asyncio.sleep(rng.uniform(*up))
            how = STOPS[n % len(STOPS)]
            want = (n + 2) * len(CHANNELS)
            await gateway.stop(how)
            stopped = int(time.time() * 1000)
            seconds = rng.uniform(*down)
            await asyncio.sleep(seconds)
            report.start_seconds_max = max(report.start_seconds_max, await gateway.start())
            downtimes.append((stopped, int(time.time() * 1000)))
            report.restarts += 1
            report.stops[how] = report.stops.get(how, 0) + 1
            report.downtime_seconds += seconds
            report.longest_down_seconds = max(report.longest_down_seconds, seconds)
            await eventually(back(want), 120)
            if progress is not None:
                progress(f"restart {n + 1}/{restarts} ({how}, down {seconds:.1f} s)")
        await asyncio.sleep(2.0)
        cutoff = int(time.time() * 1000) - 1000
        # The clients read user_ledger too (bench.recovery's CHANNELS): its events count.
        expected = Expected(sim, [WALLET], window_start, cutoff, events=True)
        await eventually(lambda: all(expected.received_by(r.got) for r in received.values()), 180)
        report.seconds = round(time.monotonic() - started, 1)
        report.downtime_seconds = round(report.downtime_seconds, 1)
        report.longest_down_seconds = round(report.longest_down_seconds, 1)
        report.start_seconds_max = round(report.start_seconds_max, 2)
        ledger = sim.ledger(WALLET)
        report.fills_in_downtime = sum(
            1 for f in ledger["fills"] if any(a <= f["time"] <= b for a, b in downtimes)
        )
        report.transitions_in_downtime = sum(
            1 for o in ledger["orders"] if any(a <= o["statusTimestamp"] <= b for a, b in downtimes)
        )
        for kind, got in received.items():
            client = ClientReport(
                kind,
                connections=got.connections,
                resubscribes=got.subscribed_replies - len(CHANNELS),
                recovered=got.recovered,
                not_recovered=got.not_recovered,
                epochs=len(got.epochs),
                ledger=LedgerCheck.of(expected, got.got),
            )
            for offsets in got.offsets.values():
                client.offset_gaps += sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
            report.clients.append(client)
        return report
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.close()
        await sim.stop()
        if os.environ.get("HLGATEWAY_KEEP_RESTART_LOGS") is None:
            shutil.rmtree(work, ignore_errors=True)

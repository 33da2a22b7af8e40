"""Forced client reconnects against the simulator's ledger.

One process on 127.0.0.1: simulator, gateway, and a client of a given kind
subscribed to user_fills, user_orders and user_ledger of three busy wallets
(perp and spot fills, deposits, withdrawals, liquidations, funding payments). Again and again
the gateway cuts the client off - a reset with no close frame, a 4008 slow
consumer close, or a 1001 going-away - and the client stays away for a while
before it comes back. At the end every fill, order transition and ledger
event the simulator produced in the window must have reached the client exactly
once, fills in order per wallet, and every stream's offsets must run without a gap.

Client kinds share one interface (`ClientKind`): `raw` is a WebSocket client
written from the protocol document alone (it keeps positions and sends `since`
itself); other kinds plug in the project's SDKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp
import msgspec

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.auth import issue_token
from hlgateway.config import AuthSettings, Settings
from hlgateway.gateway import Gateway
from hlgateway.protocol.errors import CloseCode
from hlgateway.server.runner import start_listening
from hlgateway.simulator import SimConfig, Simulator
from hlgateway.upstream.networks import Endpoint
from tests.helpers import eventually

SECRET = "recovery-secret-recovery-secret-recovery!"
USER = "bot"
WALLETS = ["0x" + "d1" * 20, "0x" + "d2" * 20, "0x" + "d3" * 20]
CHANNELS = ("user_fills", "user_orders", "user_ledger")
CUTS = ("reset", "slow_consumer", "going_away")


class Received:
    """What a client was given, in arrival order (any client kind fills it)."""

    def __init__(self) -> None:
        self.got = Deliveries()
        self.offsets: dict[str, list[int]] = {c: [] for c in CHANNELS}
        self.epochs: set[str] = set()
        self.subscribed_replies = 0
        self.recovered = 0
        self.not_recovered = 0
        self.connections = 0

    def data(self, msg: dict[str, Any]) -> None:
        channel = msg["channel"]
        if channel not in CHANNELS:
            return
        self.offsets[channel].append(msg["offset"])
        self.epochs.add(msg["epoch"])
        self.got.add(channel, msg["data"])

    def subscribed(self, msg: dict[str, Any]) -> None:
        self.subscribed_replies += 1
        if "recovered" in msg:
            if msg["recovered"]:
                self.recovered += 1
            else:
                self.not_recovered += 1


class ClientKind(Protocol):
    """Runs until cancelled: connects, subscribes, and keeps coming back."""

    async def run(self, url: str, token: str, received: Received) -> None: ...


class RawClient:
    """A client written from docs/protocol.md: positions, `since`, reconnect.

    After each break it stays away for a random while (up to `away` seconds).
    """

    def __init__(self, away: float = 2.0, seed: int = 1) -> None:
        self._away = away
        self._rng = random.Random(seed)

    async def run(self, url: str, token: str, received: Received) -> None:
        positions: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                    await self._connection(session, url, token, received, positions)
                await asyncio.sleep(self._rng.uniform(0.05, self._away))

    async def _connection(
        self,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        received: Received,
        positions: dict[str, dict[str, Any]],
    ) -> None:
        async with session.ws_connect(f"{url}?token={token}") as ws:
            received.connections += 1
            for channel in CHANNELS:
                request: dict[str, Any] = {
                    "type": "subscribe",
                    "channel": channel,
                    "params": {"userId": USER},
                }
                if channel in positions:
                    request["since"] = positions[channel]
                await ws.send_str(msgspec.json.encode(request).decode())
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                msg = msgspec.json.decode(frame.data)
                kind = msg.get("type")
                if kind == "subscribed":
                    received.subscribed(msg)
                    channel = msg["channel"]
                    # Without a recovered replay, live data starts after the head.
                    if not msg.get("recovered"):
                        positions[channel] = {"offset": msg["offset"], "epoch": msg["epoch"]}
                elif kind == "data" and msg.get("channel") in CHANNELS:
                    received.data(msg)
                    positions[msg["channel"]] = {"offset": msg["offset"], "epoch": msg["epoch"]}


def _python() -> ClientKind:
    from bench.recovery.sdk import PythonClient  # the SDK's module imports this one

    return PythonClient()


def _js() -> ClientKind:
    from bench.recovery.sdk import JsClient

    return JsClient()


KINDS: dict[str, Callable[[], ClientKind]] = {"raw": RawClient, "python": _python, "js": _js}


@dataclass
class RecoveryReport:
    client: str = ""
    reconnects: int = 0
    cut_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    recovered: int = 0
    not_recovered: int = 0
    ledger: LedgerCheck = field(default_factory=LedgerCheck)
    offset_gaps: int = 0

    def ok(self) -> bool:
        return self.ledger.ok() and not (self.offset_gaps or self.not_recovered)

    def as_dict(self) -> dict[str, Any]:
        rows = asdict(self)
        rows.update(rows.pop("ledger"))
        return rows


async def run_recovery(
    reconnects: int = 100,
    *,
    client: str = "raw",
    connected: tuple[float, float] = (0.3, 1.5),
    seed: int = 13,
    progress: Callable[[str], None] | None = None,
    kind: ClientKind | None = None,
) -> RecoveryReport:
    rng = random.Random(seed)
    sim = Simulator(
        SimConfig(
            seed=seed,
            control=True,
            order_interval=0.2,
            max_fill_gap=0.8,
            idle_timeout=600,
            funding_interval=2.0,
            transfer_interval=1.0,
            liquidation_interval=6.0,
        )
    )
    await sim.start("127.0.0.1", 0)
    settings = Settings(
        auth=AuthSettings(secret=SECRET),
        host="127.0.0.1",
        port=0,
        state_dir="none",  # client reconnects, not restarts: the in-memory engine
        new_connections_per_minute=0,  # the client reconnects far more often than a person
    )
    gateway = Gateway(settings, Endpoint("sim", sim.ws_url, sim.http_url + "/info"))
    await gateway.start()
    runner, site = await start_listening(gateway, settings)
    url = f"ws://127.0.0.1:{site.port}/ws"
    token = issue_token(SECRET, USER, wallets=WALLETS, ttl_seconds=24 * 3600)
    report = RecoveryReport(client=client)
    received = Received()
    runner_kind = kind if kind is not None else KINDS[client]()
    task = asyncio.get_running_loop().create_task(runner_kind.run(url, token, received))
    started = time.monotonic()
    try:
        await asyncio.wait_for(gateway.upstream.markets_loaded.wait(), 10)
        await eventually(lambda: all(received.offsets[c] for c in CHANNELS), 30)
        window_start = int(time.time() * 1000) + 1000

        # Cut only a client that is back: both streams subscribed again since the last cut.
        def is_back(want: int) -> Callable[[], bool]:
            return lambda: received.subscribed_replies >= want

        back = len(CHANNELS)
        for n in range(reconnects):
            await eventually(is_back(back), 30)
            await asyncio.sleep(rng.uniform(*connected))
            cut = CUTS[n % len(CUTS)]
            back = received.subscribed_replies + len(CHANNELS)
            # While it is away, the gateway keeps the streams (and their history).
            _cut(gateway, cut)
            report.reconnects += 1
            report.cut_kinds[cut] = report.cut_kinds.get(cut, 0) + 1
            if progress is not None and (n + 1) % 10 == 0:
                progress(f"reconnect {n + 1}/{reconnects}")
        await eventually(is_back(back), 30)
        cutoff = int(time.time() * 1000) - 500
        expected = Expected(sim, WALLETS, window_start, cutoff, events=True)
        with contextlib.suppress(TimeoutError):  # at most a minute: what is missing is the result
            await eventually(lambda: expected.received_by(received.got), 60)
        report.seconds = round(time.monotonic() - started, 1)
        report.recovered, report.not_recovered = received.recovered, received.not_recovered
        report.ledger = LedgerCheck.of(expected, received.got)
        for offsets in received.offsets.values():
            report.offset_gaps += sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
        return report
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await site.stop()
        await gateway.shutdown(drain_seconds=2)
        await runner.cleanup()
        await sim.stop()


def _cut(gateway: Gateway, kind: str) -> None:
    """End every client connection the way `kind` says."""
    for connection in list(gateway.connections.values()):
        if kind == "reset":
            connection.abort()
        elif kind == "slow_consumer":
            connection.outbox.close(CloseCode.SLOW_CONSUMER, "Slow consumer")
        else:
            connection.outbox.close(CloseCode.GOING_AWAY, "Server going away")

"""Chaos run: continuous order flow (perp and spot) and cashflows while the
simulator drops, stalls, garbles and refuses upstream links; a client connected
to the gateway throughout must receive every fill, order transition and ledger
event (deposit, withdrawal, liquidation, funding payment) in the simulator's
ledger exactly once, fills in order per wallet.

Used by the test suite (a bounded run) and by `python -m bench.chaos` (longer).
Everything runs in one process on 127.0.0.1: simulator, gateway, client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import msgspec

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.auth import issue_token
from hlgateway.config import AuthSettings, Settings
from hlgateway.gateway import Gateway
from hlgateway.server.runner import start_listening
from hlgateway.simulator import SimConfig, Simulator
from hlgateway.upstream.link import LinkState
from hlgateway.upstream.networks import Endpoint
from tests.helpers import eventually

SECRET = "chaos-secret-chaos-secret-chaos-secret!"
WALLETS = ["0x" + "c1" * 20, "0x" + "c2" * 20, "0x" + "c3" * 20]
FAULTS = ("drop_all", "drop_one", "silent_link", "garbage", "refuse", "restart", "stale_book")


@dataclass
class ChaosReport:
    faults: int = 0
    fault_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ledger: LedgerCheck = field(default_factory=LedgerCheck)
    upstream_reconnects: int = 0
    pong_timeouts: int = 0
    stale_resubscribes: int = 0
    stale_recycles: int = 0
    recoveries: int = 0

    def ok(self) -> bool:
        return self.ledger.ok()

    def as_dict(self) -> dict[str, Any]:
        rows = asdict(self)
        rows.update(rows.pop("ledger"))
        return rows


class _Receiver:
    """The gateway client: records every fill and order transition it is given."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.got = Deliveries()
        self.notices: list[str] = []
        self.books = 0
        self.closed = False

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            m = msgspec.json.decode(msg.data)
            if m.get("type") != "data":
                continue
            channel, data = m["channel"], m["data"]
            self.got.add(channel, data)
            if channel == "system":
                self.notices.append(data["event"])
            elif channel == "orderbook":
                self.books += 1
        self.closed = True


async def _request(ws: aiohttp.ClientWebSocketResponse, obj: dict[str, Any]) -> None:
    await ws.send_str(msgspec.json.encode(obj).decode())


async def run_chaos(
    faults: int = 20,
    *,
    interval: float = 1.2,
    seed: int = 11,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    rng = random.Random(seed)
    sim = Simulator(
        SimConfig(
            seed=seed,
            control=True,
            book_interval=0.2,
            order_interval=0.3,
            max_fill_gap=1.0,
            idle_timeout=60.0,
            # Raised on both sides (see the gateway's settings below).
            max_new_connections_per_minute=100_000,
            rest_weight_per_minute=1_000_000,
            # Cashflows often enough that every fault can hit one in flight.
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
        state_dir="none",  # upstream faults, not restarts: the in-memory engine
        upstream_ping_interval=0.5,
        upstream_pong_timeout=1.0,
        upstream_stale_after=1.0,
        upstream_backoff_max=0.5,
        # Production keeps Hyperliquid's budgets; here a fault every second would
        # only make recovery wait for its turn, not change what is delivered.
        upstream_rest_weight=1_000_000,
        upstream_max_new_links=100_000,
    )
    gateway = Gateway(settings, Endpoint("sim", sim.ws_url, sim.http_url + "/info"))
    await gateway.start()
    runner, site = await start_listening(gateway, settings)
    port = site.port
    report = ChaosReport()
    session = aiohttp.ClientSession()
    started = time.monotonic()
    try:
        await asyncio.wait_for(gateway.upstream.markets_loaded.wait(), 10)
        token = issue_token(SECRET, "chaos", wallets=WALLETS, ttl_seconds=3600)
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws?token={token}")
        receiver = _Receiver(ws)
        reader = asyncio.get_running_loop().create_task(receiver.run())
        for channel in ("user_fills", "user_orders", "user_ledger"):
            await _request(
                ws, {"type": "subscribe", "channel": channel, "params": {"userId": "chaos"}}
            )
        await _request(
            ws, {"type": "subscribe", "channel": "orderbook", "params": {"symbol": "BTC"}}
        )
        await _request(ws, {"type": "subscribe", "channel": "system"})
        await eventually(lambda: receiver.books > 0 and len(gateway.upstream.links) >= 2, 10)
        window_start = int(time.time() * 1000) + 1000

        for n in range(faults):
            kind = FAULTS[n % len(FAULTS)] if n < len(FAULTS) else rng.choice(FAULTS)
            _inject(sim, kind, rng, settings)
            report.faults += 1
            report.fault_kinds[kind] = report.fault_kinds.get(kind, 0) + 1
            if progress is not None:
                progress(f"fault {n + 1}/{faults}: {kind}")
            await asyncio.sleep(interval * rng.uniform(0.7, 1.3))

        # Let the upstream heal, then take the ledger up to now and wait for the
        # client to have everything up to that cut.
        await eventually(lambda: _healthy(gateway), 30)
        cutoff = int(time.time() * 1000) - 500
        expected = Expected(sim, WALLETS, window_start, cutoff, events=True)
        # Late is not lost: a loaded machine may still be recovering; wait for it (bounded).
        with contextlib.suppress(TimeoutError):  # at most a minute: what is missing is the result
            await eventually(lambda: expected.received_by(receiver.got), 60)
        await ws.close()
        await reader

        report.seconds = round(time.monotonic() - started, 1)
        report.ledger = LedgerCheck.of(expected, receiver.got)
        for link in gateway.upstream.links:
            report.upstream_reconnects += link.reconnects
            report.pong_timeouts += link.pong_timeouts
            report.stale_resubscribes += link.stale_resubscribes
            report.stale_recycles += link.stale_recycles
        report.recoveries = gateway.feeds.wallets.recoveries
        return report
    finally:
        await session.close()
        await site.stop()
        await gateway.shutdown(drain_seconds=2)
        await runner.cleanup()
        await sim.stop()


def _inject(sim: Simulator, kind: str, rng: random.Random, settings: Settings) -> None:
    links = [link["id"] for link in sim.links()]
    if kind == "drop_all":
        sim.drop()
    elif kind == "drop_one" and links:
        sim.drop(rng.choice(links))
    elif kind == "silent_link" and links:
        # Open but silent, pongs included: only the pong deadline can tell.
        sim.stall({}, settings.upstream_pong_timeout * 2.5, rng.choice(links), silence_pongs=True)
    elif kind == "garbage":
        sim.garbage(4)
    elif kind == "refuse":
        sim.refuse(1.5)
        sim.drop()
    elif kind == "restart":
        sim.restart(down=1.0)
    elif kind == "stale_book":
        # The book stream stalls while the link answers pings: the data-age watchdog's case.
        sim.stall({"type": "l2Book"}, settings.upstream_stale_after * 3.5)


def _healthy(gateway: Gateway) -> bool:
    links = gateway.upstream.links
    connected = bool(links) and all(link.state is LinkState.CONNECTED for link in links)
    return connected and not gateway.feeds.wallets.recovering()

"""aiohttp server speaking Hyperliquid's ``/ws``, ``/info`` and ``/exchange``: the wiring.

The parts, one concept each:
- ``state``: the live state all sides share (model, links, budgets, tracking,
  counters, the clock mapping loop time onto model time);
- ``websocket``: ``GET /ws``, a reader and a writer per link, Hyperliquid's
  per-IP limits (``ClientBudget``) enforced across all of an IP's links;
- ``rest``: ``POST /info`` and ``POST /exchange`` (signed actions: ``exchange``,
  orders resting and matching in the book: ``matching``);
- ``fanout``: the clock task that advances the model and pushes to links;
- ``chaos`` (and ``ledger``, ``counters``): the chaos operations (drop, stall,
  garbage, refuse, restart) and inspection, served over ``/control/*`` with
  ``SimConfig.control`` (see ``control``).

``Simulator`` binds them to one port and offers the chaos operations and the
ledger as public methods too. Those methods are synchronous and must be
called on the simulator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import WSCloseCode, web

from hlgateway.simulator.chaos import Chaos
from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.connection import CLOSE_TIMEOUT
from hlgateway.simulator.control import control_handler
from hlgateway.simulator.fanout import Fanout
from hlgateway.simulator.ledger import wallet_ledger
from hlgateway.simulator.local_account import WARNING, LocalAccount, local_account
from hlgateway.simulator.rest import ExchangeEndpoint, InfoEndpoint
from hlgateway.simulator.state import SimState
from hlgateway.simulator.websocket import WebSocketSide
from hlgateway.simulator.world import SimWorld

log = logging.getLogger("hlgateway.simulator")


class Simulator:
    """An offline Hyperliquid: ``GET /ws`` and ``POST /info`` on one port."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:  # noqa: B008 (frozen)
        self._config = config
        self._state = SimState(config)
        self._chaos = Chaos(self._state)
        self._runner: web.AppRunner | None = None
        self._tls = False
        self._clock: asyncio.Task[None] | None = None
        self._host = ""
        self._port = 0

    @property
    def config(self) -> SimConfig:
        return self._config

    @property
    def local_account(self) -> LocalAccount:
        """The funded account whose key is printed for trading on the simulator."""
        return local_account(self._config.seed)

    def fund(self, user: str, usd: float) -> None:
        """Give ``user`` ``usd`` simulated dollars: it can then trade through /exchange."""
        world = self.world
        world.accounts.fund(user, Decimal(repr(usd)), world.now_ms)

    # -- lifecycle -----------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Bind (port 0: a free port). With `ssl_context`, serve https/wss like Hyperliquid."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        cfg = self._config
        # The wall clock and the loop clock read together: building the world takes a
        # while, and the model clock must not lag the wall clock by that much (clients
        # compare exchange timestamps with their own clocks; `clock_offset` skews it on
        # purpose, as Hyperliquid's own clock may be ahead of or behind a client's).
        t0 = asyncio.get_running_loop().time()
        epoch_ms = (
            cfg.start_ms
            if cfg.start_ms is not None
            else int((time.time() + cfg.clock_offset) * 1000)
        )
        world = SimWorld(
            cfg.seed,
            epoch_ms,
            tick_ms=max(1, round(cfg.tick * 1000)),
            order_interval_ms=max(1, round(cfg.order_interval * 1000)),
            max_fill_gap_ms=max(1, round(cfg.max_fill_gap * 1000)),
            history_ms=round(cfg.history * 1000),
            trade_rate=cfg.trade_rate,
            funding_interval_ms=max(1, round(cfg.funding_interval * 1000)),
            transfer_interval_ms=max(1, round(cfg.transfer_interval * 1000)),
            liquidation_interval_ms=max(1, round(cfg.liquidation_interval * 1000)),
            mainnet=cfg.mainnet,
        )
        if cfg.local_account_usd > 0:
            usd = Decimal(repr(cfg.local_account_usd))
            world.accounts.fund(self.local_account.address, usd, epoch_ms)
        self._state.begin(asyncio.get_running_loop(), world, epoch_ms, t0)
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/ws", WebSocketSide(self._state).handle)
        app.router.add_post("/info", InfoEndpoint(self._state).handle)
        app.router.add_post("/exchange", ExchangeEndpoint(self._state).handle)
        if cfg.control:

            async def handle_control(request: web.Request) -> web.StreamResponse:
                return await control_handler(self, request)

            app.router.add_route("*", "/control/{op:.*}", handle_control)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tls = ssl_context is not None
        bound = runner.addresses[0]
        self._host, self._port = str(bound[0]), int(bound[1])
        self._clock = asyncio.create_task(Fanout(self._state).run(), name="hl-simulator-clock")

    async def stop(self) -> None:
        """Close every client link (1001 going away), the clock and the listener."""
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
        conns = list(self._state.connections.values())
        if conns:
            closing = [
                c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator stopping")
                for c in conns
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), CLOSE_TIMEOUT
                )
            for conn in conns:
                conn.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def http_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._authority()}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self._tls else 'ws'}://{self._authority()}/ws"

    @property
    def world(self) -> SimWorld:
        """The live model (market, accounts and their ledgers), for tests."""
        return self._state.world

    def active_subscriptions(self) -> list[dict[str, Any]]:
        return [
            sub.normalized() for c in self._state.connections.values() for sub in c.subs.values()
        ]

    def connection_count(self) -> int:
        return len(self._state.connections)

    def _authority(self) -> str:
        if self._runner is None:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    # -- control: chaos operations and the ledger ----------------------------
    def links(self) -> list[dict[str, Any]]:
        """Every open link: ``{id, remote, port, subscriptions, stalled, silent}``."""
        return self._chaos.links()

    def drop(self, link: int | None = None) -> int:
        """Abort one link (or all) without a close frame (clients see 1006); how many."""
        return self._chaos.drop(link)

    def drop_connections(self) -> int:
        """Abruptly cut every client link (no close frame), like a server-side drop."""
        return self.drop()

    def stall(
        self,
        match: Mapping[str, Any],
        seconds: float,
        link: int | None = None,
        silence_pongs: bool = False,
    ) -> int:
        """Withhold the data of matching subscriptions for ``seconds``; return how many.

        ``match`` is a subset of a normalised subscription (``{}`` matches all). The
        stall binds to the subscriptions open now: their pushes are skipped (not
        queued) until it ends, while pongs, acks and post answers still flow; an
        unsubscribe ends it, a later subscribe starts fresh. ``silence_pongs``
        also silences the whole link (pongs, acks, everything) for ``seconds``.
        """
        return self.stall_report(match, seconds, link, silence_pongs=silence_pongs)["stalled"]

    def stall_report(
        self,
        match: Mapping[str, Any],
        seconds: float,
        link: int | None = None,
        *,
        silence_pongs: bool = False,
    ) -> dict[str, int]:
        """``stall`` answering ``{"stalled": subscriptions, "links": links affected}``."""
        return self._chaos.stall_report(match, seconds, link, silence_pongs=silence_pongs)

    def garbage(self, count: int, link: int | None = None) -> int:
        """Send ``count`` invalid frames (``chaos.GARBAGE_FRAMES``, cycling) to each target link."""
        return self._chaos.garbage(count, link)

    def refuse(self, seconds: float) -> int:
        """Answer new upgrades with HTTP 503 for ``seconds``; returns when, in model ms."""
        return self._chaos.refuse(seconds)

    def restart(self, down: float = 1.0) -> dict[str, int]:
        """An API server restart: abort every link, refuse upgrades for ``down`` s."""
        return self._chaos.restart(down)

    def ledger(self, user: str) -> dict[str, Any]:
        """Every fill and orderUpdates transition produced for ``user`` (``ledger``)."""
        return wallet_ledger(self.world, user)

    def rest_usage(self) -> dict[str, dict[str, int]]:
        """REST weight per client IP: ``{ip: {lastMinute, total, refused}}``."""
        return self._state.rest_usage()

    def stats(self) -> dict[str, Any]:
        """Counters since start (see the report in ``control``'s docstring)."""
        return self._state.counters.report(
            len(self._state.connections), len(self.world.accounts.tracked_users())
        )


async def run_simulator(host: str, port: int, config: SimConfig) -> None:
    """Serve until cancelled (``hlgateway simulate``); announces the URLs it listens on."""
    sim = Simulator(config)
    await sim.start(host, port)
    log.info("Hyperliquid simulator listening on %s (ws: %s)", sim.http_url, sim.ws_url)
    print(f"Hyperliquid simulator listening on {sim.http_url} (ws: {sim.ws_url})", flush=True)
    if config.local_account_usd > 0:
        account = sim.local_account
        print(
            f"funded local account {account.address} (${config.local_account_usd:,.0f})\n"
            f"  key {account.key}\n"
            f"  ({WARNING}; signatures are checked as "
            f"{'mainnet' if config.mainnet else 'testnet'}: the SDK signs so for any other URL)",
            flush=True,
        )
    if config.control:
        print(f"control API: {sim.http_url}/control/ (links, drop, stall, ...)", flush=True)
    # Our own handlers, as the gateway has: a process started in the background
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await sim.stop()

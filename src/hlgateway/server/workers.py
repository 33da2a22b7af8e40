"""`hlgateway serve --workers N`: N gateway processes on one port, one per core.

Each worker is a complete node (`hlgateway serve --workers 1`) listening on the
same port with SO_REUSEPORT, so the kernel spreads new connections over them;
they share streams, history and upstream leases through the broker (Redis),
which is why `--workers` needs `--broker`. This parent process only starts the
workers, restarts one that dies, and on SIGTERM/SIGINT passes the signal on
and waits for them. With the embedded simulator (`--upstream sim`), the
simulator runs here, once, and every worker reads it: one exchange, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable

from hlgateway.config import Settings

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0


def worker_command(settings: Settings, upstream: str) -> list[str]:
    assert settings.broker is not None
    command = [
        sys.executable,
        "-m",
        "hlgateway",
        "serve",
        "--workers",
        "1",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--upstream",
        upstream,
        "--broker",
        settings.broker,
        "--seed",
        str(settings.sim_seed),
    ]
    if settings.tls_cert and settings.tls_key:
        command += ["--tls-cert", settings.tls_cert, "--tls-key", settings.tls_key]
    return command


def market_list_weight(settings: Settings) -> int:
    """REST weight a minute the market list costs on this upstream: set aside from
    the IP's budget before the split, for whichever worker reads it for all. From the
    setting if given, else estimated (the simulator lists one builder dex, mainnet
    about ten: 280 and 460 a minute at the default 10 s refresh)."""
    from hlgateway.upstream.pool import MAINNET_DEXES, listing_weight_per_minute

    if settings.upstream_market_list_weight:
        return settings.upstream_market_list_weight
    dexes = 1 if settings.upstream == "sim" else MAINNET_DEXES
    return math.ceil(listing_weight_per_minute(settings.context_refresh, 60.0, dexes))


def budget_shares(settings: Settings) -> dict[str, str]:
    """Hyperliquid's limits are per IP, and the workers share this machine's IP:
    each gets its share. A worker whose share is spent leaves a stream's lease
    to another (broker/ownership.py). What every worker needs alike, the market
    list, one of them reads for all (Broker.shared): not N reads of one answer,
    and not paid from the reader's share either (that left a reader on mainnet
    with 4 workers 300 a minute for a list costing 460, and nothing for its own
    wallets): its weight is set aside before the split, and the reader's budget
    holds it while it reads (upstream/pool.py `listing_allowance`)."""
    n = settings.workers
    # Half the budget at most: a misjudged setting must not starve the shares.
    listing = min(market_list_weight(settings), settings.upstream_rest_weight // 2)
    shares = {
        "UPSTREAM_MAX_LINKS": settings.upstream_max_links,
        "UPSTREAM_MAX_SUBSCRIPTIONS": settings.upstream_max_subscriptions,
        "UPSTREAM_MAX_NEW_LINKS": settings.upstream_max_new_links,
        "UPSTREAM_MAX_MESSAGES": settings.upstream_max_messages,
        "UPSTREAM_MAX_WALLETS": settings.upstream_max_wallets,
        "UPSTREAM_REST_WEIGHT": settings.upstream_rest_weight - listing,
        # Order entry: Hyperliquid's 100 posts in flight are per IP too, and so are the
        # budgets' reserves for the data side.
        "POST_MAX_IN_FLIGHT": settings.post_max_in_flight,
        "POST_KEEP_MESSAGES": settings.post_keep_messages,
        "POST_KEEP_WEIGHT": settings.post_keep_weight,
    }
    out = {f"HLGATEWAY_{name}": str(max(1, total // n)) for name, total in shares.items()}
    out["HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT"] = str(listing)
    return out


async def supervise(settings: Settings, banner: Callable[[str], None] | None = None) -> int:
    if settings.port == 0:
        print("hlgateway: --workers needs a fixed --port (they all listen on it)", file=sys.stderr)
        return 2
    simulator = None
    upstream = settings.upstream
    if upstream == "sim":
        from hlgateway.simulator import SimConfig, Simulator

        simulator = Simulator(SimConfig(seed=settings.sim_seed, track_rest_queries=True))
        await simulator.start("127.0.0.1", 0)
        upstream = simulator.ws_url
    command = worker_command(settings, upstream)
    env = {
        **os.environ,
        **budget_shares(settings),
        "HLGATEWAY_REUSE_PORT": "1",
        "HLGATEWAY_WORKERS": "1",
    }
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    workers: dict[int, asyncio.subprocess.Process] = {}

    async def keep(index: int) -> None:
        while not stopping.is_set():
            proc = await asyncio.create_subprocess_exec(
                *command, env={**env, "HLGATEWAY_NODE_NAME": f"{_host()}-w{index}"}
            )
            workers[index] = proc
            code = await proc.wait()
            if stopping.is_set():
                return
            log.warning("worker %d exited with %s; restarting", index, code)
            await asyncio.sleep(RESTART_DELAY)

    keepers = [loop.create_task(keep(i)) for i in range(settings.workers)]
    scheme = "wss" if settings.tls_cert else "ws"
    log.info("%d workers on %s:%d", settings.workers, settings.host, settings.port)
    if banner is not None:
        banner(f"{scheme}://{settings.host}:{settings.port}/ws")
    try:
        await stopping.wait()
    finally:
        stopping.set()
        for proc in workers.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers.values():
            try:
                await asyncio.wait_for(proc.wait(), settings.shutdown_timeout + 10)
            except TimeoutError:
                proc.kill()
        for keeper in keepers:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if simulator is not None:
            await simulator.stop()
    return 0


def _host() -> str:
    import socket

    return socket.gethostname()


def run_workers(settings: Settings, banner: Callable[[str], None] | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(supervise(settings, banner))
    return 0

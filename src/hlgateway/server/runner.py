"""`hlgateway serve`: start the simulator (if asked), the gateway and the HTTP
server; on SIGTERM/SIGINT stop accepting, say goodbye to every client, drain,
and exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable

from aiohttp import web

from hlgateway.broker import EngineStartError
from hlgateway.config import Settings
from hlgateway.gateway import Gateway
from hlgateway.migrations import SchemaError
from hlgateway.server import heap, redact
from hlgateway.server.accept.listener import GuardedSite, listen
from hlgateway.server.access_log import RedactingAccessLogger
from hlgateway.server.app import build_app
from hlgateway.server.capacity import raise_open_files_limit
from hlgateway.upstream.networks import Endpoint, endpoint_for

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    *,
    banner: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT. `banner` receives the gateway's ws URL once it listens."""
    redact.install()  # no token reaches a log line, whoever logs it
    raise_open_files_limit()  # before the Gateway sizes its capacity from it
    parent: int | None = None
    if settings.reuse_port:  # a worker of --workers
        _die_with_parent()
        parent = os.getppid()
    simulator = None
    if settings.upstream == "sim":
        from hlgateway.simulator import SimConfig, Simulator

        # Wallets beyond the WebSocket user limit are polled over REST: let them trade too.
        simulator = Simulator(SimConfig(seed=settings.sim_seed, track_rest_queries=True))
        await simulator.start("127.0.0.1", 0)
        endpoint = Endpoint("sim", simulator.ws_url, simulator.http_url + "/info")
    else:
        endpoint = endpoint_for(settings.upstream, settings.upstream_host)

    gateway = Gateway(settings, endpoint)
    await gateway.start()
    try:
        runner, site = await start_listening(gateway, settings)
    except OSError as exc:
        # Another process has the address (or it is not ours): stop what was started,
        # so that nothing is left open behind the one line `run` prints.
        await gateway.shutdown(0)
        if simulator is not None:
            await simulator.stop()
        raise CannotListen(cannot_listen(settings.host, settings.port, exc)) from None
    frozen = heap.settle()  # start-up's objects: no full collection walks them again
    port = site.port
    scheme = "wss" if settings.tls_cert else "ws"
    log.info(
        "listening on %s:%s (%s), upstream %s (%s), state %s; %d start-up objects frozen",
        settings.host,
        port,
        "TLS" if settings.tls_cert else "plain TCP",
        endpoint.name,
        endpoint.host,
        state_of(settings),
        frozen,
    )
    if banner is not None:
        banner(f"{scheme}://{settings.host}:{port}/ws")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = loop.create_task(_watch_parent(stop, parent)) if parent is not None else None
    try:
        await stop.wait()
    finally:
        if orphan_watch is not None:
            orphan_watch.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("signal received: shutting down")
        await site.stop()  # stop accepting; open connections stay for the goodbye
        await gateway.shutdown(settings.shutdown_timeout)
        await runner.cleanup()
        if simulator is not None:
            await simulator.stop()
        log.info("stopped")


def state_of(settings: Settings) -> str:
    """Where this gateway keeps its state (docs/operations.md, "The state directory"):
    said at start-up, since the default directory outlives the process."""
    from hlgateway.broker.statedir import state_dir_of

    if settings.broker is not None:
        return "in Redis (--broker)"
    directory = state_dir_of(settings.state_dir, settings.host, settings.port)
    return "in memory only (--state-dir none)" if directory is None else f"in {directory}"


def _die_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when its parent dies (`--workers`)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


async def _watch_parent(stop: asyncio.Event, parent: int) -> None:
    """A worker of `--workers` stops when its parent is gone (killed with -9 too):
    by the kernel's signal (`_die_with_parent`) where there is one, by this check
    everywhere."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("the parent of this worker is gone: shutting down")
    stop.set()


async def start_listening(
    gateway: Gateway, settings: Settings, *, shutdown_timeout: float = 5.0
) -> tuple[web.AppRunner, GuardedSite]:
    """The gateway's HTTP and WebSocket server on `settings.host:port` (0: a free port).

    The one way a gateway listens, in production, tests and benchmarks: /ws is
    answered by the request-head protocol (server/accept/), everything else by the aiohttp app.
    """
    runner = web.AppRunner(
        build_app(gateway),
        handle_signals=False,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        return runner, await listen(runner, settings)
    except BaseException:
        await runner.cleanup()
        raise


class CannotListen(Exception):
    """The listening address could not be bound; the text says which and why."""


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """`cannot listen on HOST:PORT: why`, for `serve` and `simulate` alike."""
    # asyncio's bind error repeats the address; the errno says it plainly. An SSLError's
    # errno is the library's own, not the system's.
    code = None if isinstance(exc, ssl.SSLError) else exc.errno
    why = os.strerror(code) if code else str(exc)
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use (another process has it: stop it, or pick another --port)"
    return f"cannot listen on {host}:{port}: {why[0].lower()}{why[1:]}"


def run(settings: Settings, banner: Callable[[str], None] | None = None) -> int:
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    try:
        with contextlib.suppress(KeyboardInterrupt):
            runner(serve(settings, banner=banner))
    except (EngineStartError, SchemaError, CannotListen) as exc:
        print(f"hlgateway: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    return 0

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from hlgateway.simulator import SimConfig, Simulator
from hlgateway.upstream.networks import Endpoint
from tests.helpers import ChildProcess, GatewayServer, make_settings

# Fast order flow so that user streams produce events within a test's patience.
# Wallets that the gateway polls over REST must trade too: track_rest_queries.
FAST_SIM = SimConfig(
    seed=7, book_interval=0.2, order_interval=0.3, max_fill_gap=1.5, track_rest_queries=True
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*programs): programs the test runs (README prerequisites)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs a program the machine lacks fails, naming it: a skip would
    let a run without node, redis-server or a C compiler look green."""
    for marker in item.iter_markers("requires"):
        missing = [name for name in marker.args if shutil.which(name) is None]
        if missing:
            pytest.fail(f"{', '.join(missing)} required by this test (README prerequisites)")


@pytest.fixture(autouse=True, scope="session")
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The user's state directory (the dev secret, the durable engine's default state
    directories) is a temporary one for the whole run, for every process it starts."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state-home"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """A test that fails before it stops its processes must not leave them running."""
    yield
    for proc in list(ChildProcess.running):
        ChildProcess.running.discard(proc)
        if proc.proc is not None and proc.proc.returncode is None:
            proc.proc.kill()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(FAST_SIM)
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


def sim_endpoint(sim: Simulator) -> Endpoint:
    return Endpoint("sim", sim.ws_url, sim.http_url + "/info")


@pytest.fixture
async def server(simulator: Simulator) -> AsyncIterator[GatewayServer]:
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def unlimited_server(simulator: Simulator) -> AsyncIterator[GatewayServer]:
    """For hundreds of connections from one address: no per-IP or per-user limits."""
    settings = make_settings(
        new_connections_per_minute=0, max_connections_per_ip=0, max_connections_per_user=0
    )
    srv = GatewayServer(sim_endpoint(simulator), settings)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()

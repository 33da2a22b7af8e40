"""What we rely on in aiohttp beyond its documented API, tried for real: this
fails if an aiohttp upgrade takes it away (aiohttp is pinned in requirements.lock).

- The gateway's listening site uses only BaseSite's public start/stop hooks:
  `runner.cleanup()` must still stop it.
"""

from __future__ import annotations

import asyncio

import pytest

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import GatewayServer, make_settings


async def test_runner_cleanup_stops_the_guarded_site(simulator: Simulator) -> None:
    server = GatewayServer(sim_endpoint(simulator), make_settings())
    await server.start()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await server.stop()  # the gateway's shutdown, then runner.cleanup()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)

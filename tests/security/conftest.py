from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import make_settings
from tests.security.support import EdgeServer

MakeServer = Callable[..., Awaitable[EdgeServer]]


@pytest.fixture
async def edge_server(simulator: Simulator) -> AsyncIterator[MakeServer]:
    """Start an EdgeServer with settings overrides; stopped at the end of the test."""
    started: list[EdgeServer] = []

    async def make(**overrides: Any) -> EdgeServer:
        srv = EdgeServer(sim_endpoint(simulator), make_settings(**overrides))
        await srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        await srv.stop()

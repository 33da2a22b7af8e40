from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hlgateway.simulator import Simulator
from tests.client.support import PortGateway
from tests.conftest import sim_endpoint
from tests.helpers import free_port, make_settings


@pytest.fixture
async def gateway(simulator: Simulator) -> AsyncIterator[PortGateway]:
    srv = PortGateway(sim_endpoint(simulator), make_settings(), free_port())
    await srv.start()
    yield srv
    await srv.stop()

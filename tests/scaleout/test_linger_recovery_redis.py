"""tests/server/test_linger_recovery.py's overlapping topics on the Redis engine
(`--broker`): the same scenario (`a_topic_let_go_while_another_of_its_wallet_stays`)
on one node on the test's Redis database, in-process so that the linger ends on an
injected clock. The topic let go is given up by the lease holder once its demand
in Redis expires (DEMAND_TTL), which the scenario waits for (`Rig.let_go`), not a
sleep; the wallet's feed goes on meanwhile for the other topic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import make_settings
from tests.server.test_linger_recovery import (
    OVERLAPS,
    Rig,
    a_topic_let_go_while_another_of_its_wallet_stays,
    rig_on,
)


@pytest.fixture
async def rig(redis_url: str) -> AsyncIterator[Rig]:
    async with rig_on(make_settings(broker=redis_url, node_name="solo")) as rig:
        yield rig


@OVERLAPS
async def test_a_topic_let_go_while_another_of_its_wallet_stays(
    rig: Rig, leaves: dict[str, Any], stays: dict[str, Any]
) -> None:
    await a_topic_let_go_while_another_of_its_wallet_stays(rig, leaves, stays)

"""tests/server/test_linger_recovery.py's overlapping topics on the Redis engine
(`--broker`): two `user_fills` topics share a wallet (alice's every wallet, and one
of them named); one is let go after its linger while the other keeps the wallet's
feed running; a client comes back to it with `since`. `recovered: true` must mean
every fill of its absence reached it, once, in order. One node on the test's Redis
database, in-process so that the linger ends on an injected clock; the let-go topic
is given up by the lease holder once its demand in Redis expires (DEMAND_TTL), which
the test waits for, not a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hlgateway.broker.ownership import LeaseCoordinator
from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import ALICE_WALLET, ALICE_WALLET_2, GatewayServer, eventually, make_settings
from tests.server.test_linger_recovery import (
    CASHFLOW_SIM,
    EVERY_WALLET,
    FILLS,
    ONE_WALLET,
    LingerClock,
    Rig,
    check_complete,
    now_ms,
)

# The demand of the topic let go expires (15 s) before its holder stops its feed.
FEED_STOPS = 40.0


@pytest.fixture
async def rig(redis_url: str) -> AsyncIterator[Rig]:
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    clock = LingerClock()
    settings = make_settings(broker=redis_url, node_name="solo")
    srv = GatewayServer(sim_endpoint(sim), settings, linger_clock=clock)
    try:
        await srv.start()
        yield Rig(sim, srv, clock)
    finally:
        await srv.stop()
        await sim.stop()


async def fed_no_more(srv: GatewayServer, wallets: list[str]) -> int:
    """Until the lease holder (this node) stopped feeding the topic let go (the
    `user_fills` topic of `wallets`); the exchange time (ours) from then on."""
    coordinator = srv.gateway.coordinator
    assert isinstance(coordinator, LeaseCoordinator)
    gone = (FILLS, tuple(wallets))
    await eventually(
        lambda: all((t.channel, t.wallets) != gone for t in coordinator.feeding), FEED_STOPS
    )
    return now_ms()


@pytest.mark.parametrize(
    ("leaves", "stays"),
    [(EVERY_WALLET, ONE_WALLET), (ONE_WALLET, EVERY_WALLET)],
    ids=["every-wallet-leaves", "one-wallet-leaves"],
)
async def test_a_topic_let_go_while_another_of_its_wallet_stays(
    rig: Rig, leaves: dict[str, Any], stays: dict[str, Any]
) -> None:
    wallets = [ALICE_WALLET, ALICE_WALLET_2] if leaves == EVERY_WALLET else [ALICE_WALLET]
    first = await rig.connect()
    other = await rig.connect()
    try:
        await first.subscribe(FILLS, leaves)
        await other.subscribe(FILLS, stays)
        start = now_ms() + 500
        await rig.traded(wallets, start, FILLS)
        await first.until(lambda: bool(first.data(FILLS)))
        await first.close()
        await rig.let_go(lingering=1)
        stopped = await fed_no_more(rig.srv, wallets)
        await rig.traded(wallets, stopped + 500, FILLS)  # the other topic's feed runs

        back = await rig.connect()
        try:
            await back.subscribe(FILLS, leaves, since=first.position(FILLS))
            await check_complete(rig, [first, back], FILLS, wallets, start)
        finally:
            await back.close()
    finally:
        await other.close()

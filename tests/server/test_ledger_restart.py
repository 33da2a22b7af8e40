"""`user_ledger` across a restart of a durable gateway (killed with -9): the client
comes back with `since` and gets every deposit, withdrawal, liquidation and funding
payment of the downtime once, in the same epoch - the same paths as fills."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.simulator import Simulator
from tests.conftest import FAST_SIM
from tests.helpers import ALICE_WALLET, GatewayProcess, alice_token, eventually, free_port
from tests.scaleout.support import Listener

CASHFLOW_SIM = dataclasses.replace(
    FAST_SIM, funding_interval=1.0, transfer_interval=0.5, liquidation_interval=3.0
)
SUBSCRIBE = {
    "type": "subscribe",
    "channel": "user_ledger",
    "params": {"userId": "alice", "wallet": ALICE_WALLET},
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _cashflow_since(sim: Simulator, since_ms: int) -> bool:
    ledger = sim.ledger(ALICE_WALLET)
    return any(u["time"] > since_ms for u in ledger["ledgerUpdates"]) and any(
        p["time"] > since_ms for p in ledger["fundings"]
    )


@pytest.fixture
async def cashflows() -> AsyncIterator[Simulator]:
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


async def test_a_killed_gateway_loses_no_ledger_event_of_the_downtime(
    cashflows: Simulator, tmp_path: Path
) -> None:
    gateway = GatewayProcess(
        free_port(), "--upstream", cashflows.ws_url, state_dir=tmp_path / "state"
    )
    await gateway.start()
    listener = Listener([gateway], alice_token(), SUBSCRIBE)
    try:
        listener.start()
        await eventually(listener.subscribed.is_set, 15)
        start = now_ms() + 500
        await eventually(lambda: _cashflow_since(cashflows, start), 15)
        await eventually(lambda: bool(listener.data), 15)
        epoch = {m["epoch"] for m in listener.data}
        await gateway.kill()
        down = now_ms()
        await eventually(lambda: _cashflow_since(cashflows, down), 15)
        await gateway.start()
        await eventually(lambda: listener.connects >= 2, 15)
        again = now_ms()
        await eventually(lambda: _cashflow_since(cashflows, again), 15)
        cutoff = now_ms() - 500
        expected = Expected(cashflows, [ALICE_WALLET], start, cutoff, events=True)
        expected.fills, expected.orders, expected.spot = [], set(), set()  # the ledger only
        got = Deliveries()

        def received() -> bool:
            got.events.clear()
            for message in list(listener.data):
                got.add("user_ledger", message["data"])
            return expected.received_by(got)

        with contextlib.suppress(TimeoutError):
            await eventually(received, 30)
        check = LedgerCheck.of(expected, got)
        assert check.ok(), check
        assert any(down <= t <= cutoff for _, _, t in got.events)  # the downtime had some
        replies = [r for r in listener.replies if r["type"] == "subscribed"]
        assert len(replies) == 2 and replies[1]["recovered"] is True, replies
        assert {m["epoch"] for m in listener.data} == epoch
        offsets = [m["offset"] for m in listener.data]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    finally:
        await listener.stop()
        await gateway.kill()

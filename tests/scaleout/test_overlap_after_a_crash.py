"""Two topics of one channel share a wallet on two nodes, and the node of one is
killed (-9): the topic moves to the node that feeds the wallet for the other.

Node a has one WebSocket wallet slot and feeds alice's named wallet (`{userId,
wallet}`) for a client of its own; node b feeds alice's every wallet (`{userId}`:
placement puts it there, a has no slot for the second wallet). b is killed: it
writes nothing on the way out. The client of b comes back on a with `since`; a
takes the topic over while its feed of the named wallet never stopped. What b
had not delivered, and the fills (or order transitions) of the takeover's wait,
must reach that client once, in order, with `recovered: true`: the topic's own
position, which b kept up to date in Redis while it fed it (`hlgw:pos:<topic
id>:<wallet>`), is behind the wallet's on a, so a reads the difference back for
that topic alone (docs/upstream.md). Real processes, real Redis, the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.simulator import Simulator
from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    Client,
    GatewayProcess,
    alice_token,
    eventually,
)
from tests.scaleout.support import Listener, health, node

FILLS, ORDERS = "user_fills", "user_orders"
TAKEOVER_BOUND = 30.0  # the contract's 10 s, and a loaded machine's slack


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def held(proc: GatewayProcess) -> int:
    return int((await health(proc))["leases"]["held"])


def newest(sim: Simulator, wallet: str, channel: str) -> int:
    ledger = sim.ledger(wallet)
    if channel == FILLS:
        return max((f["time"] for f in ledger["fills"]), default=0)
    return max((o["statusTimestamp"] for o in ledger["orders"]), default=0)


def made_between(sim: Simulator, wallet: str, channel: str, start: int, end: int) -> int:
    ledger = sim.ledger(wallet)
    if channel == FILLS:
        return sum(1 for f in ledger["fills"] if start <= f["time"] <= end)
    return sum(1 for o in ledger["orders"] if start <= o["statusTimestamp"] <= end)


@pytest.mark.parametrize("channel", [FILLS, ORDERS])
async def test_a_topic_moved_off_a_killed_node_to_one_feeding_its_wallet_misses_nothing(
    simulator: Simulator, redis_url: str, tmp_path: Path, channel: str
) -> None:
    a = node(simulator.ws_url, redis_url, tmp_path, "a", HLGATEWAY_UPSTREAM_MAX_WALLETS="1")
    b = node(simulator.ws_url, redis_url, tmp_path, "b")
    wallets = [ALICE_WALLET, ALICE_WALLET_2]
    listener = Listener(
        [b, a],
        alice_token(),
        {"type": "subscribe", "channel": channel, "params": {"userId": "alice"}},
    )
    stays: Client | None = None
    try:
        await a.start()
        stays = await Client.connect(a.ws, alice_token())
        await stays.recv()  # welcome
        reply = await stays.request(
            {
                "type": "subscribe",
                "channel": channel,
                "params": {"userId": "alice", "wallet": ALICE_WALLET},
            },
            timeout=10,
        )
        assert reply["type"] == "subscribed", reply
        await eventually(lambda: _held_is(a, 1), 15, every=0.2)
        await b.start()
        listener.start()
        await asyncio.wait_for(listener.subscribed.wait(), 15)
        await eventually(lambda: _held_is(b, 1), 15, every=0.2)  # a has no slot for wallet 2
        assert await held(a) == 1
        start = now_ms() + 500
        await eventually(lambda: _data_after(listener, start), 30)

        assert b.proc is not None
        b.proc.kill()  # SIGKILL: b writes nothing more
        await b.proc.wait()
        killed_ms = now_ms()
        await eventually(lambda: _held_is(a, 2), TAKEOVER_BOUND, every=0.2)
        took_over_ms = now_ms()
        in_gap = made_between(simulator, ALICE_WALLET, channel, killed_ms, took_over_ms)
        assert in_gap, f"nothing of {channel} was made for the shared wallet in the takeover"

        # More after the takeover, then every client message against the exchange.
        await eventually(lambda: newest(simulator, ALICE_WALLET, channel) > took_over_ms + 500, 30)
        cutoff = now_ms() - 500
        expected = Expected(simulator, wallets, start, cutoff)
        if channel == FILLS:
            expected.orders = set()
        else:
            expected.fills, expected.spot = [], set()
        with contextlib.suppress(TimeoutError):  # the check below says what is missing
            await eventually(lambda: expected.received_by(_got(listener, channel)), 20)
        check = LedgerCheck.of(expected, _got(listener, channel))
        assert check.ok(), f"{channel}: {check}"
        assert listener.connects > 1, "the client never came back with `since`"
        assert all(r.get("recovered", True) for r in listener.replies[1:]), listener.replies
        offsets = [m["offset"] for m in listener.data]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
        assert len({m["epoch"] for m in listener.data}) == 1
        print(
            f"\n{channel}: takeover {(took_over_ms - killed_ms) / 1000:.1f} s after the kill, "
            f"{in_gap} made for the shared wallet meanwhile; {check}"
        )
    finally:
        await listener.stop()
        if stays is not None:
            await stays.close()
        await b.kill()
        await a.kill()


async def _held_is(proc: GatewayProcess, count: int) -> bool:
    return await held(proc) == count


def _data_after(listener: Listener, start: int) -> bool:
    return any(_times(m) and max(_times(m)) > start for m in listener.data)


def _times(message: dict[str, Any]) -> list[int]:
    data = message["data"]
    if "fills" in data:
        return [f["timestamp"] for f in data["fills"]]
    return [data["order"]["timestamp"]]


def _got(listener: Listener, channel: str) -> Deliveries:
    got = Deliveries()
    for message in listener.data:
        got.add(channel, message["data"])
    return got

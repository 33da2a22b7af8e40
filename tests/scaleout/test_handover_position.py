"""A wallet's user stream whose holder is killed (-9): the node that takes the lease
reads back from where the dead one had delivered (its position in Redis, hlgw:pos:*),
not from the stream's first demand, so that the fills made while no node held it reach
every client once, whether it stayed on a live node or came back with `since`."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hlgateway.broker.redis import position_key
from hlgateway.protocol.channels import USER_FILLS
from hlgateway.simulator import Simulator
from hlgateway.upstream.clock import CLOCK_MARGIN_MS
from tests.helpers import ALICE_WALLET, GatewayProcess, alice_token, eventually
from tests.scaleout.support import Listener, holders, node

SUBSCRIBE = {
    "type": "subscribe",
    "channel": "user_fills",
    "params": {"userId": "alice", "wallet": ALICE_WALLET},
}
TAKEOVER_BOUND = 20.0  # the contract's 10 s, and what a loaded machine adds
LATE_DEMAND_MS = 3000


@pytest.fixture
async def fleet(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[GatewayProcess]]:
    procs = [node(simulator.ws_url, redis_url, tmp_path, name) for name in ("a", "b", "c")]
    await asyncio.gather(*(p.start() for p in procs))
    yield procs
    for proc in procs:
        await proc.kill()


async def test_the_new_holder_reads_back_from_the_dead_holders_position(
    fleet: list[GatewayProcess], simulator: Simulator, redis_url: str
) -> None:
    # One client on each node: one of them is on the holder and comes back with
    # `since`, the others stay where they are and get the rest live.
    listeners = [Listener(fleet, alice_token(), SUBSCRIBE) for _ in fleet]
    for first, listener in enumerate(listeners):
        listener.start(first)
    redis = aioredis.Redis.from_url(redis_url)
    pos_key = position_key(USER_FILLS, ALICE_WALLET)
    try:
        await asyncio.gather(*(asyncio.wait_for(li.subscribed.wait(), 15) for li in listeners))
        holder = await _sole_holder(fleet)
        [start_key] = [key async for key in redis.scan_iter(match="hlgw:{*}:start")]
        first_demand = int(await redis.get(start_key) or 0)

        async def delivered_past_the_start() -> bool:
            stored = await redis.get(pos_key)
            return stored is not None and int(stored) > first_demand

        # Fills delivered by the holder moved its stored position past the stream's start.
        await eventually(delivered_past_the_start, 20, every=0.1)

        await holder.kill()
        killed_ms = time.time_ns() // 1_000_000
        position = int(await redis.get(pos_key) or 0)
        # A first demand made again 3 s into the gap (the fleet's demand forgotten and
        # remade): a holder starting from the first demand would lose the fills of
        # those 3 s (one at least: the simulator fills every 1.5 s at the latest);
        # one starting at the position loses none.
        await redis.set(start_key, killed_ms + LATE_DEMAND_MS + CLOCK_MARGIN_MS, keepttl=True)
        survivors = [p for p in fleet if p is not holder]
        successor = await _sole_holder(survivors)
        took_over_ms = time.time_ns() // 1_000_000
        late_ms = killed_ms + LATE_DEMAND_MS

        log_file = successor.log_file
        assert log_file is not None
        said = (
            f"ownership: user_fills of {ALICE_WALLET} from {position} (where it was delivered to)"
        )
        await eventually(lambda: said in log_file.read_text(), 10)

        # Fills keep coming under the successor; then every client is compared with
        # the exchange's own ledger, the gap's fills included.
        await eventually(lambda: _newest(simulator) > took_over_ms + 1000, 20)
        ledger = simulator.ledger(ALICE_WALLET)
        since = ledger["trackedSince"]
        cutoff = _newest(simulator)
        expected = {f["tid"] for f in ledger["fills"] if since < f["time"] <= cutoff}
        in_gap = {f["tid"] for f in ledger["fills"] if killed_ms <= f["time"] <= took_over_ms}
        early = {f["tid"] for f in ledger["fills"] if killed_ms < f["time"] < late_ms}
        assert early, "no fill was made early in the gap"

        for listener in listeners:
            await eventually(functools.partial(_has, listener, expected, since, cutoff), 20)
            received = _got(listener, since, cutoff)
            assert set(received) == expected
            assert all(n == 1 for n in received.values()), "a fill was delivered twice"
            offsets = [msg["offset"] for msg in listener.data]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
            assert all(reply.get("recovered", True) for reply in listener.replies[1:])
        assert any(li.connects > 1 for li in listeners), "no client came back with `since`"
        print(
            f"\nhandover after {(took_over_ms - killed_ms) / 1000:.1f} s: read back from "
            f"{position} ({(killed_ms - position) / 1000:.1f} s before the kill); "
            f"{len(in_gap)} fills made in the gap ({len(early)} in its first "
            f"{LATE_DEMAND_MS / 1000:.0f} s), {len(expected)} in all, each once"
        )
    finally:
        for listener in listeners:
            await listener.stop()
        await redis.aclose()


def _newest(simulator: Simulator) -> int:
    fills = simulator.ledger(ALICE_WALLET)["fills"]
    return max((f["time"] for f in fills), default=0)


def _has(listener: Listener, expected: set[int], since: int, cutoff: int) -> bool:
    return expected <= set(_got(listener, since, cutoff))


def _got(listener: Listener, since: int, cutoff: int) -> Counter[int]:
    return Counter(
        fill["id"]
        for msg in listener.data
        for fill in msg["data"]["fills"]
        if since < fill["timestamp"] <= cutoff
    )


async def _sole_holder(procs: list[GatewayProcess]) -> GatewayProcess:
    found: list[GatewayProcess] = []

    async def one() -> bool:
        found[:] = await holders(procs)
        return len(found) == 1

    await eventually(one, TAKEOVER_BOUND, every=0.2)
    return found[0]

"""Every node of a fleet dies; one comes back long after: it feeds again what the fleet
wanted before any client returns, from where each wallet's stream was delivered to,
and the client that comes back with `since` gets the downtime's fills once, in order."""

from __future__ import annotations

import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.broker.ownership import DEMAND_KEY
from hlgateway.simulator import Simulator
from tests.helpers import ALICE_WALLET, alice_token, eventually
from tests.scaleout.support import Listener, health, node


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _filled_since(sim: Simulator, since_ms: int) -> bool:
    return any(f["time"] > since_ms for f in sim.ledger(ALICE_WALLET)["fills"])


async def _forget_recent_demand(redis_url: str) -> None:
    """What a fleet dead for longer than its demand's memory (15-30 s) finds in Redis:
    no demand, no first-demand times; the wanted set and the positions remain."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        starts = [key async for key in client.scan_iter(match="hlgw:{*}:start")]
        await client.delete(DEMAND_KEY, *starts)
    finally:
        await client.aclose()


async def test_a_fleet_restarted_after_every_node_died_loses_no_fill(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> None:
    fleet = [node(simulator.ws_url, redis_url, tmp_path, name) for name in ("a", "b")]
    subscribe = {
        "type": "subscribe",
        "channel": "user_fills",
        "params": {"userId": "alice", "wallet": ALICE_WALLET},
    }
    listener = Listener(fleet, alice_token(), subscribe)
    again = node(simulator.ws_url, redis_url, tmp_path, "a2")
    try:
        for proc in fleet:
            await proc.start()
        listener.start()
        await eventually(listener.subscribed.is_set, 15)
        start = now_ms() + 500
        await eventually(lambda: _filled_since(simulator, start), 15)
        await eventually(lambda: bool(listener.data), 15)
        for proc in fleet:
            await proc.kill()
        await listener.stop()  # the client stays away until the fleet is back
        down = now_ms()
        await _forget_recent_demand(redis_url)
        await eventually(lambda: _filled_since(simulator, down), 15)
        await again.start()

        # Fed again before any client came back: it resumed the wanted stream.
        async def holds() -> bool:
            return bool((await health(again))["leases"]["held"])

        await eventually(holds, 20, every=0.1)
        listener.nodes = [again]
        listener.start()
        await eventually(lambda: listener.connects >= 2, 15)
        back = now_ms()
        await eventually(lambda: _filled_since(simulator, back), 15)
        cutoff = now_ms() - 500
        expected = Expected(simulator, [ALICE_WALLET], start, cutoff)
        expected.orders = set()  # this client reads fills only
        got = Deliveries()

        def received() -> bool:
            got.fills.clear()
            for message in list(listener.data):
                got.add("user_fills", message["data"])
            return expected.received_by(got)

        await eventually(received, 30)
        check = LedgerCheck.of(expected, got)
        assert check.ok(), check
        assert any(down <= t <= cutoff for _, _, t in got.fills)  # the downtime had fills
        replies = [r for r in listener.replies if r["type"] == "subscribed"]
        assert replies[-1]["recovered"] is True, replies
        assert len({m["epoch"] for m in listener.data}) == 1
    finally:
        await listener.stop()
        for proc in (*fleet, again):
            await proc.kill()

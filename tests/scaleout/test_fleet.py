"""A fleet that adds Hyperliquid capacity: three nodes, each leaving from its own
address (127.0.0.2-4, so that the simulator counts each its own per-IP budget),
with wallets demanded through one node only. The placement puts them on every
node's WebSocket slots before any is polled, polls the rest within the REST
budgets, and moves a killed node's wallets to the others, every fill once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hlgateway.simulator import Simulator
from tests.helpers import Client, GatewayProcess, admin_token, eventually
from tests.scaleout.support import addressed, health

ADDRESSES = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
WALLETS = [f"0x{n:02x}" + "5e" * 19 for n in range(1, 41)]
# The contract: a dead node's wallets move within 10 s; the bound adds what a
# loaded test machine needs to notice (as tests/scaleout/test_nodes.py).
MOVE_BOUND = 25.0


@pytest.fixture
async def fleet(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[GatewayProcess]]:
    async with addressed(
        simulator.ws_url, redis_url, tmp_path, ADDRESSES, HLGATEWAY_UPSTREAM_MAX_WALLETS="10"
    ) as procs:
        await formed(procs)
        yield procs


async def formed(procs: list[GatewayProcess]) -> None:
    """Until the placement counts every node: their capacity is in Redis."""
    deadline = time.monotonic() + 20
    while ((await health(procs[0]))["leases"]["fleet"] or {}).get("nodes") != len(procs):
        if time.monotonic() > deadline:
            raise TimeoutError("the fleet did not form")
        await asyncio.sleep(0.1)


class Reader:
    """One client connection that keeps every message it gets."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await self.client.recv(timeout=3600)

    def reply(self, rid: str) -> dict[str, Any] | None:
        return next((m for m in self.client.seen if m.get("id") == rid), None)

    async def subscribe(self, wallets: list[str]) -> list[dict[str, Any]]:
        ids = []
        for wallet in wallets:
            rid = f"s-{wallet}"
            ids.append(rid)
            params = {"userId": f"bot-{wallet[:6]}", "wallet": wallet}
            await self.client.send(
                {"type": "subscribe", "channel": "user_fills", "params": params, "id": rid}
            )
        await eventually(lambda: all(self.reply(rid) is not None for rid in ids), 30)
        return [r for rid in ids if (r := self.reply(rid)) is not None]

    def fills(self) -> dict[str, Counter[int]]:
        got: dict[str, Counter[int]] = defaultdict(Counter)
        for msg in self.client.seen:
            if msg.get("type") == "data" and msg.get("channel") == "user_fills":
                for fill in msg["data"]["fills"]:
                    got[fill["wallet"]][fill["id"]] += 1
        return got

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.close()


async def wallets_by_node(procs: list[GatewayProcess]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, proc in zip(ADDRESSES, procs, strict=True):
        if proc.proc is not None and proc.proc.returncode is None:
            out[name] = (await health(proc))["upstream"]["wallets"]
    return out


async def settled(procs: list[GatewayProcess], websocket: int, polled: int) -> dict[str, Any]:
    """Wait until the fleet serves `websocket` + `polled` wallets that way; the nodes' view."""
    deadline = time.monotonic() + MOVE_BOUND
    while True:
        view = await wallets_by_node(procs)
        ws = sum(v["websocket"] for v in view.values())
        rest = sum(v["restPolled"] for v in view.values())
        if (ws, rest) == (websocket, polled):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleet at {ws} on WebSockets + {rest} polled: {view}")
        await asyncio.sleep(0.2)


def users_per_address(simulator: Simulator) -> dict[str, int]:
    users: dict[str, set[str]] = defaultdict(set)
    for link in simulator.links():
        for sub in link["subscriptions"]:
            if sub.get("user"):
                users[link["remote"]].add(sub["user"])
    return {remote: len(u) for remote, u in sorted(users.items())}


async def test_wallets_fill_every_nodes_websocket_slots_then_are_polled_then_move(
    fleet: list[GatewayProcess], simulator: Simulator
) -> None:
    a, b, _ = fleet
    reader = Reader(await Client.connect(a.ws, admin_token()))
    try:
        # 30 wallets, all through node a: ten on each node's WebSocket, none polled.
        replies = await reader.subscribe(WALLETS[:30])
        assert all(r["type"] == "subscribed" for r in replies), replies
        view = await settled(fleet, websocket=30, polled=0)
        assert {name: v["websocket"] for name, v in view.items()} == {"a": 10, "b": 10, "c": 10}
        await eventually(
            lambda: users_per_address(simulator) == dict.fromkeys(ADDRESSES.values(), 10), 15
        )
        # 40: the ten beyond every slot are polled, spread over the REST budgets.
        replies = await reader.subscribe(WALLETS[30:])
        assert all(r["type"] == "subscribed" for r in replies), replies
        view = await settled(fleet, websocket=30, polled=10)
        for wallets in view.values():
            assert wallets["restPolled"] <= 4
            assert 0 < wallets["pollIntervalSeconds"] <= wallets["maxPollIntervalSeconds"]
            assert wallets["overLatency"] == 0
        # The fleet view is the last plan's, made from the nodes' reports in Redis: it
        # may lag the nodes' own views (just settled) by one plan.
        fleet_view: dict[str, Any] = {}

        async def planned() -> bool:
            fleet_view.update((await health(a))["leases"]["fleet"])
            return (fleet_view["websocket"], fleet_view["polled"]) == (30, 10)

        await eventually(planned, MOVE_BOUND, every=0.2)
        assert fleet_view["overLatency"] == 0 and fleet_view["unplaced"] == 0
        # Every wallet's fills flow, the polled ones too.
        await eventually(lambda: set(reader.fills()) >= set(WALLETS), 40)
        # Each address spent no more than its own budget.
        usage = simulator.rest_usage()
        assert all(usage[address]["refused"] == 0 for address in ADDRESSES.values()), usage
        assert all(usage[address]["lastMinute"] <= 1200 for address in ADDRESSES.values())
        # Node b dies: its wallets go to a and c (20 on WebSockets, 20 polled).
        await b.kill()
        killed = time.monotonic()
        await settled(fleet, websocket=20, polled=20)
        print(f"\nnode b's wallets placed on a and c {time.monotonic() - killed:.1f} s after")
        await _every_fill_once(reader, simulator)
    finally:
        await reader.close()


async def _every_fill_once(reader: Reader, simulator: Simulator) -> None:
    """Every fill of every wallet from its tracking on, up to a cut once fills flow
    again everywhere, delivered exactly once."""
    cut = {w: time.time() * 1000 for w in WALLETS}
    await eventually(
        lambda: all(any(f["time"] > cut[w] for f in simulator.ledger(w)["fills"]) for w in WALLETS),
        40,
    )
    expected: dict[str, set[int]] = {}
    for wallet in WALLETS:
        ledger = simulator.ledger(wallet)
        since = ledger["trackedSince"]
        expected[wallet] = {f["tid"] for f in ledger["fills"] if since < f["time"] <= cut[wallet]}
    assert all(expected.values())

    def missing() -> dict[str, set[int]]:
        got = reader.fills()
        return {w: e - set(got.get(w, ())) for w, e in expected.items() if e - set(got.get(w, ()))}

    with contextlib.suppress(TimeoutError):
        await eventually(lambda: not missing(), 40)
    assert missing() == {}, "fills lost"
    twice = {w: [t for t, n in c.items() if n > 1] for w, c in reader.fills().items()}
    assert not any(twice.values()), f"fills delivered twice: {twice}"

"""`hlgateway serve --broker redis+sentinel://...`: two gateway processes on a Redis
Sentinel group of the test's own (a primary, a replica, three sentinels, on free
ports), through a real failover under load. The failover is the one that loses
writes: the primary dies while its replica is stopped, so the new primary lacks
the last moments. Clients are handed nothing that it lacks: a client listening
throughout gets every message once, in order, in one epoch; a client that comes
back with `since` gets `recovered: true` and the rest; every fill of the
simulator's ledger arrives exactly once. (The long run of ten failovers of every
kind: `python -m bench.sentinel`, docs/scaling.md.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.sentinel.group import SentinelGroup
from hlgateway.simulator import Simulator
from tests.helpers import ALICE_WALLET, Client, admin_token, alice_token, eventually
from tests.scaleout.support import Listener, health, node, publish_room


async def test_a_failover_that_loses_writes_loses_nothing_a_client_was_given(
    simulator: Simulator, tmp_path: Path
) -> None:
    async with SentinelGroup() as group:
        a = node(simulator.ws_url, group.url(), tmp_path, "a")
        b = node(simulator.ws_url, group.url(), tmp_path, "b")
        await asyncio.gather(a.start(), b.start())
        room = Listener([b], alice_token(), {"type": "join_room", "room": "desk"})
        fills = Listener(
            [a, b],
            alice_token(),
            {
                "type": "subscribe",
                "channel": "user_fills",
                "params": {"userId": "alice", "wallet": ALICE_WALLET},
            },
        )
        sent = 0

        async def load() -> None:
            nonlocal sent
            while True:
                with contextlib.suppress(aiohttp.ClientError, AssertionError):
                    await publish_room(a, admin_token(), "desk", {"n": sent})
                    sent += 1
                await asyncio.sleep(0.05)

        room.start()
        fills.start()
        loader = asyncio.get_running_loop().create_task(load())
        try:
            await asyncio.wait_for(room.subscribed.wait(), 15)
            await asyncio.wait_for(fills.subscribed.wait(), 15)
            # A client that leaves before the failover and comes back after it.
            away = await Client.connect(a.ws, alice_token())
            joined = await away.request({"type": "join_room", "room": "desk"})
            last = await away.data("room")
            await away.close()
            await eventually(lambda: len(fills.data) >= 1, 20)

            old, new = await group.failover("lagging")
            # Publications go on through the new primary.
            mark = sent + 5
            await eventually(lambda: room.data[-1]["data"]["n"] >= mark, 30)

            back = await Client.connect(b.ws, alice_token())
            since = {"offset": last["offset"], "epoch": joined["epoch"]}
            again = await back.request({"type": "join_room", "room": "desk", "since": since})
            assert again["recovered"] is True and again["epoch"] == joined["epoch"]
            replayed = [await back.data("room") for _ in range(again["offset"] - last["offset"])]
            await back.close()
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await eventually(
                lambda: [m["data"]["n"] for m in room.data][-1:] == [sent - 1], timeout=30
            )

            # The listener: every message once, in order, one epoch, no gap.
            got = [m["data"]["n"] for m in room.data]
            assert got == list(range(got[0], sent))
            assert {m["epoch"] for m in room.data} == {joined["epoch"]}
            offsets = [m["offset"] for m in room.data]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
            # The client that came back: exactly what it missed, then it was at the head.
            assert [m["offset"] for m in replayed] == list(
                range(last["offset"] + 1, again["offset"] + 1)
            )
            assert [m["data"]["n"] for m in replayed] == list(
                range(last["data"]["n"] + 1, last["data"]["n"] + 1 + len(replayed))
            )
            await _every_fill_once(simulator, fills)
            state: dict[str, Any] = await health(a)
            assert state["broker"]["failovers"] >= 1
            assert state["broker"]["url"].endswith(f"(primary {new.address})")
            assert not state["broker"].get("rewound")  # nothing a client saw was lost
            assert old.running and await group.role(old) == "slave"
        finally:
            loader.cancel()
            await room.stop()
            await fills.stop()
            await a.kill()
            await b.kill()


async def _every_fill_once(simulator: Simulator, fills: Listener) -> None:
    ledger = simulator.ledger(ALICE_WALLET)
    start = ledger["trackedSince"]
    cutoff = max(f["time"] for f in ledger["fills"])
    expected = {f["tid"] for f in ledger["fills"] if start < f["time"] <= cutoff}
    assert expected

    def got() -> Counter[int]:
        return Counter(
            fill["id"]
            for msg in fills.data
            for fill in msg["data"]["fills"]
            if start < fill["timestamp"] <= cutoff
        )

    await eventually(lambda: expected <= set(got()), 30)
    assert set(got()) == expected
    assert all(n == 1 for n in got().values()), "a fill was delivered twice"
    assert all(r.get("recovered", True) for r in fills.replies[1:])

"""Redis stopped and started again under load (a redis-server of the test's own,
never the machine's): nodes keep their clients, say degraded, reconnect, and
clients come back with `recovered: false` (the restarted Redis lost the history)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from hlgateway.simulator import Simulator
from tests.helpers import Client, admin_token, alice_token, eventually
from tests.scaleout.conftest import OwnRedis
from tests.scaleout.support import health, node, publish_room


async def test_redis_stopped_and_started_under_load(
    simulator: Simulator, own_redis: OwnRedis, tmp_path: Path
) -> None:
    a = node(simulator.ws_url, own_redis.url, tmp_path, "a")
    b = node(simulator.ws_url, own_redis.url, tmp_path, "b")
    await asyncio.gather(a.start(), b.start())
    client = await Client.connect(b.ws, alice_token())
    sent = 0

    async def load() -> None:
        nonlocal sent
        while True:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await publish_room(a, admin_token(), "desk", {"n": sent})
                sent += 1
            await asyncio.sleep(0.05)

    loader = asyncio.get_running_loop().create_task(load())
    try:
        joined = await client.request({"type": "join_room", "room": "desk"})
        await client.request(
            {"type": "subscribe", "channel": "trades", "params": {"symbol": "BTC"}}
        )
        last = await client.data("room")
        await client.data("trades", timeout=20)

        await own_redis.stop()
        states: dict[str, dict[str, object]] = {}

        async def degraded() -> bool:
            for name, proc in (("a", a), ("b", b)):
                states[name] = await health(proc)
            return all(s["status"] == "degraded" for s in states.values())

        await eventually(degraded, 30, every=0.2, ignoring=(aiohttp.ClientError,))
        assert all(s["broker"]["status"] == "degraded" for s in states.values())  # type: ignore[index]
        # The nodes keep their clients meanwhile.
        pong = await client.request({"type": "ping"})
        assert pong["type"] == "pong"

        await own_redis.start()

        async def healthy() -> bool:
            states = [await health(p) for p in (a, b)]
            return all(s["status"] == "healthy" for s in states)

        await eventually(healthy, 30, every=0.2, ignoring=(aiohttp.ClientError,))
        # Live data flows again, in the restarted Redis's new epoch.
        fresh = await client.recv_until(
            lambda m: (
                m["type"] == "data" and m["channel"] == "room" and m["epoch"] != joined["epoch"]
            ),
            timeout=20,
        )
        assert fresh["offset"] >= 1
        await client.data("trades", timeout=20)
        # A client coming back with its old position learns the history is gone.
        other = await Client.connect(a.ws, alice_token())
        since = {"offset": last["offset"], "epoch": joined["epoch"]}
        again = await other.request({"type": "join_room", "room": "desk", "since": since})
        assert again["recovered"] is False and again["epoch"] == fresh["epoch"]
        await other.close()
        assert a.proc is not None and a.proc.returncode is None
        assert b.proc is not None and b.proc.returncode is None
    finally:
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loader
        await client.close()
        await a.kill()
        await b.kill()

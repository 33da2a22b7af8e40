"""`hlgateway serve --workers N`: N processes on one port sharing the broker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hlgateway.simulator import Simulator
from tests.helpers import Client, GatewayProcess, admin_token, alice_token, free_port
from tests.scaleout.support import health, publish_room


async def test_workers_without_a_broker_are_refused_with_the_reason() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hlgateway",
        "serve",
        "--workers",
        "2",
        "--port",
        str(free_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"--workers N needs --broker redis://" in err


async def test_two_workers_share_one_port_and_act_as_one_gateway(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> None:
    proc = GatewayProcess(
        free_port(),
        "--workers",
        "2",
        "--broker",
        redis_url,
        "--upstream",
        simulator.ws_url,
        log_file=tmp_path / "workers.log",
    )
    await proc.start()
    clients: list[Client] = []
    try:
        # New connections are spread over the workers by the kernel: both answer.
        names: set[str] = set()
        frozen: dict[str, int] = {}  # each worker froze its start-up objects (server/heap.py)
        for _ in range(200):  # the second worker may still be starting
            state = await health(proc)
            names.add(state["node"])
            frozen[state["node"]] = state["gc"]["frozenObjects"]
            if len(names) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(names) == 2, names
        assert all(count > 0 for count in frozen.values()), frozen
        for _ in range(6):
            client = await Client.connect(proc.ws, alice_token())
            await client.request({"type": "join_room", "room": "desk"})
            clients.append(client)
        await publish_room(proc, admin_token(), "desk", {"hello": "workers"})
        for client in clients:
            msg = await client.data("room")
            assert msg["data"] == {"hello": "workers"} and msg["offset"] == 1
        assert await proc.terminate() == 0
    finally:
        for client in clients:
            await client.close()
        await proc.kill()

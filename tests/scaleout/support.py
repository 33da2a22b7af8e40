"""Gateway nodes as processes on one Redis, and a listening client that moves between them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import GatewayProcess, free_port


def node(
    upstream: str, broker: str, log_dir: Path, name: str, port: int | None = None, **env: str
) -> GatewayProcess:
    environment: dict[str, Any] = {
        "HLGATEWAY_NODE_NAME": name,
        "HLGATEWAY_LOG_LEVEL": "INFO",
        **env,
    }
    return GatewayProcess(
        port or free_port(),
        "--upstream",
        upstream,
        "--broker",
        broker,
        log_file=log_dir / f"{name}.log",
        **environment,
    )


@contextlib.asynccontextmanager
async def addressed(
    upstream: str, broker: str, log_dir: Path, addresses: Mapping[str, str], **env: str
) -> AsyncIterator[list[GatewayProcess]]:
    """Nodes named as `addresses` says, each leaving for the upstream from its own
    address (its own per-IP budgets at the simulator), started; killed on the way out."""
    procs = [
        node(
            upstream, broker, log_dir, name, None, HLGATEWAY_UPSTREAM_SOURCE_ADDRESS=address, **env
        )
        for name, address in addresses.items()
    ]
    try:
        await asyncio.gather(*(p.start() for p in procs))
        yield procs
    finally:
        for proc in procs:
            await proc.kill()


async def health(proc: GatewayProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{proc.http}/health") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def holders(procs: list[GatewayProcess]) -> list[GatewayProcess]:
    """The running nodes that hold at least one upstream lease."""
    out = []
    for proc in procs:
        if proc.proc is None or proc.proc.returncode is not None:
            continue
        try:
            if (await health(proc))["leases"]["held"] > 0:
                out.append(proc)
        except aiohttp.ClientError:
            continue
    return out


async def publish_room(proc: GatewayProcess, token: str, room: str, data: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proc.http}/api/rooms/{room}/publish",
            json={"data": data},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 202, await resp.text()


class Listener:
    """A client that stays subscribed to one stream: on a lost connection it goes
    to the next node of `nodes` and subscribes again with `since`, as the
    project's clients do. Records every data message and every reply."""

    def __init__(self, nodes: list[GatewayProcess], token: str, subscribe: dict[str, Any]) -> None:
        self.nodes = nodes
        self.token = token
        self.subscribe = subscribe
        self.data: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.position: dict[str, Any] | None = None
        self.at: GatewayProcess | None = None
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self, first: int = 0) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(first))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, index: int) -> None:
        while True:
            proc = self.nodes[index % len(self.nodes)]
            index += 1
            if proc.proc is None or proc.proc.returncode is not None:
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, OSError, TimeoutError):
                await self._session(proc)
            await asyncio.sleep(0.1)

    async def _session(self, proc: GatewayProcess) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{proc.ws}?token={self.token}", heartbeat=1.0) as ws,
        ):
            self.at = proc
            self.connects += 1
            request = dict(self.subscribe, id=f"s{self.connects}")
            if self.position is not None:
                request["since"] = self.position
            await ws.send_json(request)
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                body = json.loads(msg.data)
                if body["type"] == "data":
                    self.data.append(body)
                    if "offset" in body:
                        self.position = {"offset": body["offset"], "epoch": body["epoch"]}
                elif body["type"] in ("subscribed", "room_joined", "error"):
                    self.replies.append(body)
                    if body["type"] != "error":
                        if self.position is None and "offset" in body:
                            self.position = {"offset": body["offset"], "epoch": body["epoch"]}
                        self.subscribed.set()
        self.at = None

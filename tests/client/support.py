"""Helpers for client tests: a gateway on a chosen port (to restart it in place),
events recorded from a client, and the Node driver of the JavaScript client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from hlgateway.client import GatewayClient
from hlgateway.config import Settings
from hlgateway.upstream.networks import Endpoint
from tests.helpers import GatewayServer, eventually

JS_DRIVER = Path(__file__).parents[1] / "js" / "client_driver.mjs"


class PortGateway(GatewayServer):
    """A `GatewayServer` on a fixed port, so a client can find it again after a restart."""

    def __init__(self, endpoint: Endpoint, settings: Settings, port: int) -> None:
        super().__init__(endpoint, settings)
        self.port = port

    async def start(self) -> None:
        await self.gateway.start()
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        await asyncio.wait_for(self.gateway.upstream.markets_loaded.wait(), 10)


class Recorder:
    """Every event a client emits, in order: (name, argument)."""

    def __init__(self, client: GatewayClient, *events: str) -> None:
        self.seen: list[tuple[str, Any]] = []
        for event in events:
            client.on(event, self._make(event))

    def _make(self, event: str) -> Callable[[Any], None]:
        return lambda arg: self.seen.append((event, arg))

    def of(self, event: str) -> list[Any]:
        return [arg for name, arg in self.seen if name == event]

    async def wait(self, event: str, count: int = 1, timeout: float = 10) -> list[Any]:
        await eventually(lambda: len(self.of(event)) >= count, timeout)
        return self.of(event)


class NodeDriver:
    """`node tests/js/client_driver.mjs`: commands in on stdin, `EVENT {json}` lines out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._claimed: set[int] = set()

    @classmethod
    async def start(cls, http: str, ws: str, options: dict[str, Any]) -> NodeDriver:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DRIVER),
            http,
            ws,
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first not yet claimed event (seen before or arriving now) that matches."""
        for index, event in enumerate(self.events):
            if index not in self._claimed and predicate(event):
                self._claimed.add(index)
                return event

        async def scan() -> dict[str, Any]:
            assert self.proc.stdout is not None
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise EOFError("node driver exited")
                if not line.startswith(b"EVENT "):
                    continue
                event: dict[str, Any] = json.loads(line[len(b"EVENT ") :])
                self.events.append(event)
                if predicate(event):
                    self._claimed.add(len(self.events) - 1)
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def event(self, name: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in match.items()),
            timeout,
        )

    async def data(self, channel: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: (
                e["event"] == "data"
                and e["channel"] == channel
                and all(e["params"].get(k) == v for k, v in match.items())
            ),
            timeout,
        )

    def seen(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def tell(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

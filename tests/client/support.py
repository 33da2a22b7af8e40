"""Helpers for client tests: a gateway on a chosen port (to restart it in place),
events recorded from a client, and the Node driver of the JavaScript client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hlgateway.client import GatewayClient
from hlgateway.config import Settings
from hlgateway.server.runner import start_listening
from hlgateway.upstream.networks import Endpoint
from tests.helpers import GatewayServer, NodeEvents, eventually

JS_DRIVER = Path(__file__).parents[1] / "js" / "client_driver.mjs"


class PortGateway(GatewayServer):
    """A `GatewayServer` on a fixed port, so a client can find it again after a restart."""

    def __init__(self, endpoint: Endpoint, settings: Settings, port: int) -> None:
        super().__init__(endpoint, settings)
        self.port = port  # start() listens here

    async def start_unready(self) -> None:
        """Listen without waiting for the market list (its upstream may be unreachable)."""
        await self.gateway.start()
        where = replace(self.gateway.settings, host="127.0.0.1", port=self.port)
        self._runner, _ = await start_listening(self.gateway, where, shutdown_timeout=1)


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


class NodeDriver(NodeEvents):
    """`node tests/js/client_driver.mjs`: commands in on stdin, `EVENT {json}` lines out."""

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

    def tell(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")

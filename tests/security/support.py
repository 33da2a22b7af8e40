"""Helpers for the security tests: the full edge in-process (real processes: tests.helpers)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from hlgateway.server.listener import listen
from tests.helpers import GatewayServer


class EdgeServer(GatewayServer):
    """GatewayServer listening the way `hlgateway serve` does: with the request-head deadline."""

    async def start(self) -> None:
        await self.gateway.start()
        await self._runner.setup()
        site = await listen(self._runner, self.gateway.settings)
        self.port = site.port
        await asyncio.wait_for(self.gateway.upstream.markets_loaded.wait(), 10)

    async def health(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.http}/health") as resp,
        ):
            body: dict[str, Any] = await resp.json()
            return body

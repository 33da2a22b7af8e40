"""Helpers for the security tests: the full edge in-process (real processes: tests.helpers)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import GatewayServer


class EdgeServer(GatewayServer):
    """GatewayServer with a look at the edge's /health counters."""

    async def health(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.http}/health") as resp,
        ):
            body: dict[str, Any] = await resp.json()
            return body

"""The tick pump, in this process: the upstream of the load generator and floor tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.fanout import pump as pump_mod


@pytest.fixture
async def pump() -> AsyncIterator[tuple[pump_mod.Pump, int, int]]:
    p = pump_mod.Pump()
    runner = web.AppRunner(pump_mod.build_app(p), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: pump_mod._Feedback(p), local_addr=("127.0.0.1", 0)
    )
    clock = loop.create_task(p.run())
    yield p, port, transport.get_extra_info("sockname")[1]
    clock.cancel()
    transport.close()
    await runner.cleanup()

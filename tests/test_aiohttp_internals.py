"""What we rely on in aiohttp beyond its documented API, tried for real: this
fails if an aiohttp upgrade takes it away (aiohttp is pinned in requirements.lock).

- The upstream link cuts a dead client WebSocket through `ws._conn.transport`
  (aiohttp has no public abort for client WebSockets).
- The gateway's listening site uses only BaseSite's public start/stop hooks:
  `runner.cleanup()` must still stop it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hlgateway.simulator import Simulator
from hlgateway.upstream.link import WsTransport
from tests.conftest import sim_endpoint
from tests.helpers import GatewayServer, eventually, make_settings


async def _open_gate() -> None:
    return None


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[aiohttp.WSMessage]]]:
    """A WebSocket server that records how each connection ended."""
    ends: list[aiohttp.WSMessage] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                ends.append(msg)
                return ws
            await ws.send_str(msg.data)

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"ws://127.0.0.1:{site.port}/ws", ends
    await runner.cleanup()


async def test_the_link_can_cut_a_client_websocket(
    echo: tuple[str, list[aiohttp.WSMessage]],
) -> None:
    url, ends = echo
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        transport = WsTransport(ws, _open_gate)
        transport.start()
        transport.send("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        assert transport.abort() is True  # cut at once, not a close handshake started
        end = await ws.receive(timeout=5)
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert transport.closed
        transport.cancel()
    await eventually(lambda: bool(ends), 5)
    # The server saw the TCP connection go without a close frame from us.
    assert ends[0].type is not aiohttp.WSMsgType.CLOSE


async def test_runner_cleanup_stops_the_guarded_site(simulator: Simulator) -> None:
    server = GatewayServer(sim_endpoint(simulator), make_settings())
    await server.start()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await server.stop()  # the gateway's shutdown, then runner.cleanup()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)

"""ConnectionManager: health checks, round robin over healthy gateways, failover of a live
client with its subscriptions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from hlgateway.client import (
    Backoff,
    ConnectionManager,
    DataMessage,
    Item,
    NoServers,
    ServerHealth,
    Subscription,
)
from hlgateway.client.manager import health_url_for, judge
from hlgateway.simulator import Simulator
from tests.client.support import PortGateway, Recorder
from tests.conftest import sim_endpoint
from tests.helpers import alice_token, eventually, free_port, make_settings

FAST = Backoff(initial=0.05, max_delay=0.3)


class FakeHealth:
    """A /health endpoint whose answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict[str, object] = {"status": "healthy"}
        self.hits = 0
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app)
        self.url = ""

    async def _health(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response(self.body, status=self.status)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/health"

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def two(simulator: Simulator) -> AsyncIterator[tuple[PortGateway, PortGateway]]:
    a = PortGateway(sim_endpoint(simulator), make_settings(), free_port())
    b = PortGateway(sim_endpoint(simulator), make_settings(), free_port())
    await a.start()
    await b.start()
    yield a, b
    for gw in (a, b):
        if not gw.gateway.shutting_down:  # not stopped by the test
            await gw.stop()


async def _fresh(sub: Subscription[Item], after_ms: float) -> DataMessage:
    while True:
        msg = await sub.next(10)
        if isinstance(msg, DataMessage) and msg.timestamp >= after_ms:
            return msg


def test_health_url_and_verdicts() -> None:
    assert health_url_for("ws://h:1/ws") == "http://h:1/health"
    assert health_url_for("wss://h/gw/ws") == "https://h/gw/health"
    assert judge(200, {"status": "healthy"}) is ServerHealth.HEALTHY
    assert judge(200, {"status": "degraded"}) is ServerHealth.DEGRADED
    assert judge(503, {"status": "healthy"}) is ServerHealth.UNHEALTHY
    assert judge(200, ["?"]) is ServerHealth.UNHEALTHY


def test_round_robin_prefers_the_healthiest() -> None:
    manager = ConnectionManager(["ws://a/ws", "ws://b/ws", "ws://c/ws"])
    with pytest.raises(NoServers):
        ConnectionManager().next_server()
    a, b, c = manager.servers
    # Nothing checked yet: all are candidates, in turn.
    assert [manager.next_url() for _ in range(4)] == ["ws://a/ws", "ws://b/ws", "ws://c/ws"] * 1 + [
        "ws://a/ws"
    ]
    a.health, b.health, c.health = (
        ServerHealth.HEALTHY,
        ServerHealth.UNHEALTHY,
        ServerHealth.HEALTHY,
    )
    assert {manager.next_url() for _ in range(4)} == {"ws://a/ws", "ws://c/ws"}
    a.health = c.health = ServerHealth.DEGRADED
    assert {manager.next_url() for _ in range(3)} == {"ws://a/ws", "ws://c/ws"}
    manager.report_failure("ws://a/ws")
    assert {manager.next_url() for _ in range(3)} == {"ws://c/ws"}
    c.health = ServerHealth.UNHEALTHY
    # All down: keep trying every one rather than none.
    assert {manager.next_url() for _ in range(3)} == {"ws://a/ws", "ws://b/ws", "ws://c/ws"}


async def test_health_checks_every_interval(two: tuple[PortGateway, PortGateway]) -> None:
    a, _ = two
    fake = FakeHealth()
    await fake.start()
    manager = ConnectionManager(health_interval=0.1)
    manager.add_server(a.ws)
    manager.add_server("ws://127.0.0.1:1/ws", health_url=fake.url)
    dead = manager.add_server(f"ws://127.0.0.1:{free_port()}/ws")
    try:
        async with manager:
            real, faked, _ = manager.servers
            assert real.health is ServerHealth.HEALTHY and real.details is not None
            assert faked.health is ServerHealth.HEALTHY
            assert dead.health is ServerHealth.UNHEALTHY and dead.error
            fake.body = {"status": "degraded"}
            hits = fake.hits
            await eventually(lambda: fake.hits >= hits + 2, 5)  # two more rounds
            assert manager.servers[1].health is ServerHealth.DEGRADED
    finally:
        await fake.stop()


async def test_failover_when_the_gateway_dies(two: tuple[PortGateway, PortGateway]) -> None:
    a, b = two
    async with ConnectionManager([a.ws, b.ws], health_interval=30) as manager:
        client = manager.client(alice_token(), backoff=FAST)
        events = Recorder(client, "connected", "subscribed", "disconnected")
        await client.connect(timeout=10)
        home, other = (a, b) if client.url == a.ws else (b, a)
        book5 = client.orderbook("ETH", 5)
        book10 = client.orderbook("ETH", 10)
        prices = client.prices(["SOL"])
        for sub in (book5, book10, prices):
            await sub
        await home.stop()  # the client's gateway goes away
        await events.wait("connected", 2)
        await events.wait("subscribed", 6)
        assert client.url == other.ws and client.reconnects == 1
        now = time.time() * 1000
        assert len((await _fresh(book5, now)).data["bids"]) == 5
        assert len((await _fresh(book10, now)).data["bids"]) == 10
        assert set((await _fresh(prices, now)).data) == {"SOL"}
        assert other.gateway.health()["websocket"]["subscriptions"] == 3


async def test_failover_when_health_turns_bad(two: tuple[PortGateway, PortGateway]) -> None:
    a, b = two
    fake = FakeHealth()
    await fake.start()
    manager = ConnectionManager(health_interval=0.1)
    manager.add_server(a.ws, health_url=fake.url)  # a's health is what the test says
    manager.add_server(b.ws)
    try:
        async with manager:
            client = manager.client(alice_token(), backoff=FAST)
            events = Recorder(client, "connected", "subscribed")
            await client.connect(timeout=10)
            if client.url != a.ws:  # round robin: make sure the client starts on a
                client.failover()
                await events.wait("connected", 2)
            assert client.url == a.ws
            connects = client.connects
            book = await client.orderbook("BTC", 3)
            fake.status = 503  # a still works, but reports itself unhealthy
            await events.wait("connected", connects + 1)
            assert client.url == b.ws
            await events.wait("subscribed", 2)
            assert b.gateway.health()["websocket"]["subscriptions"] == 1
            assert len((await _fresh(book, time.time() * 1000)).data["bids"]) == 3
    finally:
        await fake.stop()


async def test_failover_resumes_lossless_streams_with_since(
    two: tuple[PortGateway, PortGateway],
) -> None:
    """After a failover the client asks the other gateway to resume where it stopped; two
    gateways with the memory engine keep separate histories (another epoch), so the
    answer is `recovered: false` and the application is told to resync."""
    a, b = two
    async with ConnectionManager([a.ws, b.ws], health_interval=30) as manager:
        client = manager.client(alice_token(), backoff=FAST)
        events = Recorder(client, "connected", "resync")
        await client.connect(timeout=10)
        home, other = (a, b) if client.url == a.ws else (b, a)
        fills = await client.user_fills("alice")
        first = await fills.next(20)
        assert isinstance(first, DataMessage) and first.position is not None
        await home.stop()
        resync = (await events.wait("resync", timeout=15))[0]
        assert client.url == other.ws
        assert resync.reason == "not recovered" and resync.previous is not None
        assert resync.previous.epoch == first.position.epoch != resync.position.epoch
        stats = [c.session.stats for c in other.gateway.connections.values()]
        assert sum(s["notRecovered"] for s in stats) == 1  # it came with `since`

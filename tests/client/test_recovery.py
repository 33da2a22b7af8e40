"""The clients recover by themselves against a real gateway on the simulator: a client
dropped by the gateway, or closed with 4008, comes back with `since` and ends with every
fill (every room message) exactly once, in order; a restarted gateway (memory engine)
gives `recovered: false` and the application is told; a subscribe refused while the
gateway's market list is not loaded yet is retried until it goes through. Python
(`GatewayClient`) and JavaScript (`/client.js` under Node) alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hlgateway.client import (
    Backoff,
    DataMessage,
    ErrorMessage,
    GatewayClient,
    Item,
    Resync,
    Subscription,
)
from hlgateway.simulator import Simulator
from hlgateway.upstream.networks import Endpoint
from tests.client.support import NodeDriver, PortGateway, Recorder
from tests.conftest import FAST_SIM, sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    SECRET,
    alice_token,
    eventually,
    free_port,
    make_settings,
)

FAST = Backoff(initial=0.05, decay=1.5, max_delay=0.3)
needs_node = pytest.mark.requires("node")
SMALL_OUTBOX = {"outbox_max_bytes": 256 * 1024, "socket_buffer_bytes": 64 * 1024}


class Switch:
    """A URL source that sends the client nowhere while `away`: keeps it away on purpose."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.away = False
        self.nowhere = f"ws://127.0.0.1:{free_port()}/ws"

    def next_url(self) -> str:
        return self.nowhere if self.away else self.url

    def report_failure(self, url: str) -> None:
        pass


def ledger_fills(simulator: Simulator) -> list[int]:
    return [f["tid"] for f in simulator.ledger(ALICE_WALLET)["fills"]]


def fills_after(simulator: Simulator, tid: int) -> int:
    """How many fills the wallet had since fill `tid` (per the simulator's ledger)."""
    ledger = ledger_fills(simulator)
    return len(ledger) - 1 - ledger.index(tid)


class Collector:
    """Everything a subscription's iterator yields, in order."""

    def __init__(self, sub: Subscription[Item]) -> None:
        self.items: list[Item] = []
        self.task = asyncio.get_running_loop().create_task(self._run(sub))

    async def _run(self, sub: Subscription[Item]) -> None:
        async for item in sub:
            self.items.append(item)

    @property
    def data(self) -> list[DataMessage]:
        return [i for i in self.items if isinstance(i, DataMessage)]

    def fill_ids(self) -> list[int]:
        return [f["id"] for m in self.data for f in m.data["fills"] if f["wallet"] == ALICE_WALLET]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def assert_every_fill_once_in_order(got: list[int], ledger: list[int]) -> None:
    assert got, "no fills received"
    start = ledger.index(got[0])
    assert got == ledger[start : start + len(got)]


async def test_python_client_dropped_by_the_gateway_gets_every_fill_once_in_order(
    gateway: PortGateway, simulator: Simulator
) -> None:
    urls = Switch(gateway.ws)
    client = GatewayClient(urls, alice_token(), backoff=FAST)
    events = Recorder(client, "disconnected", "recovered", "resync", "connected")
    try:
        await client.connect(timeout=10)
        fills = Collector(await client.user_fills("alice"))
        await eventually(lambda: len(fills.fill_ids()) >= 2, 20)
        urls.away = True
        for connection in list(gateway.gateway.connections.values()):
            connection.abort()  # the gateway drops the link (no close frame)
        await events.wait("disconnected")
        gone_at = fills.fill_ids()[-1]
        # Away while the wallet keeps trading.
        await eventually(lambda: fills_after(simulator, gone_at) >= 4, 20)
        missed_until = ledger_fills(simulator)[-1]
        urls.away = False
        recovered = (await events.wait("recovered", timeout=15))[0]
        assert recovered.head.offset - recovered.since.offset >= 4  # replayed
        await eventually(lambda: missed_until in fills.fill_ids(), 20)
        await eventually(lambda: fills.fill_ids()[-1] != missed_until, 20)  # live past the seam
        assert_every_fill_once_in_order(fills.fill_ids(), ledger_fills(simulator))
        offsets = [m.offset or 0 for m in fills.data]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        assert events.of("resync") == [] and len(events.of("connected")) == 2
        assert all(isinstance(i, DataMessage) for i in fills.items)  # no Resync
        await fills.stop()
    finally:
        await client.close()


async def test_python_client_closed_with_4008_recovers_every_room_message(
    simulator: Simulator,
) -> None:
    srv = PortGateway(sim_endpoint(simulator), make_settings(**SMALL_OUTBOX), free_port())
    await srv.start()
    client = GatewayClient(srv.ws, alice_token(), backoff=FAST, buffer=2000)
    events = Recorder(client, "disconnected", "recovered")
    try:
        await client.connect(timeout=10)
        room = Collector(await client.room("flood"))
        total, blob = 900, "x" * 20_000  # ~18 MB: far over the outbox bound
        for n in range(1, total + 1):
            srv.gateway.publish_to_room("flood", {"n": n, "blob": blob})
            if n % 50 == 0:
                await asyncio.sleep(0)
        await events.wait("disconnected", timeout=30)
        assert events.of("disconnected")[0].code == 4008
        await eventually(lambda: len(room.data) >= total, 60)
        assert [m.data["n"] for m in room.data] == list(range(1, total + 1))
        assert client.reconnects >= 1 and events.of("recovered")
        await room.stop()
    finally:
        await client.close()
        await srv.stop()


async def test_python_client_told_to_resync_after_a_gateway_restart(
    simulator: Simulator,
) -> None:
    port = free_port()
    first = PortGateway(sim_endpoint(simulator), make_settings(), port)
    await first.start()
    client = GatewayClient(first.ws, alice_token(), backoff=FAST)
    events = Recorder(client, "resync", "connected")
    second: PortGateway | None = None
    try:
        await client.connect(timeout=10)
        fills = Collector(await client.user_fills("alice"))
        await eventually(lambda: len(fills.data) >= 1, 20)
        before = fills.data[-1].position
        await first.stop()
        second = PortGateway(sim_endpoint(simulator), make_settings(), port)
        await second.start()
        resync = (await events.wait("resync", timeout=15))[0]
        assert isinstance(resync, Resync) and resync.reason == "not recovered"
        assert resync.previous == before and resync.position is not None
        assert before is not None and resync.position.epoch != before.epoch
        await eventually(lambda: fills.data[-1].epoch != before.epoch, 20)
        # The iterator says so before the first message of the new epoch.
        kinds = [
            "resync" if isinstance(i, Resync) else "old" if i.epoch == before.epoch else "new"
            for i in fills.items
        ]
        assert kinds.index("resync") == kinds.index("new") - 1
        await fills.stop()
    finally:
        await client.close()
        if second is not None:
            await second.stop()


async def test_upstream_unavailable_is_retried_until_the_markets_load() -> None:
    port = free_port()
    endpoint = Endpoint("sim", f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}/info")
    srv = PortGateway(endpoint, make_settings(market_wait=0.2), free_port())
    await srv.start_unready()  # its upstream is unreachable: no market list
    simulator = Simulator(FAST_SIM)
    client = GatewayClient(srv.ws, alice_token(), backoff=FAST)
    events = Recorder(client, "error")
    try:
        await client.connect(timeout=10)
        trades = client.trades("BTC")
        await events.wait("error", 2, timeout=15)
        codes = {e.code for e in events.of("error") if isinstance(e, ErrorMessage)}
        assert codes == {"UPSTREAM_UNAVAILABLE"}
        assert client.subscriptions == [("trades", {"symbol": "BTC"})]  # kept, retried
        await simulator.start("127.0.0.1", port)
        await asyncio.wait_for(trades.confirmed(), 60)
        assert trades.canonical_params == {"symbol": "BTC"}
    finally:
        await client.close()
        await srv.stop()
        await simulator.stop()


# -- the JavaScript client -----------------------------------------------------------


def js_options(**client: Any) -> dict[str, Any]:
    return {
        "secret": SECRET,
        "user": "alice",
        "wallets": [ALICE_WALLET],
        "client": {"reconnectInterval": 50, "maxReconnectInterval": 300, **client},
    }


def js_fill_ids(node: NodeDriver) -> list[int]:
    return [
        f["id"]
        for e in node.seen("data")
        if e["channel"] == "user_fills"
        for f in e["data"]["fills"]
        if f["wallet"] == ALICE_WALLET
    ]


@needs_node
async def test_js_client_dropped_by_the_gateway_gets_every_fill_once_in_order(
    gateway: PortGateway, simulator: Simulator
) -> None:
    # Away for about 3 s on each drop: reconnects wait 3 s, fills keep coming meanwhile.
    node = await NodeDriver.start(
        gateway.http,
        gateway.ws,
        js_options(reconnectInterval=3000, maxReconnectInterval=3000, jitter=0),
    )
    try:
        await node.event("connected")
        node.tell(op="subscribe", channel="user_fills", params={"userId": "alice"})
        await node.event("result", op="subscribe", ok=True)
        await node.wait_for(lambda e: e["event"] == "data" and len(js_fill_ids(node)) >= 2, 20)
        gone_at = js_fill_ids(node)[-1]
        for connection in list(gateway.gateway.connections.values()):
            connection.abort()
        await node.event("disconnected")
        recovered = await node.event("recovered", timeout=15)
        replayed = recovered["head"]["offset"] - recovered["since"]["offset"]
        assert replayed >= 1  # fills came while it was away (max_fill_gap 1.5 s < 3 s)
        missed_until = ledger_fills(simulator)[-1]
        await node.wait_for(lambda _: missed_until in js_fill_ids(node), 20)
        got = js_fill_ids(node)
        assert got.index(missed_until) > got.index(gone_at)
        assert_every_fill_once_in_order(got, ledger_fills(simulator))
        offsets = [e["offset"] for e in node.seen("data") if e["channel"] == "user_fills"]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        assert node.seen("resync") == []
    finally:
        await node.stop()


@needs_node
async def test_js_client_closed_with_4008_recovers_every_room_message(
    simulator: Simulator,
) -> None:
    srv = PortGateway(sim_endpoint(simulator), make_settings(**SMALL_OUTBOX), free_port())
    await srv.start()
    node = await NodeDriver.start(srv.http, srv.ws, js_options())
    try:
        await node.event("connected")
        node.tell(op="subscribe", channel="room", params={"room": "flood"})
        await node.event("result", op="subscribe", ok=True)
        total, blob = 600, "x" * 20_000
        for n in range(1, total + 1):
            srv.gateway.publish_to_room("flood", {"n": n, "blob": blob})
            if n % 50 == 0:
                await asyncio.sleep(0)
        assert (await node.event("disconnected", timeout=30))["code"] == 4008
        await node.event("recovered", timeout=30)
        await node.wait_for(lambda e: e["event"] == "data" and e["data"]["n"] == total, 60)
        numbers = [e["data"]["n"] for e in node.seen("data") if e["channel"] == "room"]
        assert numbers == list(range(1, total + 1))
    finally:
        await node.stop()
        await srv.stop()


@needs_node
async def test_js_client_told_to_resync_after_a_gateway_restart(simulator: Simulator) -> None:
    port = free_port()
    first = PortGateway(sim_endpoint(simulator), make_settings(), port)
    await first.start()
    node = await NodeDriver.start(first.http, first.ws, js_options())
    second: PortGateway | None = None
    try:
        await node.event("connected")
        node.tell(op="subscribe", channel="user_fills", params={"userId": "alice"})
        await node.event("result", op="subscribe", ok=True)
        before = await node.data("user_fills", timeout=20)
        await first.stop()
        second = PortGateway(sim_endpoint(simulator), make_settings(), port)
        await second.start()
        resync = await node.event("resync", timeout=15)
        assert resync["reason"] == "not recovered" and resync["channel"] == "user_fills"
        assert resync["position"]["epoch"] != before["epoch"]
    finally:
        await node.stop()
        if second is not None:
            await second.stop()


@needs_node
async def test_js_client_retries_upstream_unavailable() -> None:
    port = free_port()
    endpoint = Endpoint("sim", f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}/info")
    srv = PortGateway(endpoint, make_settings(market_wait=0.2), free_port())
    await srv.start_unready()
    simulator = Simulator(FAST_SIM)
    node = await NodeDriver.start(srv.http, srv.ws, js_options())
    try:
        await node.event("connected")
        node.tell(op="subscribe", channel="trades", params={"symbol": "BTC"})
        for _ in range(2):
            assert (await node.event("error", timeout=15))["code"] == "UPSTREAM_UNAVAILABLE"
        await simulator.start("127.0.0.1", port)
        done = await node.event("result", op="subscribe", timeout=60)
        assert done["ok"] and done["value"]["params"] == {"symbol": "BTC"}
    finally:
        await node.stop()
        await srv.stop()
        await simulator.stop()


@needs_node
async def test_js_client_stops_after_repeated_origin_refusals(gateway: PortGateway) -> None:
    node = await NodeDriver.start(
        gateway.http,
        gateway.ws,
        {
            "token": alice_token(),
            "origin": "https://elsewhere.example",
            "client": {"reconnectInterval": 20},
        },
    )
    try:
        refused = await node.event("handshakeRefused", timeout=15)
        assert refused["status"] == 403 and "3 times in a row" in refused["message"]
        assert (await node.event("closed"))["reason"] == "handshakeRefused"
        assert len(node.seen("reconnecting")) == 2  # three attempts, then it stopped
    finally:
        await node.stop()

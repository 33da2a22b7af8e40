"""The upstream link under attack by the simulator: pong deadline, data-age
watchdog, garbage, outages seen in /health and on `system`, and the chaos run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bench.chaos.harness import run_chaos
from hlgateway.simulator import SimConfig, Simulator
from hlgateway.upstream.link import Link, LinkState
from tests.conftest import sim_endpoint
from tests.helpers import Client, GatewayServer, alice_token, eventually, make_settings

FAST = dict(
    upstream_ping_interval=0.2,
    upstream_pong_timeout=0.6,
    upstream_stale_after=0.6,
    upstream_backoff_max=0.3,
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(seed=3, control=True, book_interval=0.1, order_interval=0.3))
    await simulator.start("127.0.0.1", 0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gw(sim: Simulator) -> AsyncIterator[GatewayServer]:
    server = GatewayServer(sim_endpoint(sim), make_settings(**FAST))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(gw: GatewayServer) -> AsyncIterator[Client]:
    c = await Client.connect(gw.ws, alice_token())
    await c.recv()
    yield c
    await c.close()


async def book_subscriber(client: Client) -> None:
    reply = await client.request(
        {"type": "subscribe", "channel": "orderbook", "params": {"symbol": "BTC"}}
    )
    assert reply["type"] == "subscribed"
    await client.data("orderbook")


def only_link(gw: GatewayServer) -> Link:
    (link,) = gw.gateway.upstream.links
    return link


async def test_a_silent_link_is_caught_by_the_pong_deadline(
    sim: Simulator, gw: GatewayServer, client: Client
) -> None:
    await book_subscriber(client)
    link = only_link(gw)
    # Open, but nothing comes back, pongs included.
    assert sim.stall({}, 5.0, silence_pongs=True) >= 1
    await eventually(lambda: link.pong_timeouts >= 1, 5)
    await eventually(lambda: link.reconnects >= 1 and link.state is LinkState.CONNECTED, 5)
    await client.data("orderbook")  # data flows again on the new link


async def test_a_stuck_stream_is_resubscribed_by_the_watchdog(
    sim: Simulator, gw: GatewayServer, client: Client
) -> None:
    await book_subscriber(client)
    link = only_link(gw)
    connected_since = link.connected_since
    assert sim.stall({"type": "l2Book"}, 30.0) == 1
    await eventually(lambda: link.stale_resubscribes >= 1, 5)
    resubscribed_at = time.monotonic()
    await client.data("orderbook")  # the fresh subscription is not stalled

    def book_flows_again() -> bool:
        age = link.stream_ages()["l2Book:btc"]
        return age is not None and time.monotonic() - age > resubscribed_at

    # The link itself heard the book after the resubscribe: a stream that flows
    # again is never recycled (tests/upstream/test_link.py proves that rule).
    await eventually(book_flows_again, 5)
    assert link.reconnects == 0 and link.stale_recycles == 0
    assert link.connected_since == connected_since  # the same connection throughout


async def test_a_stream_stuck_after_resubscribe_recycles_the_link(
    sim: Simulator, gw: GatewayServer, client: Client
) -> None:
    await book_subscriber(client)
    link = only_link(gw)

    def stuck() -> bool:
        # Stall every new l2Book subscription as soon as it appears.
        sim.stall({"type": "l2Book"}, 30.0)
        return link.stale_recycles >= 1

    await eventually(stuck, 10)
    await eventually(lambda: link.state is LinkState.CONNECTED, 5)
    await client.data("orderbook")


async def test_garbage_frames_are_skipped(
    sim: Simulator, gw: GatewayServer, client: Client
) -> None:
    await book_subscriber(client)
    link = only_link(gw)
    assert sim.garbage(4) >= 4
    await eventually(lambda: link.garbage_frames >= 3, 5)
    await client.data("orderbook")
    assert link.reconnects == 0


async def test_outage_is_visible_in_health_and_on_system(
    sim: Simulator, gw: GatewayServer, client: Client
) -> None:
    await book_subscriber(client)
    assert (await client.request({"type": "subscribe", "channel": "system"}))["type"] == (
        "subscribed"
    )
    sim.refuse(2.0)
    sim.drop()
    notice = await client.recv_until(lambda m: m.get("channel") == "system", 5)
    assert notice["data"]["event"] == "upstream_degraded"

    async def health() -> dict[str, Any]:
        async with client.session.get(f"{gw.http}/health") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    down = await health()
    assert down["status"] == "degraded" and down["upstream"]["status"] == "degraded"
    assert down["upstream"]["links"][0]["state"] != "connected"
    restored = await client.recv_until(lambda m: m.get("channel") == "system", 10)
    assert restored["data"]["event"] == "upstream_restored"
    up = await health()
    assert up["status"] == "healthy"
    link = up["upstream"]["links"][0]
    assert link["reconnects"] >= 1 and link["connectedSince"] is not None
    assert "l2Book:btc" in link["streamAgeSeconds"]


async def test_chaos_every_fill_transition_and_ledger_event_exactly_once() -> None:
    report = await run_chaos(faults=21, interval=1.0)
    assert report.faults >= 20
    assert report.ledger.fills_produced > 20 and report.ledger.transitions_produced > 40
    assert report.ledger.spot_fills > 0 and report.ledger.events_produced > 10
    assert report.ok(), report.as_dict()
    assert report.pong_timeouts >= 1

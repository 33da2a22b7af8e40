"""Fan-out correctness (speed is measured in bench/, not here): bounded queues,
4008 on lossless overflow, conflation to the latest snapshot, throttle,
compressed and plain clients, /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hlgateway.protocol.channels import Topic
from hlgateway.simulator import SimConfig, Simulator
from tests.conftest import sim_endpoint
from tests.helpers import Client, GatewayServer, admin_token, alice_token, eventually, make_settings

BOUND = 256 * 1024
TOTAL = 1500  # x 10 KB: more than the kernel buffers of both ends can hide


@pytest.fixture
async def quiet_sim() -> AsyncIterator[Simulator]:
    # Books pushed once a minute: the test drives the topic itself.
    sim = Simulator(SimConfig(seed=2, book_interval=60.0, ctx_interval=60.0, trade_rate=0.1))
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


@pytest.fixture
async def tight(quiet_sim: Simulator) -> AsyncIterator[GatewayServer]:
    srv = GatewayServer(
        sim_endpoint(quiet_sim),
        make_settings(outbox_max_bytes=BOUND, socket_buffer_bytes=32 * 1024, write_timeout=20.0),
    )
    await srv.start()
    yield srv
    await srv.stop()


async def stalled_client(url: str, token: str) -> tuple[aiohttp.ClientSession, Any]:
    """A client that reads nothing until it is told to."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"{url}?token={token}", autoping=False, max_msg_size=0)
    return session, ws


async def test_stalled_client_stays_within_its_bound_and_gets_4008_on_lossless(
    tight: GatewayServer,
) -> None:
    gw = tight.gateway
    session, stalled = await stalled_client(tight.ws, alice_token())
    healthy = await Client.connect(tight.ws, alice_token())
    try:
        await stalled.send_str(json.dumps({"type": "join_room", "room": "firehose"}))
        await healthy.recv()
        await healthy.request({"type": "join_room", "room": "firehose"})
        await eventually(lambda: len(gw.connections) == 2)
        peak = 0
        blob = "x" * 10_000
        received = 0
        for n in range(TOTAL):
            gw.publish_to_room("firehose", {"n": n, "blob": blob})
            await asyncio.sleep(0)  # let the loop turn: flushes happen between publishes
            for conn in gw.connections.values():
                peak = max(peak, conn.outbox.queued_bytes)
            if n % 5 == 4:
                # The healthy client keeps up: it reads everything published so far.
                while received <= n:
                    msg = await healthy.data("room")
                    assert msg["data"]["n"] == received  # lossless, in order
                    received += 1
        assert peak <= BOUND  # never past its bound
        assert gw.outbox_stats.slow_consumers == 1
        # The stalled client, reading at last, finds everything up to its close: 4008.
        count = 0
        while True:
            msg = await stalled.receive(timeout=15)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            count += 1
        assert msg.type is aiohttp.WSMsgType.CLOSE and stalled.close_code == 4008
        assert 0 < count < TOTAL
        while received < TOTAL:
            assert (await healthy.data("room"))["data"]["n"] == received
            received += 1
        await eventually(lambda: len(gw.connections) == 1)
    finally:
        await healthy.close()
        await session.close()


async def test_a_lagging_client_gets_the_latest_snapshot_not_a_backlog(
    tight: GatewayServer,
) -> None:
    gw = tight.gateway
    session, stalled = await stalled_client(tight.ws, alice_token())
    try:
        await stalled.send_str(
            json.dumps({"type": "subscribe", "channel": "orderbook", "params": {"symbol": "BTC"}})
        )
        await eventually(lambda: gw.hub.topic_count == 1)
        (topic,) = gw.hub.topics()
        assert isinstance(topic, Topic)
        pad = [[1.0, 1.0]] * 2000  # ~20 KB a snapshot
        last = 300
        for n in range(last + 1):
            gw.publisher.publish(topic, {"seq": n, "bids": pad, "asks": []})
            await asyncio.sleep(0)
        assert gw.outbox_stats.conflated > 0 and gw.outbox_stats.slow_consumers == 0
        seqs: list[int] = []
        while not seqs or seqs[-1] != last:
            msg = await stalled.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            body = json.loads(msg.data)
            if body["type"] == "data" and "seq" in body["data"]:
                seqs.append(body["data"]["seq"])
        assert seqs == sorted(seqs) and len(seqs) < last  # skipped, never reordered
        await stalled.send_str(json.dumps({"type": "ping", "id": "alive"}))
        while json.loads((await stalled.receive(timeout=5)).data).get("id") != "alive":
            pass
    finally:
        await session.close()


async def test_throttle_delivers_at_most_one_message_per_interval(server: GatewayServer) -> None:
    client = await Client.connect(server.ws, alice_token())
    try:
        await client.recv()
        await client.request(
            {
                "type": "subscribe",
                "channel": "prices",
                "params": {"symbols": ["BTC"], "throttle": 600},
            }
        )
        await client.request(
            {"type": "subscribe", "channel": "prices", "params": {"symbols": ["ETH"]}}
        )
        # The server's send times (each message's `timestamp`), not our arrival
        # times: a loaded machine can bunch arrivals that were sent apart.
        sent: dict[str, list[int]] = {"BTC": [], "ETH": []}
        while len(sent["BTC"]) < 4:
            msg = await client.data("prices")
            (symbol,) = msg["data"]
            sent[symbol].append(msg["timestamp"])
        gaps = [b - a for a, b in zip(sent["BTC"], sent["BTC"][1:], strict=False)]
        assert min(gaps) >= 590  # never faster than the throttle (ms; wall-clock rounding)
        assert len(sent["ETH"]) > len(sent["BTC"])  # the upstream ticks faster
    finally:
        await client.close()


async def test_compressed_and_plain_clients_decode_the_same_data(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings(compression_threshold=200))
    await srv.start()
    session = aiohttp.ClientSession()
    try:
        url = f"{srv.ws}?token={alice_token()}"
        deflating = await session.ws_connect(url, compress=15)
        plain = await session.ws_connect(url, compress=0)
        assert deflating.compress == 15 and not plain.compress
        books: dict[str, dict[int, Any]] = {}
        for ws in (deflating, plain):
            await ws.send_str(
                json.dumps(
                    {
                        "type": "subscribe",
                        "channel": "orderbook",
                        "params": {"symbol": "BTC", "depth": 20},
                    }
                )
            )
        for name, ws in (("deflate", deflating), ("plain", plain)):
            got = books.setdefault(name, {})
            while len(got) < 3:
                body = json.loads((await ws.receive(timeout=5)).data)
                if body["type"] == "data":
                    got[body["data"]["timestamp"]] = body["data"]
        shared = set(books["deflate"]) & set(books["plain"])
        assert shared
        for ts in shared:
            assert books["deflate"][ts] == books["plain"][ts]
        await deflating.close()
        await plain.close()
    finally:
        await session.close()
        await srv.stop()


async def test_metrics(server: GatewayServer) -> None:
    client = await Client.connect(server.ws, alice_token())
    try:
        await client.recv()
        await client.request(
            {"type": "subscribe", "channel": "orderbook", "params": {"symbol": "SOL"}}
        )
        await client.data("orderbook")
        async with client.session.get(f"{server.http}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        for name in (
            "hlgateway_connections 1.0",
            "hlgateway_subscriptions 1.0",
            'hlgateway_messages_out_total{channel="orderbook"}',
            'hlgateway_messages_out_bytes_total{channel="orderbook"}',
            "hlgateway_delivery_latency_seconds_bucket",
            "hlgateway_queue_bytes",
            "hlgateway_conflated_frames_total",
            "hlgateway_slow_consumer_closes_total",
        ):
            assert name in text, name
        assert admin_token() not in text
    finally:
        await client.close()

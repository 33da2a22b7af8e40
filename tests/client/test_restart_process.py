"""Kill the gateway process (SIGKILL) under connected clients, start it again on the same
port: the Python and the JavaScript client reconnect, resubscribe everything, data flows."""

from __future__ import annotations

import asyncio
import time

import pytest

from hlgateway.auth import issue_token
from hlgateway.client import Backoff, DataMessage, GatewayClient, Item, Subscription
from tests.client.support import NodeDriver, Recorder
from tests.helpers import SECRET, GatewayProcess, free_port

DEMO_WALLET = "0x" + "de" * 20


async def _fresh(sub: Subscription[Item], after_ms: float) -> DataMessage:
    while True:
        msg = await sub.next(10)
        if isinstance(msg, DataMessage) and msg.timestamp >= after_ms:
            return msg


async def test_python_client_survives_a_killed_gateway() -> None:
    port = free_port()
    first = GatewayProcess(port)
    await first.start()
    second: GatewayProcess | None = None
    token = issue_token(SECRET, "demo", wallets=[DEMO_WALLET], ttl_seconds=600)
    client = GatewayClient(
        f"ws://127.0.0.1:{port}/ws", token, backoff=Backoff(initial=0.1, max_delay=0.5)
    )
    events = Recorder(client, "disconnected", "reconnecting", "subscribed", "connected")
    try:
        await client.connect(timeout=10)
        subs = [
            client.prices(["BTC", "ETH"]),
            client.orderbook("BTC", 5),
            client.orderbook("BTC", 10),
            client.trades("SOL"),
            client.user_orders("demo"),
            client.user_fills("demo"),
        ]
        await asyncio.gather(*subs)
        await first.kill()  # SIGKILL: no shutdown message, no close frame
        await events.wait("disconnected")
        await events.wait("reconnecting")
        second = GatewayProcess(port)
        await second.start()
        await events.wait("connected", 2, timeout=10)
        await events.wait("subscribed", 12, timeout=10)
        assert client.reconnects == 1
        now = time.time() * 1000
        book5, book10 = await _fresh(subs[1], now), await _fresh(subs[2], now)
        assert (len(book5.data["bids"]), len(book10.data["bids"])) == (5, 10)
        assert set((await _fresh(subs[0], now)).data) == {"BTC", "ETH"}
        order = await _fresh(subs[4], now)
        assert order.data["order"]["wallet"] == DEMO_WALLET
    finally:
        await client.close()
        await first.kill()
        if second is not None:
            await second.kill()


@pytest.mark.requires("node")
async def test_js_client_survives_a_killed_gateway() -> None:
    port = free_port()
    first = GatewayProcess(port)
    await first.start()
    second: GatewayProcess | None = None
    options = {
        "secret": SECRET,
        "user": "demo",
        "wallets": [DEMO_WALLET],
        "client": {"reconnectInterval": 100, "maxReconnectInterval": 500},
    }
    node = await NodeDriver.start(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", options)
    wanted = [
        ("prices", {"symbols": ["ETH", "BTC"]}),
        ("orderbook", {"symbol": "BTC", "depth": 5}),
        ("orderbook", {"symbol": "BTC", "depth": 10}),
        ("trades", {"symbol": "SOL"}),
        ("user_orders", {"userId": "demo"}),
    ]
    try:
        await node.event("connected", connects=1)
        for channel, params in wanted:
            node.tell(op="subscribe", channel=channel, params=params)
        for _ in wanted:
            await node.event("result", op="subscribe", ok=True)
        await node.data("orderbook", depth=5)
        await first.kill()
        await node.event("disconnected")
        await node.event("reconnecting")
        second = GatewayProcess(port)
        await second.start()
        await node.event("connected", connects=2)
        # Every subscription comes back: both order books, not just one per channel.
        again = [await node.event("subscribed") for _ in range(2 * len(wanted))]
        after = {(e["channel"], str(sorted(e["params"].items()))) for e in again[len(wanted) :]}
        assert len(after) == len(wanted)
        since = time.time() * 1000 - 50
        for depth in (5, 10):
            book = await node.data("orderbook", depth=depth)
            while book["data"]["timestamp"] < since:  # data from the restarted gateway
                book = await node.data("orderbook", depth=depth)
            assert len(book["data"]["bids"]) == depth
        prices = await node.data("prices")
        assert set(prices["data"]) == {"BTC", "ETH"}
    finally:
        await node.stop()
        await first.kill()
        if second is not None:
            await second.kill()

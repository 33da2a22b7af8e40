"""Real processes: graceful shutdown, and the seed's own JavaScript client end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hlgateway.auth import issue_token
from tests.helpers import SECRET, Client, GatewayProcess, NodeEvents, alice_token, free_port

DEMO_WALLET = "0x" + "de" * 20
SEED_CLIENT = Path(__file__).parents[1] / "js" / "seed_client.cjs"


async def test_sigterm_sends_shutdown_then_1001_and_exits_0() -> None:
    gateway = GatewayProcess(free_port(), HLGATEWAY_SHUTDOWN_TIMEOUT="5")
    await gateway.start()
    try:
        client = await Client.connect(f"ws://127.0.0.1:{gateway.port}/ws", alice_token())
        await client.recv()
        await client.request({"type": "subscribe", "channel": "prices", "params": {}})
        await client.data("prices")
        closing = asyncio.ensure_future(client.closed(timeout=15))  # a client that reads
        assert await gateway.terminate() == 0
        code, _ = await closing
        assert code == 1001
        assert any(m["type"] == "shutdown" and m["message"] for m in client.seen)
        await client.close()
    finally:
        await gateway.kill()


class NodeClient(NodeEvents):
    def tell(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")


@pytest.mark.requires("node")
async def test_seed_client_end_to_end_with_restart() -> None:
    port = free_port()
    first = GatewayProcess(port)
    await first.start()
    token = issue_token(SECRET, "demo", wallets=[DEMO_WALLET], ttl_seconds=600)
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SEED_CLIENT),
        f"ws://127.0.0.1:{port}/ws",
        token,
        "demo",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    node = NodeClient(proc)
    second: GatewayProcess | None = None
    try:
        welcome = await node.wait_for(lambda e: e["event"] == "welcome")
        assert welcome["user"]["id"] == "demo"
        prices = await node.data("prices")
        assert set(prices["data"]) == {"BTC", "ETH", "SOL"}
        book = await node.data("orderbook")
        assert len(book["data"]["bids"]) == 5 and len(book["data"]["asks"]) == 5
        bids = [p for p, _ in book["data"]["bids"]]
        assert bids == sorted(bids, reverse=True)
        await node.data("trades")
        await node.wait_for(lambda e: e["event"] == "pong")
        order = await node.data("user_orders", 25)
        assert order["data"]["action"] in ("created", "updated", "cancelled", "filled")
        assert order["data"]["order"]["wallet"] == DEMO_WALLET
        fills = await node.data("user_fills", 25)
        assert fills["data"]["fills"] and fills["data"]["fills"][0]["wallet"] == DEMO_WALLET
        node.tell("forbidden")
        assert (await node.wait_for(lambda e: e["event"] == "error"))["code"] == "FORBIDDEN"
        node.tell("garbage")
        error = await node.wait_for(lambda e: e["event"] == "error")
        assert error["code"] == "INVALID_MESSAGE"

        assert await first.terminate() == 0
        await node.wait_for(lambda e: e["event"] == "shutdown")
        gone = await node.wait_for(lambda e: e["event"] == "disconnected")
        assert gone["code"] == 1001

        second = GatewayProcess(port)
        await second.start()
        await node.wait_for(lambda e: e["event"] == "connected" and e["connects"] == 2, 40)
        await node.wait_for(lambda e: e["event"] == "welcome")
        again = await node.data("prices")
        assert set(again["data"]) == {"BTC", "ETH", "SOL"}
        await node.data("orderbook")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await first.kill()
        if second is not None:
            await second.kill()

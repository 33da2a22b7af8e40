"""Market and user data end to end: simulator -> upstream -> hub -> sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hlgateway.simulator import Simulator
from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    BOB_WALLET,
    Client,
    GatewayServer,
    admin_token,
    alice_token,
    bob_token,
    eventually,
)


@pytest.fixture
async def alice(server: GatewayServer) -> AsyncIterator[Client]:
    client = await Client.connect(server.ws, alice_token())
    await client.recv()
    yield client
    await client.close()


async def subscribe(client: Client, channel: str, **params: Any) -> dict[str, Any]:
    reply = await client.request({"type": "subscribe", "channel": channel, "params": params})
    assert reply["type"] == "subscribed", reply
    return reply


async def test_prices_for_exactly_the_requested_symbols(alice: Client) -> None:
    await subscribe(alice, "prices", symbols=["sol", "BTC"])
    for _ in range(3):
        msg = await alice.data("prices")
        assert set(msg["data"]) == {"BTC", "SOL"}
        for entry in msg["data"].values():
            assert set(entry) == {"price", "change24h", "volume24h", "timestamp"}
            assert entry["price"] > 0 and entry["volume24h"] > 0
            assert isinstance(entry["change24h"], float)


async def test_prices_without_symbols_are_every_listed_market(
    server: GatewayServer, alice: Client
) -> None:
    await subscribe(alice, "prices")
    msg = await alice.data("prices")
    assert set(msg["data"]) == set(server.gateway.upstream.markets.names)
    assert len(msg["data"]) >= 10


async def test_orderbook_is_sorted_and_trimmed_to_depth(alice: Client) -> None:
    await subscribe(alice, "orderbook", symbol="eth", depth=5)
    msg = await alice.data("orderbook")
    assert msg["params"] == {"depth": 5, "symbol": "ETH"}
    book = msg["data"]
    assert book["symbol"] == "ETH" and isinstance(book["timestamp"], int)
    bids, asks = book["bids"], book["asks"]
    assert len(bids) == 5 and len(asks) == 5
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert bids[0][0] < asks[0][0]
    assert all(size > 0 for _, size in bids + asks)


async def test_trades(alice: Client) -> None:
    await subscribe(alice, "trades", symbol="BTC")
    msg = await alice.data("trades", timeout=15)
    assert msg["data"]["symbol"] == "BTC"
    for trade in msg["data"]["trades"]:
        assert set(trade) == {"id", "price", "size", "side", "timestamp"}
        assert trade["side"] in ("buy", "sell") and trade["price"] > 0


async def test_own_orders_fills_and_account(alice: Client) -> None:
    await subscribe(alice, "user_orders", userId="alice")
    await subscribe(alice, "user_fills", userId="alice")
    await subscribe(alice, "account_updates", userId="alice", wallet=ALICE_WALLET)
    wallets = {ALICE_WALLET, ALICE_WALLET_2}
    order = await alice.data("user_orders", timeout=20)
    assert order["data"]["action"] in ("created", "updated", "cancelled", "filled")
    o = order["data"]["order"]
    assert {"id", "symbol", "side", "amount", "price", "status", "timestamp", "wallet"} <= set(o)
    assert o["wallet"] in wallets and o["side"] in ("buy", "sell")
    fills = await alice.data("user_fills", timeout=20)
    for fill in fills["data"]["fills"]:
        assert {
            "id",
            "orderId",
            "symbol",
            "side",
            "price",
            "size",
            "fee",
            "closedPnl",
            "timestamp",
            "wallet",
        } <= set(fill)
        assert fill["wallet"] in wallets
    account = await alice.data("account_updates", timeout=20)
    assert account["params"] == {"userId": "alice", "wallet": ALICE_WALLET}
    assert account["data"]["wallet"] == ALICE_WALLET
    assert isinstance(account["data"]["accountValue"], float)
    assert isinstance(account["data"]["positions"], list)


async def test_fills_are_delivered_once(alice: Client) -> None:
    await subscribe(alice, "user_fills", userId="alice")
    seen: list[tuple[str, int]] = []
    for _ in range(4):
        msg = await alice.data("user_fills", timeout=20)
        seen += [(f["wallet"], f["id"]) for f in msg["data"]["fills"]]
    assert len(seen) == len(set(seen))


async def test_user_a_never_reads_user_b_and_admin_reads_all(server: GatewayServer) -> None:
    alice = await Client.connect(server.ws, alice_token())
    bob = await Client.connect(server.ws, bob_token())
    admin = await Client.connect(server.ws, admin_token())
    try:
        for c in (alice, bob, admin):
            await c.recv()
        for channel in ("user_orders", "user_fills", "account_updates"):
            for params in (
                {"userId": "bob"},
                {"userId": "bob", "wallet": BOB_WALLET},
                {"userId": "alice", "wallet": BOB_WALLET},
            ):
                reply = await alice.request(
                    {"type": "subscribe", "channel": channel, "params": params}
                )
                assert (reply["type"], reply["code"], reply["channel"]) == (
                    "error",
                    "FORBIDDEN",
                    channel,
                )
        await subscribe(admin, "user_orders", userId="bob", wallet=BOB_WALLET)
        msg = await admin.data("user_orders", timeout=20)
        assert msg["data"]["order"]["wallet"] == BOB_WALLET
        # Alice got nothing of Bob's on any channel.
        assert not [m for m in alice.seen if m["type"] == "data"]
    finally:
        for c in (alice, bob, admin):
            await c.close()


def upstream_subs(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [s for s in sim.active_subscriptions() if s["type"] == kind]


async def test_feeds_start_and_stop_by_reference_count(
    server: GatewayServer, simulator: Simulator
) -> None:
    one = await Client.connect(server.ws, alice_token())
    two = await Client.connect(server.ws, bob_token())
    await one.recv()
    await two.recv()
    assert upstream_subs(simulator, "l2Book") == []
    await subscribe(one, "orderbook", symbol="BTC", depth=5)
    await subscribe(two, "orderbook", symbol="BTC", depth=10)
    await subscribe(two, "orderbook", symbol="BTC")  # same topic as depth 10: no new feed
    await eventually(lambda: len(upstream_subs(simulator, "l2Book")) == 1)
    assert upstream_subs(simulator, "l2Book")[0]["coin"] == "BTC"
    assert server.gateway.hub.topic_count == 2
    await one.request(
        {"type": "unsubscribe", "channel": "orderbook", "params": {"symbol": "BTC", "depth": 5}}
    )
    # Still needed by `two`: the gateway keeps it (a release would have queued the
    # unsubscribe before the `unsubscribed` reply went out), and so the simulator does.
    wanted = [s for link in server.gateway.upstream.links for s in link.wanted.values()]
    assert [s for s in wanted if s["type"] == "l2Book"] == [{"type": "l2Book", "coin": "BTC"}]
    assert len(upstream_subs(simulator, "l2Book")) == 1
    await two.close()  # the last subscriber disconnects
    await eventually(lambda: upstream_subs(simulator, "l2Book") == [])
    assert server.gateway.hub.topic_count == 0
    await one.close()


async def test_same_frame_bytes_for_every_subscriber(server: GatewayServer) -> None:
    clients = [await Client.connect(server.ws, alice_token()) for _ in range(3)]
    try:
        for c in clients:
            await c.recv()
            await subscribe(c, "orderbook", symbol="SOL", depth=3)
        frames: list[set[str]] = []
        for c in clients:
            got: set[str] = set()
            for _ in range(4):
                msg = await c.ws.receive(timeout=5)
                got.add(msg.data)
            frames.append(got)
        # Every subscriber received byte-identical frames for the ticks they share.
        assert frames[0] & frames[1] & frames[2]
    finally:
        for c in clients:
            await c.close()

"""Hyperliquid's per-IP limits, respected by the gateway: capacity and REST polling beyond it."""

from __future__ import annotations

from typing import Any

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    Client,
    GatewayServer,
    alice_token,
    eventually,
    make_settings,
)


async def subscribe(client: Client, channel: str, **params: Any) -> dict[str, Any]:
    return await client.request({"type": "subscribe", "channel": channel, "params": params})


async def test_upstream_subscription_limit_is_a_coded_refusal(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings(upstream_max_subscriptions=2))
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    try:
        await client.recv()
        assert (await subscribe(client, "orderbook", symbol="BTC"))["type"] == "subscribed"
        assert (await subscribe(client, "trades", symbol="BTC"))["type"] == "subscribed"
        # A third topic on the same upstream stream costs nothing upstream.
        assert (await subscribe(client, "orderbook", symbol="BTC", depth=3))["type"] == "subscribed"
        refused = await subscribe(client, "orderbook", symbol="ETH")
        assert (refused["type"], refused["code"]) == ("error", "UPSTREAM_UNAVAILABLE")
        # Upstream subscribes go out after the client's reply; both arrive, nothing more.
        await eventually(lambda: len(simulator.active_subscriptions()) == 2)
        assert srv.gateway.upstream.health()["subscriptions"] == 2
        # The refusal left nothing behind; freeing a slot makes room again.
        await client.request(
            {"type": "unsubscribe", "channel": "trades", "params": {"symbol": "BTC"}}
        )
        assert (await subscribe(client, "orderbook", symbol="ETH"))["type"] == "subscribed"
    finally:
        await client.close()
        await srv.stop()


async def test_wallets_beyond_the_ws_limit_are_polled_exactly_once(simulator: Simulator) -> None:
    srv = GatewayServer(
        sim_endpoint(simulator),
        make_settings(upstream_max_wallets=1, upstream_poll_interval=0.3),
    )
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    try:
        await client.recv()
        # Alice's two wallets: the first goes on the WebSocket, the second is polled.
        assert (await subscribe(client, "user_fills", userId="alice"))["type"] == "subscribed"
        assert (await subscribe(client, "user_orders", userId="alice"))["type"] == "subscribed"
        wallets = srv.gateway.feeds.wallets
        modes = {w: wallets.mode_of(w) for w in (ALICE_WALLET, ALICE_WALLET_2)}
        assert sorted(m or "" for m in modes.values()) == ["poll", "ws"]
        polled = next(w for w, m in modes.items() if m == "poll")
        users = {s.get("user") for s in simulator.active_subscriptions()}
        assert polled not in users  # never subscribed upstream
        fills: list[tuple[str, int]] = []
        orders: list[tuple[int, str, float]] = []
        while not (
            {w for w, _ in fills} >= set(modes)
            and any(
                m["type"] == "data"
                and m["channel"] == "user_orders"
                and m["data"]["order"]["wallet"] == polled
                for m in client.seen
            )
        ):
            msg = await client.recv(timeout=15)
            if msg["type"] != "data":
                continue
            if msg["channel"] == "user_fills":
                fills += [(f["wallet"], f["id"]) for f in msg["data"]["fills"]]
            elif msg["channel"] == "user_orders":
                o = msg["data"]["order"]
                orders.append((o["id"], o["status"], o["remaining"]))
        assert len(fills) == len(set(fills))
        assert len(orders) == len(set(orders))
        async with client.session.get(f"{srv.http}/health") as resp:
            health = await resp.json()
        assert health["upstream"]["wallets"]["restPolled"] == 1
        assert health["upstream"]["wallets"]["websocket"] == 1
    finally:
        await client.close()
        await srv.stop()

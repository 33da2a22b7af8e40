"""Hyperliquid's per-IP limits, respected by the gateway: capacity and REST polling beyond it."""

from __future__ import annotations

import re
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


async def health_of(client: Client, srv: GatewayServer) -> dict[str, Any]:
    async with client.session.get(f"{srv.http}/health") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_every_upstream_connection_leaves_from_the_source_address(
    simulator: Simulator,
) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings(upstream_source_address="127.0.0.2"))
    await srv.start()  # the market list came over REST
    client = await Client.connect(srv.ws, alice_token())
    try:
        await client.recv()
        assert (await subscribe(client, "prices"))["type"] == "subscribed"
        assert (await subscribe(client, "user_orders", userId="alice"))["type"] == "subscribed"
        await client.data("prices")
        # The orders' first recovery goes over REST too.
        await eventually(lambda: srv.gateway.feeds.wallets.recoveries >= 2)
        assert {link["remote"] for link in simulator.links()} == {"127.0.0.2"}
        assert set(simulator.rest_usage()) == {"127.0.0.2"}
        health = await health_of(client, srv)
        assert health["upstream"]["sourceAddress"] == "127.0.0.2"
        # What the exchange counted is what the node says it spent.
        spent = simulator.rest_usage()["127.0.0.2"]["lastMinute"]
        assert health["upstream"]["limits"]["restWeightLastMinute"] == spent
    finally:
        await client.close()
        await srv.stop()


async def test_polling_follows_the_rest_budget_and_refuses_what_it_cannot_poll_in_time(
    simulator: Simulator,
) -> None:
    # 600 weight a minute: 540 after the recoveries' share, less the simulator's market
    # list and contexts (280 a minute): 260 a minute for polling, 52 a round within 12 s.
    srv = GatewayServer(
        sim_endpoint(simulator),
        make_settings(
            upstream_max_wallets=0,
            upstream_rest_weight=600,
            upstream_poll_interval=2,
            upstream_max_poll_interval=12,
        ),
    )
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    try:
        await client.recv()
        # Alice's two wallets' orders weigh 40 each a poll: 80 a round, 18 s, not within 12 s.
        refused = await subscribe(client, "user_orders", userId="alice")
        assert (refused["type"], refused["code"]) == ("error", "UPSTREAM_UNAVAILABLE")
        assert "0 on the WebSocket" in refused["message"] and "12 s" in refused["message"]
        assert srv.gateway.feeds.wallets.modes_summary()["restPolled"] == 0  # nothing kept
        # Their fills weigh 20 each: both polled, each every 9.2 s (not the 2 s asked).
        assert (await subscribe(client, "user_fills", userId="alice"))["type"] == "subscribed"
        wallets = (await health_of(client, srv))["upstream"]["wallets"]
        assert wallets["restPolled"] == 2 and wallets["websocket"] == 0
        # (A poll that answered more than 20 fills weighs one more: a little over 9.2 s.)
        assert 9.2 <= wallets["pollIntervalSeconds"] < 12 and wallets["overLatency"] == 0
        assert wallets["maxPollIntervalSeconds"] == 12.0
        fills = await client.data("user_fills", timeout=20)
        assert fills["data"]["fills"]
        async with client.session.get(f"{srv.http}/metrics") as resp:
            text = await resp.text()
        assert 'hlgateway_upstream_wallets{mode="polled"} 2.0' in text
        interval = re.search(r"^hlgateway_upstream_poll_interval_seconds (\S+)$", text, re.M)
        assert interval is not None and 9.2 <= float(interval.group(1)) < 12
    finally:
        await client.close()
        await srv.stop()

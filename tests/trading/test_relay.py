"""Order entry through a real gateway on the simulator: `post` -> Hyperliquid -> `post_result`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import eth_account
import pytest
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
    sign_usd_transfer_action,
)

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import Client, GatewayServer, admin_token, eventually, make_settings, token

Json = dict[str, Any]
ETH = 1
SIGNATURE = {"r": "0x1", "s": "0x1", "v": 27}


@pytest.fixture
def trader(simulator: Simulator) -> LocalAccount:
    account: LocalAccount = eth_account.Account.from_key(simulator.local_account.key)
    return account


def trader_token(account: LocalAccount, user: str = "trader") -> str:
    return token(user, wallets=[account.address], trade=True)


class Nonces:
    last = 0

    @classmethod
    def next(cls) -> int:
        cls.last = max(cls.last + 1, time.time_ns() // 1_000_000)
        return cls.last


def order_action(px: float, sz: float = 0.2, *, buy: bool = True, cloid: str | None = None) -> Json:
    wire = order_request_to_order_wire(
        {
            "coin": "ETH",
            "is_buy": buy,
            "sz": sz,
            "limit_px": px,
            "order_type": {"limit": {"tif": "Gtc"}},
            "reduce_only": False,
        },
        ETH,
    )
    if cloid is not None:
        wire["c"] = cloid
    action: Json = order_wires_to_order_action([wire])
    return action


def signed(account: LocalAccount, action: Json, nonce: int | None = None) -> Json:
    nonce = Nonces.next() if nonce is None else nonce
    signature = sign_l1_action(account, action, None, nonce, None, False)
    return {"action": action, "nonce": nonce, "signature": signature}


def far_bid(simulator: Simulator) -> float:
    return round(float(simulator.world.market.mid("ETH")) * 0.9, 1)


async def post(client: Client, request: Json, timeout: float = 10.0) -> Json:
    return await client.request({"type": "post", "request": request}, timeout)


@pytest.fixture
async def trading(server: GatewayServer, trader: LocalAccount) -> AsyncIterator[Client]:
    client = await Client.connect(server.ws, trader_token(trader))
    await client.recv_type("welcome")
    yield client
    await client.close()


async def test_a_post_is_relayed_and_answered_as_hyperliquid_answers(
    trading: Client,
    server: GatewayServer,
    simulator: Simulator,
    trader: LocalAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hlgateway.trading")
    request = signed(trader, order_action(far_bid(simulator), cloid="0x" + "0f" * 16))
    reply = await post(trading, request)
    assert reply["type"] == "post_result" and reply["status"] == "ok"
    (status,) = reply["response"]["data"]["statuses"]
    oid = status["resting"]["oid"]
    assert status == {"resting": {"oid": oid, "cloid": "0x" + "0f" * 16}}
    (row,) = simulator.world.accounts.wallet(trader.address).open_orders()  # type: ignore[union-attr]
    assert row.oid == oid
    # Logged once, without the signature.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("post ")]
    assert len(lines) == 1
    assert f"action=order nonce={request['nonce']}" in lines[0] and "status=ok" in lines[0]
    signature = request["signature"]
    assert signature["r"][2:] not in caplog.text and signature["s"][2:] not in caplog.text
    metrics = server.gateway.metrics.render().decode()
    assert 'hlgateway_posts_total{outcome="ok"} 1.0' in metrics
    assert "hlgateway_post_seconds_count 1.0" in metrics


async def test_hyperliquids_refusals_come_back_as_they_are(
    trading: Client, simulator: Simulator, trader: LocalAccount
) -> None:
    px = far_bid(simulator)
    stranger = eth_account.Account.create()
    reply = await post(trading, signed(stranger, order_action(px)))
    assert (reply["status"], reply["response"]) == (
        "err",
        f"User or API Wallet {stranger.address.lower()} does not exist.",
    )
    request = signed(trader, order_action(px))
    assert (await post(trading, request))["status"] == "ok"
    again = await post(trading, request)  # a stale (used) nonce
    assert again["response"] == f"Invalid nonce: duplicate nonce {request['nonce']}"
    unknown = order_action(px)
    unknown["orders"][0]["a"] = 999
    reply = await post(trading, signed(trader, unknown))
    assert (reply["status"], reply["response"]) == ("err", "Unknown asset: 999 is not listed")
    assert len(simulator.world.accounts.wallet(trader.address).open_orders()) == 1  # type: ignore[union-attr]


async def test_posting_needs_the_trade_permission(
    server: GatewayServer, simulator: Simulator, trader: LocalAccount
) -> None:
    request = signed(trader, order_action(far_bid(simulator)))
    reader = await Client.connect(server.ws, token("reader", wallets=[trader.address]))
    admin = await Client.connect(server.ws, admin_token())
    try:
        await reader.recv_type("welcome")
        refused = await post(reader, request)
        assert (refused["type"], refused["code"]) == ("error", "FORBIDDEN")
        assert "trade permission" in refused["message"]
        await admin.recv_type("welcome")
        assert (await post(admin, request))["status"] == "ok"  # admin may post
    finally:
        await reader.close()
        await admin.close()
    assert len(simulator.world.accounts.wallet(trader.address).open_orders()) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("request_body", "detail"),
    [
        ({"action": {"type": "order"}, "nonce": 1}, "signature"),
        ({"action": {"type": "noop"}, "nonce": -5, "signature": SIGNATURE}, "nonce"),
        ({"action": "order", "nonce": 1, "signature": SIGNATURE}, "action"),
        ({"action": {"type": "noop"}, "nonce": 1, "signature": SIGNATURE, "x": 1}, "x"),
    ],
)
async def test_malformed_requests_are_refused_before_relaying(
    trading: Client, request_body: Json, detail: str
) -> None:
    reply = await post(trading, request_body)
    assert (reply["type"], reply["code"]) == ("error", "INVALID_PARAMS")
    assert detail in reply["message"]


async def test_a_post_without_an_id_is_refused(trading: Client) -> None:
    await trading.send({"type": "post", "request": {}})
    reply = await trading.recv_type("error")
    assert (reply["code"], reply["message"]) == ("INVALID_MESSAGE", "A post needs an id")


def usd_send(account: LocalAccount, destination: str, amount: str) -> Json:
    nonce = Nonces.next()
    action: Json = {"destination": destination, "amount": amount, "time": nonce, "type": "usdSend"}
    signature = sign_usd_transfer_action(account, action, False)
    return {"action": action, "nonce": nonce, "signature": signature}


async def test_transfers_are_refused_unless_the_operator_allows_them_by_name(
    trading: Client, simulator: Simulator, trader: LocalAccount
) -> None:
    friend = "0x" + "f2" * 20
    for kind in ("usdSend", "withdraw3", "approveAgent"):
        body = usd_send(trader, friend, "5")
        body["action"]["type"] = kind
        reply = await post(trading, body)
        assert (reply["code"], reply["message"]) == (
            "INVALID_PARAMS",
            f"Action {kind!r} is not relayed by this gateway",
        )
    assert simulator.world.accounts.wallet(friend) is None


async def test_an_operator_may_allow_a_transfer_by_name(
    simulator: Simulator, trader: LocalAccount
) -> None:
    settings = make_settings(post_allow=("usdSend",))
    server = GatewayServer(sim_endpoint(simulator), settings)
    await server.start()
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        friend = "0x" + "f3" * 20
        reply = await post(client, usd_send(trader, friend, "7"))
        assert (reply["status"], reply["response"]) == ("ok", {"type": "default"})
        assert simulator.world.accounts.wallet(friend).balance == 7  # type: ignore[union-attr]
    finally:
        await client.close()
        await server.stop()


async def test_one_users_flood_is_refused_at_once_and_does_not_starve_another(
    simulator: Simulator, trader: LocalAccount
) -> None:
    """Alice floods posts past her rate; Bob's post and the market data still flow."""
    settings = make_settings(post_rate=0.5, post_burst=3)
    server = GatewayServer(sim_endpoint(simulator), settings)
    await server.start()
    alice = await Client.connect(server.ws, trader_token(trader, "alice"))
    bob = await Client.connect(server.ws, trader_token(trader, "bob"))
    try:
        for client in (alice, bob):
            await client.recv_type("welcome")
        await bob.request(
            {"type": "subscribe", "channel": "prices", "params": {"symbols": ["BTC"]}}
        )
        px = far_bid(simulator)
        flood = [signed(trader, order_action(px)) for _ in range(12)]
        for i, request in enumerate(flood):
            await alice.send({"type": "post", "id": f"f{i}", "request": request})
        by_id: dict[str, Json] = {}
        while len(by_id) < 12:  # refusals come at once, answers when Hyperliquid's come
            msg = await alice.recv()
            if str(msg.get("id", "")).startswith("f"):
                by_id[msg["id"]] = msg
        answers = [by_id[f"f{i}"] for i in range(12)]
        results = [a["type"] for a in answers]
        assert results[:3] == ["post_result"] * 3
        assert set(results[3:]) == {"error"}
        assert {a["code"] for a in answers[3:]} == {"RATE_LIMITED"}
        # Flow control is not a client error: Alice is still connected and served.
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
        reply = await post(bob, signed(trader, order_action(px)))
        assert reply["status"] == "ok"
        await bob.data("prices")
        wallet = simulator.world.accounts.wallet(trader.address)
        assert wallet is not None and len(wallet.open_orders()) == 4  # nothing refused was sent
    finally:
        await alice.close()
        await bob.close()
        await server.stop()


async def post_link_id(server: GatewayServer, simulator: Simulator) -> int:
    """The gateway's order-entry link at the simulator, found by its local port."""
    link = server.gateway.upstream.post_link
    assert link is not None
    await eventually(lambda: link.state.value == "connected")
    socket = link._socket  # the connection that is up
    assert socket is not None
    port = socket.local_port
    (found,) = [entry for entry in simulator.links() if entry["port"] == port]
    return int(found["id"])


async def test_a_link_lost_during_a_post_answers_err_and_the_order_is_found_by_cloid(
    server: GatewayServer, simulator: Simulator, trader: LocalAccount
) -> None:
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        await client.request(
            {"type": "subscribe", "channel": "user_orders", "params": {"userId": "trader"}}
        )
        px = far_bid(simulator)
        assert (await post(client, signed(trader, order_action(px))))["status"] == "ok"
        link = await post_link_id(server, simulator)
        # The simulator executes the next post but its answer is withheld; then the link drops.
        simulator.stall({}, 30.0, link=link, silence_pongs=True)
        cloid = "0x" + "1c" * 16
        await client.send(
            {"type": "post", "id": "lost", "request": signed(trader, order_action(px, cloid=cloid))}
        )
        wallet = simulator.world.accounts.wallet(trader.address)
        assert wallet is not None
        await eventually(lambda: wallet.find_order(cloid) is not None)
        simulator.drop(link)
        reply = await client.recv_until(lambda m: m.get("id") == "lost")
        assert reply["type"] == "post_result" and reply["status"] == "err"
        assert "lost before Hyperliquid answered" in reply["response"]
        assert "cloid" in reply["response"] and "not retried" in reply["response"]

        # The client finds out what happened: the order is on its user_orders, by cloid
        # (before or after the answer: they travel on different upstream links).
        def by_cloid(m: Json) -> bool:
            if m.get("type") != "data" or m.get("channel") != "user_orders":
                return False
            return bool(m["data"]["order"]["cloid"] == cloid)

        seen = [m for m in client.seen if by_cloid(m)]
        update = seen[0] if seen else await client.recv_until(by_cloid)
        assert update["data"]["order"]["status"] == "open"
        # Not retried: exactly one order with that cloid exists.
        assert [o.cloid for o in wallet.open_orders()].count(cloid) == 1
    finally:
        await client.close()


async def test_without_the_link_posts_go_over_rest(
    simulator: Simulator, trader: LocalAccount
) -> None:
    """All links taken by market data (max one link): the post goes to REST /exchange."""
    server = GatewayServer(sim_endpoint(simulator), make_settings(upstream_max_links=1))
    await server.start()
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        await client.request({"type": "subscribe", "channel": "prices", "params": {}})
        reply = await post(client, signed(trader, order_action(far_bid(simulator))))
        assert reply["status"] == "ok" and "resting" in reply["response"]["data"]["statuses"][0]
        assert server.gateway.upstream.post_link is None
        assert simulator.stats()["actions"]["ok"] >= 1
    finally:
        await client.close()
        await server.stop()


async def test_the_in_flight_limit_refuses_at_once(
    simulator: Simulator, trader: LocalAccount
) -> None:
    settings = make_settings(post_max_in_flight=2, post_timeout=2.0)
    server = GatewayServer(sim_endpoint(simulator), settings)
    await server.start()
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        px = far_bid(simulator)
        assert (await post(client, signed(trader, order_action(px))))["status"] == "ok"
        simulator.stall({}, 30.0, link=await post_link_id(server, simulator), silence_pongs=True)
        for i in range(3):
            request = signed(trader, order_action(px))
            await client.send({"type": "post", "id": f"p{i}", "request": request})
        third = await client.recv_until(lambda m: m.get("id") == "p2")
        assert (third["type"], third["code"]) == ("error", "RATE_LIMITED")
        assert "2 posts are awaiting" in third["message"]
        first = await client.recv_until(lambda m: m.get("id") == "p0")
        assert first["status"] == "err" and "did not answer within 2 s" in first["response"]
    finally:
        await client.close()
        await server.stop()


async def test_trading_info_tells_clients_what_to_sign_for(server: GatewayServer) -> None:
    client = await Client.connect(server.ws, admin_token())
    try:
        async with client.session.get(server.http + "/api/trading") as resp:
            info = await resp.json()
    finally:
        await client.close()
    assert info["network"] == "sim" and info["mainnet"] is False
    assert info["assets"]["BTC"] == 0 and info["assets"]["ETH"] == ETH
    assert "order" in info["relayed"] and "withdraw3" not in info["relayed"]


async def test_a_post_never_waits_for_the_message_budget(
    server: GatewayServer, simulator: Simulator, trader: LocalAccount
) -> None:
    """Hyperliquid's 2000 messages a minute are spent (market data's subscribes would wait
    their turn): a post does not wait; it goes at once, over REST."""
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        px = far_bid(simulator)
        assert (await post(client, signed(trader, order_action(px))))["status"] == "ok"
        link = server.gateway.upstream.post_link  # opened by the first post
        assert link is not None
        await eventually(lambda: link.state.value == "connected")
        window = server.gateway.upstream.messages._window  # the per-IP count, spent
        while window.try_take(time.monotonic()):
            pass
        stats = server.gateway.relay.stats
        before = stats["via_rest"], stats["via_ws"]
        reply = await post(client, signed(trader, order_action(px)))
        assert reply["status"] == "ok"
        assert (stats["via_rest"], stats["via_ws"]) == (before[0] + 1, before[1])
    finally:
        await client.close()


async def test_a_post_over_the_link_counts_one_message(
    server: GatewayServer, simulator: Simulator, trader: LocalAccount
) -> None:
    """Hyperliquid counts each message once: the relay takes a post's message when it
    admits it, and the link's socket does not count it again when it writes it."""
    client = await Client.connect(server.ws, trader_token(trader))
    try:
        await client.recv_type("welcome")
        px = far_bid(simulator)
        assert (await post(client, signed(trader, order_action(px))))["status"] == "ok"
        link = server.gateway.upstream.post_link  # opened by the first post (sent over REST)
        assert link is not None
        await eventually(lambda: link.state.value == "connected")
        messages = server.gateway.upstream.messages
        stats = server.gateway.relay.stats
        for n in range(1, 4):
            before, via_ws = messages.used(), stats["via_ws"]
            assert (await post(client, signed(trader, order_action(px))))["status"] == "ok"
            assert stats["via_ws"] == via_ws + 1
            assert messages.used() == before + 1, f"post {n}"
    finally:
        await client.close()

"""The gateway's JavaScript client (GET /client.js) under Node with the npm `ws` package."""

from __future__ import annotations

import time

import eth_account
import pytest
from hyperliquid.utils.signing import sign_l1_action

from hlgateway.simulator import Simulator
from tests.client.support import NodeDriver, PortGateway
from tests.helpers import ALICE_WALLET, SECRET, alice_token, free_port, token

pytestmark = pytest.mark.requires("node")

FAST = {"reconnectInterval": 50, "maxReconnectInterval": 300}


def minting(**extra: object) -> dict[str, object]:
    """Driver options: tokens minted by a provider in Node (HS256, the tests' secret)."""
    return {"secret": SECRET, "user": "alice", "wallets": [ALICE_WALLET], **extra}


async def test_module_is_served_as_javascript(gateway: PortGateway) -> None:
    node = await NodeDriver.start(gateway.http, gateway.ws, {"token": alice_token()})
    try:
        module = await node.event("module")
        assert module["status"] == 200
        assert module["contentType"].startswith("application/javascript")
        await node.event("welcome")
        node.tell(op="ping")
        rtt = await node.event("result", op="ping")
        assert rtt["ok"] and 0 <= rtt["value"] < 1000
    finally:
        await node.stop()


async def test_subscriptions_keyed_by_params_and_refusals(gateway: PortGateway) -> None:
    node = await NodeDriver.start(gateway.http, gateway.ws, {"token": alice_token()})
    try:
        await node.event("connected")
        node.tell(op="subscribe", channel="orderbook", params={"symbol": "BTC", "depth": 5})
        node.tell(op="subscribe", channel="orderbook", params={"symbol": "btc"})
        first = await node.event("result", op="subscribe")
        second = await node.event("result", op="subscribe")
        assert {first["value"]["params"]["depth"], second["value"]["params"]["depth"]} == {5, 10}
        node.tell(op="subscribe", channel="user_fills", params={"userId": "bob"})
        refused = await node.event("result", op="subscribe")
        assert refused == {
            "event": "result",
            "op": "subscribe",
            "ok": False,
            "name": "SubscriptionRefusedError",
            "code": "FORBIDDEN",
            "refused": True,
        }
        assert (await node.event("error"))["code"] == "FORBIDDEN"
        node.tell(op="keys")
        keys = (await node.event("keys"))["keys"]
        assert keys == [
            'orderbook:{"depth":5,"symbol":"BTC"}',
            'orderbook:{"depth":10,"symbol":"BTC"}',
        ]
        node.tell(op="unsubscribe", channel="orderbook", params={"symbol": "BTC", "depth": 10})
        assert (await node.event("unsubscribed"))["params"] == {"depth": 10, "symbol": "BTC"}
    finally:
        await node.stop()


async def test_no_reconnect_when_a_fixed_token_is_refused(gateway: PortGateway) -> None:
    bad = token("alice").rsplit(".", 1)[0] + ".forged"
    node = await NodeDriver.start(gateway.http, gateway.ws, {"token": bad, "client": FAST})
    try:
        failed = await node.event("authFailed")
        assert failed["code"] == 1008
        node.tell(op="keys")
        await node.event("keys")  # later than any reconnect would have been scheduled
        assert node.seen("reconnecting") == [] and node.seen("welcome") == []
    finally:
        await node.stop()


async def test_provider_gives_a_fresh_token_after_a_refusal(gateway: PortGateway) -> None:
    node = await NodeDriver.start(gateway.http, gateway.ws, minting(badFirst=True, client=FAST))
    try:
        assert (await node.event("disconnected"))["code"] == 1008
        await node.event("connected")
        assert [e["minted"] for e in node.seen("token")] == [1, 2]
    finally:
        await node.stop()


async def test_token_refresh_keeps_the_link_past_expiry(gateway: PortGateway) -> None:
    node = await NodeDriver.start(
        gateway.http,
        gateway.ws,
        minting(ttl=3, client={**FAST, "refreshBeforeMs": 1500}),
    )
    try:
        await node.event("connected")
        started = time.time()
        node.tell(op="subscribe", channel="prices", params={"symbols": ["BTC"]})
        await node.event("authenticated", timeout=5)
        # Wait until the first token (3 s, whole seconds) is surely past, data still flowing.
        await node.wait_for(
            lambda e: e["event"] == "data" and e["data"]["BTC"]["timestamp"] > (started + 4) * 1000
        )
        assert node.seen("disconnected") == [] and len(node.seen("connected")) == 1
    finally:
        await node.stop()


async def test_send_queue_is_bounded(gateway: PortGateway) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    options = {"token": alice_token(), "client": {"reconnectInterval": 30000, "maxQueueSize": 2}}
    node = await NodeDriver.start(gateway.http, dead, options)
    try:
        await node.event("reconnecting")
        for _ in range(3):
            node.tell(op="send", message={"type": "ping"})
        assert (await node.event("result", op="send"))["ok"]
        assert (await node.event("result", op="send"))["ok"]
        full = await node.event("result", op="send")
        assert not full["ok"] and full["name"] == "SendQueueFullError"
    finally:
        await node.stop()


async def test_post_relays_a_signed_order_and_resolves_to_the_answer(
    gateway: PortGateway, simulator: Simulator
) -> None:
    """The JS client's post(): keys go out in the order given (the signature covers them),
    the promise resolves to post_result; a refusal rejects with the code."""
    account = eth_account.Account.from_key(simulator.local_account.key)
    px = round(float(simulator.world.market.mid("ETH")) * 0.9, 1)
    action = {
        "type": "order",
        "orders": [
            {
                "a": 1,
                "b": True,
                "p": f"{px:g}",
                "s": "0.2",
                "r": False,
                "t": {"limit": {"tif": "Gtc"}},
            }
        ],
        "grouping": "na",
    }
    nonce = time.time_ns() // 1_000_000
    request = {
        "action": action,
        "nonce": nonce,
        "signature": sign_l1_action(account, action, None, nonce, None, False),
    }
    trader = token("trader", wallets=[account.address], trade=True)
    node = await NodeDriver.start(gateway.http, gateway.ws, {"token": trader})
    reader = await NodeDriver.start(gateway.http, gateway.ws, {"token": alice_token()})
    try:
        await node.event("welcome")
        node.tell(op="post", request=request)
        answer = await node.event("result", op="post")
        assert answer["ok"] and answer["value"]["type"] == "post_result"
        assert answer["value"]["status"] == "ok"
        assert "resting" in answer["value"]["response"]["data"]["statuses"][0]
        await reader.event("welcome")
        reader.tell(op="post", request=request)
        refused = await reader.event("result", op="post")
        assert (refused["ok"], refused["code"]) == (False, "FORBIDDEN")
    finally:
        await node.stop()
        await reader.stop()

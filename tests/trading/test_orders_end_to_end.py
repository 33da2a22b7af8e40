"""The issue's "done when": a Python client with a trading token and an agent key places
200 orders through the gateway on the simulator (resting, crossing, modified, canceled),
and every resulting fill and order transition reaches its `user_fills` / `user_orders`
exactly once (checked against the simulator's ledger of what it produced)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import eth_account
import pytest
from hyperliquid.utils.signing import sign_agent

from hlgateway.client import DataMessage, GatewayClient, Subscription
from hlgateway.client.trading import Sent, Trader
from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import GatewayServer, eventually, make_settings, token

ORDERS = 200
COINS = ("ETH", "SOL")


async def approve_agent(simulator: Simulator) -> str:
    """The account approves an API wallet on the exchange itself (as in Hyperliquid's app)."""
    account = eth_account.Account.from_key(simulator.local_account.key)
    agent = eth_account.Account.create()
    nonce = time.time_ns() // 1_000_000
    action = {
        "type": "approveAgent",
        "agentAddress": agent.address,
        "agentName": "",
        "nonce": nonce,
    }
    signature = sign_agent(account, action, False)
    body = {"action": action, "nonce": nonce, "signature": signature}
    async with (
        aiohttp.ClientSession() as session,
        session.post(simulator.http_url + "/exchange", json=body) as resp,
    ):
        assert (await resp.json())["status"] == "ok"
    key: str = agent.key.hex()
    return key if key.startswith("0x") else "0x" + key


@pytest.fixture
async def gateway(simulator: Simulator) -> AsyncIterator[GatewayServer]:
    # Unlimited post and message rates: this test is about delivery, not flow control.
    settings = make_settings(post_rate=0.0, message_rate=0.0)
    server = GatewayServer(sim_endpoint(simulator), settings)
    await server.start()
    yield server
    await server.stop()


async def collect(sub: Subscription[Any], into: list[DataMessage]) -> None:
    async for item in sub:
        if isinstance(item, DataMessage):
            into.append(item)


def rounded(px: float, coin: str) -> float:
    return round(px, 1) if coin == "ETH" else round(px, 2)


async def test_200_orders_reach_the_user_streams_exactly_once(
    simulator: Simulator, gateway: GatewayServer
) -> None:
    account = simulator.local_account.address
    agent_key = await approve_agent(simulator)
    rng = random.Random(22)
    orders_seen: list[DataMessage] = []
    fills_seen: list[DataMessage] = []
    trading_token = token("trader", wallets=[account], trade=True)
    async with GatewayClient(gateway.ws, trading_token) as client:
        trader = await Trader.create(client, agent_key, gateway.http)
        readers = [
            asyncio.ensure_future(
                collect(await client.user_orders("trader").confirmed(), orders_seen)
            ),
            asyncio.ensure_future(
                collect(await client.user_fills("trader").confirmed(), fills_seen)
            ),
        ]

        # Subscribed before trading, as a bot is: the gateway's upstream streams are live.
        def upstream_streams() -> set[str]:
            subs = simulator.active_subscriptions()
            return {s["type"] for s in subs if str(s.get("user", "")).lower() == account}

        await eventually(lambda: {"orderUpdates", "userFills"} <= upstream_streams())
        market = simulator.world.market
        resting: list[tuple[str, Sent]] = []
        placed = Counter[str]()

        async def place(coin: str) -> None:
            mid = float(market.mid(coin))
            size = 0.05 if coin == "ETH" else 1.0
            kind = rng.choice(("rest", "rest", "cross", "touch"))
            buy = rng.random() < 0.5
            if kind == "rest":  # far from the market: rests until modified or canceled
                px = mid * (0.95 if buy else 1.05)
                sent = await trader.order(coin, buy, size, rounded(px, coin))
                resting.append((coin, sent))
            elif kind == "cross":  # takes the book at once (Ioc, as market orders do)
                px = mid * (1.01 if buy else 0.99)
                sent = await trader.order(coin, buy, size, rounded(px, coin), tif="Ioc")
            else:  # at the touch: fills as the market trades through it, or later canceled
                bid, ask = market.best_bid_ask(coin)
                sent = await trader.order(coin, buy, size, float(bid if buy else ask))
                resting.append((coin, sent))
            assert sent.ok and sent.error is None, (kind, sent)
            assert sent.cloid is not None
            placed[kind] += 1

        for batch in range(ORDERS // 10):
            await asyncio.gather(*(place(COINS[(batch + i) % 2]) for i in range(10)))
            if batch % 4 == 3 and resting:  # modify a few by cloid, by oid
                coin, sent = resting[-1]
                if sent.oid is not None:
                    mid = float(market.mid(coin))
                    size = 0.05 if coin == "ETH" else 1.0
                    moved = await trader.modify(
                        sent.oid, coin, True, size, rounded(mid * 0.94, coin)
                    )
                    assert moved.ok, moved
                    placed["modified"] += 1
        # Cancel what still rests: half by cloid, half by oid.
        wallet = simulator.world.accounts.wallet(account)
        assert wallet is not None
        for i, update in enumerate(list(wallet.open_orders())):
            if i % 2 and update.cloid:
                done = await trader.cancel_by_cloid(update.coin, update.cloid)
            else:
                done = await trader.cancel(update.coin, update.oid)
            assert done.ok, done
            placed["canceled"] += int(done.statuses == ["success"])
        assert sum(placed[k] for k in ("rest", "cross", "touch")) == ORDERS
        assert placed["modified"] and placed["canceled"] and placed["cross"]

        ledger = simulator.ledger(account)
        expected_fills = [f["tid"] for f in ledger["fills"]]
        expected_orders = [(o["oid"], o["status"], float(o["sz"])) for o in ledger["orders"]]

        def delivered_fills() -> list[int]:
            return [f["id"] for m in fills_seen for f in m.data["fills"]]

        def delivered_orders() -> list[tuple[int, str, float]]:
            return [
                (m.data["order"]["id"], m.data["order"]["status"], m.data["order"]["remaining"])
                for m in orders_seen
            ]

        def arrived() -> bool:
            return len(delivered_fills()) >= len(expected_fills) and len(delivered_orders()) >= len(
                expected_orders
            )

        try:
            await eventually(arrived, timeout=30)
        except TimeoutError:
            missing = Counter(expected_orders) - Counter(delivered_orders())
            unexpected = Counter(delivered_orders()) - Counter(expected_orders)
            lost = Counter(expected_fills) - Counter(delivered_fills())
            raise AssertionError(f"missing {missing} {lost}; unexpected {unexpected}") from None
        for reader in readers:
            reader.cancel()
    assert len(expected_fills) >= placed["cross"]  # every crossing order filled
    assert Counter(delivered_fills()) == Counter(expected_fills)  # each fill exactly once
    assert Counter(delivered_orders()) == Counter(expected_orders)  # each transition once
    statuses = Counter(status for _, status, _ in expected_orders)
    assert statuses["open"] >= ORDERS and statuses["filled"] and statuses["canceled"]
    # Every order the client sent carried a cloid, and the streams show it.
    assert all(m.data["order"]["cloid"] for m in orders_seen)


async def test_a_spot_pair_trades_through_the_gateway(
    simulator: Simulator, gateway: GatewayServer
) -> None:
    """HYPE/USDC through `post`: its transitions and fills reach the user streams, named
    as the client names the pair, and the simulator's spot balances move."""
    account = simulator.local_account.address
    agent_key = await approve_agent(simulator)
    orders_seen: list[DataMessage] = []
    fills_seen: list[DataMessage] = []
    async with GatewayClient(gateway.ws, token("trader", wallets=[account], trade=True)) as client:
        trader = await Trader.create(client, agent_key, gateway.http)
        readers = [
            asyncio.ensure_future(
                collect(await client.user_orders("trader").confirmed(), orders_seen)
            ),
            asyncio.ensure_future(
                collect(await client.user_fills("trader").confirmed(), fills_seen)
            ),
        ]
        mid = float(simulator.world.market.mid("@107"))
        rests = await trader.order("HYPE/USDC", True, 1.0, round(mid * 0.8, 2))
        assert rests.ok and rests.error is None and rests.oid is not None, rests
        crosses = await trader.order("HYPE/USDC", True, 0.5, round(mid * 1.05, 2), tif="Ioc")
        assert crosses.ok and crosses.error is None, crosses
        assert (await trader.cancel("HYPE/USDC", rests.oid)).ok
        wallet = simulator.world.accounts.wallet(account)
        assert wallet is not None and wallet.spot["@107"].balance > 0

        def transitions() -> list[tuple[str, str]]:
            return [(m.data["order"]["symbol"], m.data["order"]["status"]) for m in orders_seen]

        await eventually(lambda: ("HYPE/USDC", "canceled") in transitions() and bool(fills_seen))
        for reader in readers:
            reader.cancel()
    fills = [f for m in fills_seen for f in m.data["fills"]]
    assert {(f["symbol"], f["market"], f["feeToken"]) for f in fills} == {
        ("HYPE/USDC", "spot", "HYPE")
    }
    assert sorted(f["id"] for f in fills) == sorted(
        f["tid"] for f in simulator.ledger(account)["fills"]
    )
    assert {symbol for symbol, _ in transitions()} == {"HYPE/USDC"}
    expected = [(o["oid"], o["status"]) for o in simulator.ledger(account)["orders"]]
    assert sorted(
        (m.data["order"]["id"], m.data["order"]["status"]) for m in orders_seen
    ) == sorted(expected)

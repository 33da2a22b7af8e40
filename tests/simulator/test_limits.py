"""Hyperliquid's per-IP limits: every connection from 127.0.0.1 shares one budget."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from hlgateway.simulator import SimConfig, Simulator
from hlgateway.simulator.limits import info_weight
from tests.helpers import eventually

from .conftest import FAST, USER, channel, recv_until, subscribe


@asynccontextmanager
async def running(**changes: Any) -> AsyncIterator[Simulator]:
    sim = Simulator(dataclasses.replace(FAST, **changes))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def handshake_status(session: aiohttp.ClientSession, sim: Simulator) -> int:
    """Try an upgrade that must be refused; return the HTTP status it got."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(sim.ws_url)
    return refused.value.status


async def error_for(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> str:
    await ws.send_json(message)
    frame, _ = await recv_until(ws, channel("error"))
    text: str = frame["data"]
    return text


def sub_msg(sub: dict[str, Any]) -> dict[str, Any]:
    return {"method": "subscribe", "subscription": sub}


def test_defaults_are_hyperliquids() -> None:
    cfg = SimConfig()
    assert (cfg.max_connections, cfg.max_new_connections_per_minute) == (10, 30)
    assert (cfg.max_subscriptions, cfg.max_users, cfg.max_messages_per_minute) == (1000, 10, 2000)
    assert cfg.idle_timeout == 60.0 and cfg.track_grace == 120.0 and cfg.control is False
    assert cfg.rest_weight_per_minute == 1200
    with pytest.raises(ValueError, match="max_connections"):
        SimConfig(max_connections=0)
    with pytest.raises(ValueError, match="max_new_connections_per_minute"):
        SimConfig(max_new_connections_per_minute=0)
    with pytest.raises(ValueError, match="track_grace"):
        SimConfig(track_grace=-1)


async def test_open_connections_per_ip(session: aiohttp.ClientSession) -> None:
    async with running(max_connections=2) as sim:
        first = await session.ws_connect(sim.ws_url)
        second = await session.ws_connect(sim.ws_url)
        assert await handshake_status(session, sim) == 429
        assert sim.stats()["connections"]["refused"]["maxConnections"] == 1
        # The refusal came before the upgrade and left the open links alone.
        await second.send_json({"method": "ping"})
        await recv_until(second, channel("pong"))
        await first.close()
        await eventually(lambda: sim.connection_count() == 1)
        third = await session.ws_connect(sim.ws_url)
        assert sim.connection_count() == 2
        await third.close()
        await second.close()


async def test_new_connections_per_minute_per_ip(session: aiohttp.ClientSession) -> None:
    async with running(max_new_connections_per_minute=3) as sim:
        for _ in range(3):
            ws = await session.ws_connect(sim.ws_url)
            await ws.close()
        await eventually(lambda: sim.connection_count() == 0)
        # Nothing is open, but three upgrades in the last minute is the budget.
        assert await handshake_status(session, sim) == 429
        stats = sim.stats()["connections"]
        assert stats["refused"]["newConnectionRate"] == 1 and stats["accepted"] == 3


async def test_subscriptions_and_users_are_counted_across_connections(
    session: aiohttp.ClientSession,
) -> None:
    user1, user2, user3 = ("0x" + f"{i:02x}" * 20 for i in (1, 2, 3))
    async with (
        running(max_users=2, max_subscriptions=4) as sim,
        session.ws_connect(sim.ws_url) as one,
        session.ws_connect(sim.ws_url) as two,
    ):
        await subscribe(one, {"type": "userFills", "user": user1})
        await subscribe(two, {"type": "orderUpdates", "user": user2})
        await subscribe(one, {"type": "userEvents", "user": user1})  # a known user: fine
        text = await error_for(two, sub_msg({"type": "userFills", "user": user3}))
        assert text == "Cannot track more than 2 total users."
        await subscribe(two, {"type": "allMids"})
        text = await error_for(one, sub_msg({"type": "trades", "coin": "BTC"}))
        assert text == "Cannot subscribe to more than 4 channels."
        # Freeing a subscription on one link makes room on the other.
        await two.send_json(
            {"method": "unsubscribe", "subscription": {"type": "orderUpdates", "user": user2}}
        )
        await recv_until(two, channel("subscriptionResponse"))
        await subscribe(one, {"type": "orderUpdates", "user": user3})
        limits = sim.stats()["limitErrors"]
        assert limits == {"subscriptions": 1, "users": 1, "messages": 0}


async def test_closing_a_connection_frees_its_share(session: aiohttp.ClientSession) -> None:
    async with running(max_users=1) as sim:
        one = await session.ws_connect(sim.ws_url)
        await subscribe(one, {"type": "userFills", "user": USER})
        async with session.ws_connect(sim.ws_url) as two:
            other = "0x" + "09" * 20
            text = await error_for(two, sub_msg({"type": "orderUpdates", "user": other}))
            assert text == "Cannot track more than 1 total users."
            await one.close()
            await eventually(lambda: sim.connection_count() == 1)
            await subscribe(two, {"type": "orderUpdates", "user": other})


async def test_messages_per_minute_per_ip(session: aiohttp.ClientSession) -> None:
    async with (
        running(max_messages_per_minute=3) as sim,
        session.ws_connect(sim.ws_url) as one,
        session.ws_connect(sim.ws_url) as two,
    ):
        for ws in (one, one, two):
            await ws.send_json({"method": "ping"})
            await recv_until(ws, channel("pong"))
        for ws in (two, one):
            text = await error_for(ws, {"method": "ping"})
            assert text == "Cannot send more than 3 messages per minute."
        assert sim.stats()["limitErrors"]["messages"] == 2


async def test_limit_checks_ignore_plain_http(session: aiohttp.ClientSession) -> None:
    async with running(max_connections=1, max_new_connections_per_minute=1) as sim:
        for _ in range(3):  # not upgrades: aiohttp's 400, and no budget spent
            async with session.get(sim.ws_url.replace("ws://", "http://")) as resp:
                assert resp.status == 400
        ws = await session.ws_connect(sim.ws_url)
        assert await handshake_status(session, sim) == 429
        await ws.close()


@asynccontextmanager
async def from_address(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections leave from `address` (127.0.0.x: another IP here)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


async def test_each_client_address_has_its_own_budgets() -> None:
    user1, user2, user3 = ("0x" + f"{i:02x}" * 20 for i in (1, 2, 3))
    async with (
        running(max_users=1, max_connections=1) as sim,
        from_address("127.0.0.2") as a,
        from_address("127.0.0.3") as b,
    ):
        one = await a.ws_connect(sim.ws_url)
        assert await handshake_status(a, sim) == 429  # 127.0.0.2 has its one link
        two = await b.ws_connect(sim.ws_url)  # 127.0.0.3 has one of its own
        await subscribe(one, {"type": "userFills", "user": user1})
        await subscribe(two, {"type": "userFills", "user": user2})  # its own user, too
        text = await error_for(one, sub_msg({"type": "orderUpdates", "user": user3}))
        assert text == "Cannot track more than 1 total users."
        assert sorted(link["remote"] for link in sim.links()) == ["127.0.0.2", "127.0.0.3"]
        await one.close()
        await two.close()


async def test_rest_weight_per_address() -> None:
    async def info(client: aiohttp.ClientSession, sim: Simulator) -> int:
        async with client.post(sim.http_url + "/info", json={"type": "metaAndAssetCtxs"}) as r:
            await r.read()
            return r.status

    async with (
        running(rest_weight_per_minute=50) as sim,
        from_address("127.0.0.2") as a,
        from_address("127.0.0.3") as b,
    ):
        # 20 each: the third starts under the limit (40), the fourth finds it spent.
        assert [await info(a, sim) for _ in range(4)] == [200, 200, 200, 429]
        assert await info(b, sim) == 200  # another address, another budget
        assert sim.rest_usage() == {
            "127.0.0.2": {"lastMinute": 60, "total": 60, "refused": 1},
            "127.0.0.3": {"lastMinute": 20, "total": 20, "refused": 0},
        }


def test_info_weights_are_hyperliquids() -> None:
    assert [info_weight(k, None) for k in ("l2Book", "allMids", "clearinghouseState")] == [2] * 3
    assert info_weight("metaAndAssetCtxs", []) == 20 and info_weight("userRole", {}) == 60
    # One more per 20 items answered, for the requests that answer lists of history.
    assert info_weight("historicalOrders", [{}] * 45) == 22
    assert info_weight("userFillsByTime", [{}] * 19) == 20
    assert info_weight("metaAndAssetCtxs", [{}] * 45) == 20

"""GatewayClient against a real gateway on 127.0.0.1 (in-process, on the simulator)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from hlgateway.client import (
    AuthenticationFailed,
    Backoff,
    DataMessage,
    ErrorMessage,
    GatewayClient,
    LinkState,
    OrderBook,
    ReconnectAttemptsExhausted,
    SendQueueFull,
    SubscriptionRefused,
)
from hlgateway.client.tokens import token_expiry
from hlgateway.simulator import Simulator
from tests.client.support import PortGateway, Recorder
from tests.conftest import sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    SECRET,
    admin_token,
    alice_token,
    eventually,
    free_port,
    make_settings,
    token,
)

FAST = Backoff(initial=0.05, decay=1.5, max_delay=0.5)


async def test_async_iteration_and_callbacks(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        seen: list[DataMessage] = []
        client.on("data:prices", seen.append)
        sub = await client.prices(["eth", "BTC", "btc"])
        assert sub.canonical_params == {"symbols": ["BTC", "ETH"]}
        update = await sub.next(5)
        assert set(update.data) == {"BTC", "ETH"}
        assert update.payload()["BTC"].price > 0
        await eventually(lambda: len(seen) >= 1, 5)
        assert seen[0].channel == "prices"
        count = 0
        async for update in sub:
            assert update.params == {"symbols": ["BTC", "ETH"]}
            count += 1
            if count == 2:
                break


async def test_two_orderbook_subscriptions_are_both_kept(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        shallow, deep = await asyncio.gather(
            client.orderbook("BTC", depth=5), client.orderbook("btc")
        )
        assert shallow.canonical_params == {"depth": 5, "symbol": "BTC"}
        assert deep.canonical_params == {"depth": 10, "symbol": "BTC"}
        book5 = (await shallow.next(5)).payload()
        book10 = (await deep.next(5)).payload()
        assert isinstance(book5, OrderBook) and isinstance(book10, OrderBook)
        assert (len(book5.bids), len(book10.bids)) == (5, 10)
        assert sorted(client.subscriptions, key=lambda s: s[1]["depth"]) == [
            ("orderbook", {"depth": 5, "symbol": "BTC"}),
            ("orderbook", {"depth": 10, "symbol": "BTC"}),
        ]


async def test_refused_subscriptions_raise_and_emit(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        events = Recorder(client, "error")
        with pytest.raises(SubscriptionRefused) as refused:
            await client.user_fills("bob")
        assert refused.value.code == "FORBIDDEN" and refused.value.channel == "user_fills"
        bad = client.orderbook("BTC", depth=99)
        with pytest.raises(SubscriptionRefused) as invalid:
            async for _ in bad:
                pass
        assert invalid.value.code == "INVALID_PARAMS"
        errors = await events.wait("error", 2)
        assert [e.code for e in errors if isinstance(e, ErrorMessage)] == [
            "FORBIDDEN",
            "INVALID_PARAMS",
        ]
        assert client.subscriptions == []  # refused ones are not restored later
        own = await client.user_orders("alice", wallet=ALICE_WALLET.upper().replace("0X", "0x"))
        assert own.canonical_params == {"userId": "alice", "wallet": ALICE_WALLET}


async def test_ping_measures_the_round_trip(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        rtts = [await client.ping() for _ in range(5)]
        assert all(0 < rtt < 1 for rtt in rtts)


async def test_unsubscribe_when_the_last_handle_goes(gateway: PortGateway) -> None:
    def subscriptions() -> int:
        count: int = gateway.gateway.health()["websocket"]["subscriptions"]
        return count

    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        first = await client.trades("SOL")
        async with client.trades("sol") as second:
            assert second.canonical_params == {"symbol": "SOL"}
            await eventually(lambda: subscriptions() == 1, 5)
        assert client.subscriptions == [("trades", {"symbol": "SOL"})]
        await first.unsubscribe()
        assert client.subscriptions == []
        await eventually(lambda: subscriptions() == 0, 5)
        async for _ in first:  # ended: the iterator stops
            pytest.fail("no data after unsubscribe")


async def test_queue_is_bounded_while_disconnected() -> None:
    client = GatewayClient(
        f"ws://127.0.0.1:{free_port()}/ws",  # nothing listens there
        alice_token(),
        backoff=Backoff(initial=30),
        max_queue=3,
    )
    events = Recorder(client, "disconnected", "reconnecting")
    client.start()
    await events.wait("reconnecting")
    assert client.state is LinkState.WAITING
    for n in range(3):
        client.send({"type": "ping", "id": f"raw{n}"})
    with pytest.raises(SendQueueFull):
        client.send({"type": "ping"})
    with pytest.raises(SendQueueFull):
        await client.ping()
    # Subscriptions are not queued messages: the registry restores them.
    sub = client.prices(["BTC"])
    assert client.subscriptions == [("prices", {"symbols": ["BTC"]})]
    await client.close()
    assert client.closed_error is not None and str(client.state) == "closed"
    async for _ in sub:
        pytest.fail("closed")


async def test_queued_messages_go_out_after_welcome(simulator: Simulator) -> None:
    port = free_port()
    client = GatewayClient(f"ws://127.0.0.1:{port}/ws", alice_token(), backoff=FAST)
    events = Recorder(client, "reconnecting", "pong")
    client.start()
    await events.wait("reconnecting")
    ping = asyncio.ensure_future(client.ping(timeout=15))
    client.send({"type": "ping", "id": "queued"})
    prices = client.prices(["ETH"])
    srv = PortGateway(sim_endpoint(simulator), make_settings(), port)
    await srv.start()
    try:
        rtt = await ping
        assert 0 < rtt < 1
        pongs = await events.wait("pong", 2)
        assert any(p.id == "queued" for p in pongs)
        assert set((await prices.next(5)).data) == {"ETH"}
    finally:
        await client.close()
        await srv.stop()


async def test_rooms_are_joined_and_delivered(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        desk = await client.room("desk")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{gateway.http}/api/rooms/desk/publish",
                json={"data": {"note": "halt"}},
                headers={"Authorization": f"Bearer {admin_token()}"},
            ) as resp,
        ):
            assert resp.status == 202 and (await resp.json())["delivered"] == 1
        msg = await desk.next(5)
        assert isinstance(msg, DataMessage)
        assert (msg.channel, msg.params, msg.data) == ("room", {"room": "desk"}, {"note": "halt"})


async def test_refused_token_without_provider_stops(gateway: PortGateway) -> None:
    bad = token("alice", ttl_seconds=60).rsplit(".", 1)[0] + ".forged"
    client = GatewayClient(gateway.ws, bad, backoff=FAST)
    events = Recorder(client, "closed", "error")
    with pytest.raises(AuthenticationFailed) as failed:
        await client.connect(timeout=10)
    assert failed.value.code == 1008 and "Invalid token" in str(failed.value)
    assert isinstance((await events.wait("closed"))[0], AuthenticationFailed)
    assert client.state is LinkState.CLOSED
    await client.close()


async def test_provider_gives_a_fresh_token_after_a_refusal(gateway: PortGateway) -> None:
    calls: list[float] = []

    async def provider() -> str:
        calls.append(time.monotonic())
        return "garbage" if len(calls) == 1 else alice_token()

    async with GatewayClient(gateway.ws, provider, backoff=FAST) as client:
        assert client.welcome is not None and client.welcome.user["id"] == "alice"
        assert len(calls) == 2


async def test_token_refresh_keeps_the_link_past_expiry(gateway: PortGateway) -> None:
    issued: list[str] = []

    def provider() -> str:
        issued.append(alice_token(ttl_seconds=3))
        return issued[-1]

    client = GatewayClient(gateway.ws, provider, backoff=FAST, refresh_before=1.5)
    events = Recorder(client, "authenticated", "disconnected")
    async with client:
        sub = await client.prices(["BTC"])
        first_expiry = token_expiry(issued[0])
        assert first_expiry is not None
        await eventually(lambda: time.time() > first_expiry + 1, 6)
        # Past the first token's expiry: still the first link, data still flowing.
        await _fresh(sub, after=time.time() * 1000)
        assert client.connects == 1 and events.of("disconnected") == []
        assert len(events.of("authenticated")) >= 1 and len(issued) >= 2


async def test_expired_token_without_provider_stops_with_4001(gateway: PortGateway) -> None:
    client = GatewayClient(gateway.ws, alice_token(ttl_seconds=2), backoff=FAST)
    async with client:
        sub = await client.prices(["BTC"])
        with pytest.raises(AuthenticationFailed) as failed:
            async for _ in sub:
                pass
        assert failed.value.code == 4001


async def test_gives_up_after_max_attempts() -> None:
    client = GatewayClient(
        f"ws://127.0.0.1:{free_port()}/ws",
        alice_token(),
        backoff=Backoff(initial=0.01, max_attempts=2),
    )
    events = Recorder(client, "reconnecting", "maxReconnectAttemptsReached")
    with pytest.raises(ReconnectAttemptsExhausted):
        await client.connect(timeout=10)
    assert len(events.of("reconnecting")) == 2
    assert len(events.of("maxReconnectAttemptsReached")) == 1
    await client.close()


async def test_restart_in_place_restores_everything(simulator: Simulator) -> None:
    port = free_port()
    first = PortGateway(sim_endpoint(simulator), make_settings(), port)
    await first.start()
    client = GatewayClient(f"ws://127.0.0.1:{port}/ws", alice_token(), backoff=FAST)
    events = Recorder(client, "shutdown", "disconnected", "reconnecting", "subscribed", "resync")
    await client.connect()
    subs = {
        "prices": client.prices(["BTC", "ETH"]),
        "book5": client.orderbook("BTC", 5),
        "book10": client.orderbook("BTC", 10),
        "trades": client.trades("ETH"),
        "orders": client.user_orders("alice"),
        "room": client.room("desk"),
    }
    await asyncio.gather(*subs.values())
    await first.stop()
    await events.wait("disconnected")
    assert events.of("shutdown") and events.of("disconnected")[0].code == 1001
    second = PortGateway(sim_endpoint(simulator), make_settings(), port)
    await second.start()
    try:
        await events.wait("subscribed", 12, timeout=10)
        assert client.reconnects == 1
        for name in ("prices", "book5", "book10", "orders"):
            msg = await _fresh(subs[name], after=time.time() * 1000)
            assert msg.channel in ("prices", "orderbook", "user_orders"), name
        assert len(second.gateway.connections) == 1
        # A restarted gateway (memory engine) lost the lossless streams' history.
        resynced = {(r.channel, r.reason) for r in events.of("resync")}
        assert resynced == {(c, "not recovered") for c in ("trades", "user_orders", "room")}
        # five subscriptions and the room, all back on the new gateway
        assert second.gateway.health()["websocket"]["subscriptions"] == 6
    finally:
        await client.close()
        await second.stop()


async def _fresh(sub: Any, after: float) -> DataMessage:
    """The first message of `sub` sent after `after` (ms): data flows again."""
    while True:
        msg = await sub.next(10)
        if isinstance(msg, DataMessage) and msg.timestamp >= after:
            return msg


def test_secret_is_the_test_one() -> None:
    assert SECRET  # the provider-based tests mint with tests.helpers' secret


async def test_a_failing_provider_is_retried(gateway: PortGateway) -> None:
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("identity service down")
        return alice_token()

    client = GatewayClient(gateway.ws, provider, backoff=FAST)
    events = Recorder(client, "error")
    async with client:
        assert client.connects == 1 and len(calls) == 2
        assert "token provider failed" in str(events.of("error")[0])


async def test_a_gateway_that_cannot_be_reached_is_named_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong port must not look like a hang: before the first `welcome` each failed
    attempt is a WARNING (printed even when the application set up no logging) that
    names the address and the operating system's reason."""
    port = free_port()  # nothing listens there
    url = f"ws://127.0.0.1:{port}/ws"
    client = GatewayClient(url, alice_token(), backoff=Backoff(initial=30))
    events = Recorder(client, "disconnected", "reconnecting")
    with caplog.at_level("INFO", logger="hlgateway.client"):
        client.start()
        await events.wait("reconnecting")
    await client.close()
    reason = events.of("disconnected")[0].reason
    assert reason == f"connect failed: 127.0.0.1:{port}: Connection refused"
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warned] == [
        f"gateway {url}: {reason}; retrying (not connected yet)"
    ]


async def test_a_refused_first_connect_leaves_no_session_open(gateway: PortGateway) -> None:
    """`async with GatewayClient(url, bad_token)` raises AuthenticationFailed and closes
    the HTTP session it made (else aiohttp prints `Unclosed client session` after the
    traceback)."""
    client = GatewayClient(gateway.ws, "not-a-token", backoff=FAST)
    with pytest.raises(AuthenticationFailed):
        async with client:
            pytest.fail("connected with a bad token")
    session = client._session
    assert session is None or session.closed

"""GatewayClient's stream positions over a real socket to a scripted peer that plays the
gateway's side of wire v2 message by message: what a real gateway does only under faults
(gaps, duplicates, refusals while starting, a handshake refused) is written out here.
The real gateway's recovery is exercised in test_recovery.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from hlgateway.client import (
    Backoff,
    DataMessage,
    GatewayClient,
    HandshakeRefused,
    Position,
    Recovered,
    Resync,
    SubscriptionRefused,
)
from tests.client.support import Recorder

FAST = Backoff(initial=0.02, decay=1.5, max_delay=0.1)
USER = {"userId": "alice"}


class Peer:
    """One accepted connection, driven by the test."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.done = asyncio.Event()

    async def recv(self, kind: str | None = None) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), 5)
            if kind is None or msg["type"] == kind:
                return msg

    async def send(self, **msg: Any) -> None:
        await self.ws.send_json({"timestamp": 1, **msg})

    async def fill(self, offset: int, epoch: str = "E") -> None:
        await self.send(
            type="data",
            channel="user_fills",
            params=USER,
            data={"fills": [{"id": offset}]},
            offset=offset,
            epoch=epoch,
        )

    async def close(self, code: int, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason.encode())


class ScriptedGateway:
    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.refuse_with: int | None = None
        self.refused = 0
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app)
        self.url = ""

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_with is not None:
            self.refused += 1
            return web.Response(status=self.refuse_with, text="origin not allowed")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        peer = Peer(ws)
        await peer.send(type="welcome", clientId="c1", user={"id": "alice"})
        await self.peers.put(peer)
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                await peer.inbox.put(frame.json())
        peer.done.set()
        return ws

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"ws://127.0.0.1:{self._runner.addresses[0][1]}/ws"

    async def peer(self) -> Peer:
        return await asyncio.wait_for(self.peers.get(), 5)

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedGateway]:
    gw = ScriptedGateway()
    await gw.start()
    yield gw
    await gw.stop()


async def offsets(sub: Any, count: int) -> list[int | str]:
    """The next `count` items: data offsets, or 'resync:<reason>'."""
    out: list[int | str] = []
    while len(out) < count:
        item = await sub.next(5)
        if isinstance(item, Resync):
            out.append(f"resync:{item.reason}")
        else:
            assert isinstance(item, DataMessage) and item.offset is not None
            out.append(item.offset)
    return out


async def test_duplicates_dropped_gap_healed_with_since(scripted: ScriptedGateway) -> None:
    async with GatewayClient(scripted.url, "t", backoff=FAST) as client:
        events = Recorder(client, "recovered", "unsubscribed", "data")
        sub = client.user_fills("alice")
        peer = await scripted.peer()
        req = await peer.recv("subscribe")
        assert "since" not in req
        await peer.send(type="subscribed", id=req["id"], channel="user_fills", params=USER,
                        offset=5, epoch="E")  # fmt: skip
        for n in (6, 7, 7, 6):
            await peer.fill(n)
        assert await offsets(sub, 2) == [6, 7]
        await peer.fill(9)  # 8 is missing
        heal = await peer.recv()  # the same subscription, again, with since
        assert heal["type"] == "subscribe" and heal["since"] == {"offset": 7, "epoch": "E"}
        await peer.fill(10)  # queued before the heal: skipped, the replay brings it
        await peer.send(type="subscribed", id=heal["id"], channel="user_fills", params=USER,
                        offset=10, epoch="E", recovered=True)  # fmt: skip
        for n in (8, 9, 10, 11):
            await peer.fill(n)
        assert await offsets(sub, 4) == [8, 9, 10, 11]
        assert sub.position == Position(11, "E")
        recovered = (await events.wait("recovered"))[0]
        assert isinstance(recovered, Recovered)
        assert (recovered.since, recovered.head) == (Position(7, "E"), Position(10, "E"))
        assert events.of("unsubscribed") == []
        # Callbacks see each message once too.
        assert [m.offset for m in events.of("data")] == [6, 7, 8, 9, 10, 11]


async def test_rewind_asks_for_a_replay_on_the_same_subscription(
    scripted: ScriptedGateway,
) -> None:
    """An application that dropped messages it could not keep (the notifier's paused
    feed) rewinds to where it stopped: the subscription stays, a subscribe with `since`
    goes out, what comes before the replay is dropped, and the replay is delivered."""
    async with GatewayClient(scripted.url, "t", backoff=FAST) as client:
        events = Recorder(client, "data", "unsubscribed")
        sub = client.user_fills("alice")
        peer = await scripted.peer()
        req = await peer.recv("subscribe")
        await peer.send(type="subscribed", id=req["id"], channel="user_fills", params=USER,
                        offset=0, epoch="E")  # fmt: skip
        for n in (1, 2, 3, 4):
            await peer.fill(n)
        assert await offsets(sub, 4) == [1, 2, 3, 4]
        client.rewind(sub, Position(2, "E"))  # 3 and 4 were dropped by the application
        again = await peer.recv()
        assert again["type"] == "subscribe" and again["since"] == {"offset": 2, "epoch": "E"}
        await peer.fill(5)  # queued before the replay: dropped, the replay brings it
        await peer.send(type="subscribed", id=again["id"], channel="user_fills", params=USER,
                        offset=5, epoch="E", recovered=True)  # fmt: skip
        for n in (3, 4, 5, 6):
            await peer.fill(n)
        assert await offsets(sub, 4) == [3, 4, 5, 6]
        assert [m.offset for m in events.of("data")] == [1, 2, 3, 4, 3, 4, 5, 6]
        assert events.of("unsubscribed") == []
        other = client.user_fills("bob")
        await other.unsubscribe()
        with pytest.raises(ValueError):
            client.rewind(other, Position(1, "E"))


async def test_reconnect_sends_since_and_not_recovered_is_a_resync(
    scripted: ScriptedGateway,
) -> None:
    async with GatewayClient(scripted.url, "t", backoff=FAST) as client:
        events = Recorder(client, "resync")
        # A stored position, as JSON ({"offset", "epoch"}) or as a Position.
        sub = client.user_fills("alice", since={"offset": 3, "epoch": "OLD"})
        peer = await scripted.peer()
        req = await peer.recv("subscribe")
        assert req["since"] == {"offset": 3, "epoch": "OLD"}
        await peer.send(type="subscribed", id=req["id"], channel="user_fills", params=USER,
                        offset=4, epoch="OLD", recovered=True)  # fmt: skip
        await peer.fill(4, "OLD")
        assert await offsets(sub, 1) == [4]
        await peer.close(4008, "Slow consumer")
        peer = await scripted.peer()
        req = await peer.recv("subscribe")
        assert req["since"] == {"offset": 4, "epoch": "OLD"}
        await peer.send(type="subscribed", id=req["id"], channel="user_fills", params=USER,
                        offset=2, epoch="NEW", recovered=False)  # fmt: skip
        await peer.fill(3, "NEW")
        assert await offsets(sub, 2) == ["resync:not recovered", 3]
        resync = (await events.wait("resync"))[0]
        assert resync == Resync(
            "user_fills", USER, "not recovered", Position(4, "OLD"), Position(2, "NEW")
        )
        assert sub.position == Position(3, "NEW")


async def test_passing_refusals_are_retried_final_ones_fail(scripted: ScriptedGateway) -> None:
    async with GatewayClient(scripted.url, "t", backoff=FAST) as client:
        trades = client.trades("BTC")
        peer = await scripted.peer()
        for code in ("UPSTREAM_UNAVAILABLE", "RATE_LIMITED", "INTERNAL"):
            req = await peer.recv("subscribe")
            await peer.send(type="error", id=req["id"], code=code, message="try again shortly")
        req = await peer.recv("subscribe")
        await peer.send(type="subscribed", id=req["id"], channel="trades",
                        params={"symbol": "BTC"}, offset=0, epoch="T")  # fmt: skip
        assert (await trades).canonical_params == {"symbol": "BTC"}
        forbidden = client.user_fills("bob")
        req = await peer.recv("subscribe")
        await peer.send(type="error", id=req["id"], code="FORBIDDEN", message="no",
                        channel="user_fills")  # fmt: skip
        with pytest.raises(SubscriptionRefused):
            await forbidden
        assert client.subscriptions == [("trades", {"symbol": "BTC"})]


async def test_a_lossless_handle_that_overflows_is_told_to_resync(
    scripted: ScriptedGateway,
) -> None:
    async with GatewayClient(scripted.url, "t", backoff=FAST, buffer=3) as client:
        events = Recorder(client, "pong")
        sub = client.user_fills("alice")
        peer = await scripted.peer()
        req = await peer.recv("subscribe")
        await peer.send(type="subscribed", id=req["id"], channel="user_fills", params=USER,
                        offset=0, epoch="E")  # fmt: skip
        for n in range(1, 6):
            await peer.fill(n)
        await peer.send(type="pong", id="marker")
        await events.wait("pong")  # the fills before it are in the handle's buffer now
        assert await offsets(sub, 3) == ["resync:buffer overflow", 4, 5]
        assert sub.dropped == 3


async def test_repeated_handshake_refusals_stop(scripted: ScriptedGateway) -> None:
    scripted.refuse_with = 403
    client = GatewayClient(scripted.url, "t", backoff=FAST, max_handshake_refusals=3)
    with pytest.raises(HandshakeRefused) as refused:
        await client.connect(timeout=10)
    assert refused.value.http_status == 403 and scripted.refused == 3
    await client.close()

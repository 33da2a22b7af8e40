"""Where a user stream starts, with the exchange's clock behind the gateway's.

Hyperliquid stamps events with its own clock. An order placed just after a
client's `subscribed`, before the gateway's upstream subscriptions are active,
is only known from what is read back (the userFills snapshot, REST
`historicalOrders` and `userFillsByTime`), and it is stamped earlier than the
gateway's clock said the subscribe happened when the exchange's clock runs
behind. Every transition and fill of it must arrive anyway, each once
(docs/upstream.md, "Where a stream starts")."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import eth_account
import pytest
from aiohttp import web
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)

from hlgateway.simulator import SimConfig, Simulator
from hlgateway.upstream.clock import CLOCK_MARGIN_MS
from hlgateway.upstream.networks import Endpoint
from tests.conftest import sim_endpoint
from tests.helpers import Client, GatewayServer, eventually, make_settings, token

ETH = 1  # the simulator's perp asset id of ETH
HYPE = 10_107  # HYPE/USDC, "@107" on the wire


class Exchange:
    """Signed /exchange requests of the simulator's funded local account."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self._sim, self._session = sim, session
        self.account: LocalAccount = eth_account.Account.from_key(sim.local_account.key)
        self._nonce = 0

    async def _post(self, action: dict[str, Any]) -> Any:
        # Nonces are the wall clock, as the SDK's: within a day of the exchange's.
        self._nonce = max(self._nonce + 1, time.time_ns() // 1_000_000)
        signature = sign_l1_action(self.account, action, None, self._nonce, None, False)
        body = {"action": action, "nonce": self._nonce, "signature": signature}
        async with self._session.post(self._sim.http_url + "/exchange", json=body) as resp:
            answer = await resp.json()
        assert answer["status"] == "ok", answer
        (status,) = answer["response"]["data"]["statuses"]
        return status

    async def order(
        self, buy: bool, size: float, px: float, tif: str = "Gtc", asset: int = ETH
    ) -> Any:
        wire = order_request_to_order_wire(
            {
                "coin": "ETH" if asset == ETH else "@107",
                "is_buy": buy,
                "sz": size,
                "limit_px": px,
                "order_type": {"limit": {"tif": tif}},
                "reduce_only": False,
            },
            asset,
        )
        return await self._post(order_wires_to_order_action([wire]))

    async def spot_buy(self, px: float) -> None:
        """Half a HYPE at up to `px`, at once."""
        assert "filled" in await self.order(True, 0.5, px, "Ioc", HYPE)

    async def cancel(self, oid: int) -> Any:
        return await self._post({"type": "cancel", "cancels": [{"a": ETH, "o": oid}]})


@pytest.mark.parametrize(
    "behind",
    [
        1.5,  # within the 2 s margin
        4.0,  # beyond it: the gateway learns how far from a book it is fed first
    ],
)
async def test_orders_placed_before_the_upstream_streams_are_active_arrive_whole(
    behind: float,
) -> None:
    # The exchange's clock runs `behind` seconds behind the gateway's.
    sim = Simulator(SimConfig(seed=3, book_interval=0.2, clock_offset=-behind))
    await sim.start("127.0.0.1", 0)
    srv = GatewayServer(sim_endpoint(sim), make_settings(upstream_backoff_max=0.2))
    await srv.start()
    session = aiohttp.ClientSession()
    exchange = Exchange(sim, session)
    wallet = exchange.account.address.lower()
    client = await Client.connect(srv.ws, token("trader", wallets=[wallet]))
    try:
        await client.recv()
        if behind > CLOCK_MARGIN_MS / 1000:
            book = {"type": "subscribe", "channel": "orderbook", "params": {"symbol": "ETH"}}
            assert (await client.request(book))["type"] == "subscribed"
            await client.data("orderbook")
            clock = srv.gateway.upstream.health()["clock"]
            assert clock["marginMs"] >= behind * 1000 and clock["exchangeBehindAtMostMs"]
        # No upstream link for now (the book's is cut): the user streams' subscriptions wait.
        sim.refuse(60)
        sim.drop()
        for channel in ("user_orders", "user_fills"):
            reply = await client.request(
                {"type": "subscribe", "channel": channel, "params": {"userId": "trader"}}
            )
            assert reply["type"] == "subscribed", reply
        # Just after `subscribed`: one order that rests, one that fills at once.
        mid = float(sim.world.market.mid("ETH"))
        resting = (await exchange.order(True, 0.1, round(mid * 0.9, 1)))["resting"]["oid"]
        crossed = await exchange.order(True, 0.1, round(mid * 1.05, 1), tif="Ioc")
        assert "filled" in crossed, crossed

        def upstream_streams() -> set[str]:
            subs = sim.active_subscriptions()
            return {s["type"] for s in subs if str(s.get("user", "")).lower() == wallet}

        sim.refuse(0)
        await eventually(lambda: {"orderUpdates", "userFills"} <= upstream_streams(), 15)
        # Now live: a cancel and another fill, which arrive after whatever was read back.
        assert await exchange.cancel(resting) == "success"
        sold = await exchange.order(False, 0.1, round(mid * 0.95, 1), tif="Ioc")
        last = sold["filled"]["oid"]

        def transitions() -> list[tuple[int, str, float]]:
            return [
                (o["id"], o["status"], round(float(o["remaining"]), 8))
                for m in client.seen
                if m["type"] == "data" and m["channel"] == "user_orders"
                for o in [m["data"]["order"]]
            ]

        def fills() -> list[int]:
            return [
                f["id"]
                for m in client.seen
                if m["type"] == "data" and m["channel"] == "user_fills"
                for f in m["data"]["fills"]
            ]

        ledger = sim.ledger(wallet)
        assert len(ledger["fills"]) == 2
        live_fill = max(ledger["fills"], key=lambda f: f["time"])["tid"]
        # Fills arrive in order and transitions read back before live ones: once the
        # last live transition and the live fill are here, everything before them is.
        while (last, "filled", 0.0) not in transitions() or live_fill not in fills():
            await client.recv(timeout=15)
        expected = [(o["oid"], o["status"], round(float(o["sz"]), 8)) for o in ledger["orders"]]
        assert Counter(transitions()) == Counter(expected)
        assert Counter(fills()) == Counter(f["tid"] for f in ledger["fills"])
        of_resting = [status for oid, status, _ in transitions() if oid == resting]
        assert of_resting == ["open", "canceled"]
    finally:
        await client.close()
        await session.close()
        await srv.stop()
        await sim.stop()


class ListingHold:
    """Hyperliquid's /info in front of the simulator's, holding the market list's
    requests while `held` (a restarted gateway then recovers before it has names)."""

    LISTING = frozenset(
        {"meta", "metaAndAssetCtxs", "spotMeta", "spotMetaAndAssetCtxs", "perpDexs"}
    )

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.open = asyncio.Event()
        self.open.set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/info", self._info)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/info"
        self._session = aiohttp.ClientSession()

    async def _info(self, request: web.Request) -> web.Response:
        body = await request.read()
        if json.loads(body).get("type") in self.LISTING:
            await self.open.wait()
        assert self._session is not None
        async with self._session.post(self._sim.http_url + "/info", data=body) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type="application/json"
            )

    async def stop(self) -> None:
        self.open.set()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_a_restart_names_what_it_recovers_even_before_its_market_list(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(seed=4, book_interval=0.2))
    await sim.start("127.0.0.1", 0)
    hold = ListingHold(sim)
    await hold.start()
    endpoint = Endpoint("sim", sim.ws_url, hold.url)
    settings = make_settings(state_dir=str(tmp_path / "state"), upstream_backoff_max=0.2)
    session = aiohttp.ClientSession()
    exchange = Exchange(sim, session)
    wallet = exchange.account.address.lower()
    subscribe = {"type": "subscribe", "channel": "user_fills", "params": {"userId": "trader"}}

    def spot_fills(client: Client) -> list[dict[str, Any]]:
        return [
            f
            for m in client.seen
            if m["type"] == "data" and m["channel"] == "user_fills"
            for f in m["data"]["fills"]
        ]

    first = GatewayServer(endpoint, settings)
    await first.start()
    second: GatewayServer | None = None
    client = await Client.connect(first.ws, token("trader", wallets=[wallet]))
    try:
        await client.recv()
        assert (await client.request(dict(subscribe)))["type"] == "subscribed"
        mid = float(sim.world.market.mid("@107"))
        await exchange.spot_buy(round(mid * 1.05, 2))
        await client.recv_until(lambda _: bool(spot_fills(client)))
        assert {f["symbol"] for f in spot_fills(client)} == {"HYPE/USDC"}
        last = next(m for m in reversed(client.seen) if m.get("channel") == "user_fills")
        await first.stop()
        await client.close()

        # Down: another spot fill. Up again with the market list held back.
        hold.open.clear()
        await exchange.spot_buy(round(mid * 1.05, 2))
        second = GatewayServer(endpoint, settings)
        await second.start(markets=False)
        wallets = second.gateway.feeds.wallets
        await eventually(lambda: wallets.recoveries >= 1, 15)  # the downtime was read back
        assert not second.gateway.upstream.markets.loaded
        hold.open.set()
        await asyncio.wait_for(second.gateway.upstream.markets_loaded.wait(), 10)

        client = await Client.connect(second.ws, token("trader", wallets=[wallet]))
        await client.recv()
        since = {"offset": last["offset"], "epoch": last["epoch"]}
        reply = await client.request({**subscribe, "since": since})
        assert reply["recovered"] is True, reply
        await client.recv_until(lambda _: bool(spot_fills(client)))
        (downtime,) = sim.ledger(wallet)["fills"][-1:]
        (fill,) = [f for f in spot_fills(client) if f["id"] == downtime["tid"]]
        assert (fill["symbol"], fill["market"]) == ("HYPE/USDC", "spot")
    finally:
        await client.close()
        await session.close()
        if second is not None:
            await second.stop()
        await hold.stop()
        await sim.stop()

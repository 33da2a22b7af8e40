"""The gateway side of the notifier, in one place: what it subscribes and what it hears.

The notifier reads every watched wallet's `user_fills` and `user_orders`
(lossless streams, with positions) and `account_updates`, plus `prices` while
any alert exists, as a service (an admin token) naming each wallet:
`{"userId": <service user>, "wallet": W}`. Everything arrives, in the order the
gateway sent it, as `FeedEvent`s on one queue. The gateway caps subscriptions
per connection (100 by default), so wallets are spread over as many connections
as needed, `wallets_per_connection` each; a wallet's streams share one.

A lossless stream that starts without a replay (the first subscribe of a
wallet, or `recovered: false` after a gateway restart) is announced as a `Gap`
before its data: the service then reloads what the gap may hold before it
handles anything later. A stream resumed with `since` and `recovered: true`
makes no gap.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from hlgateway.client import GatewayClient, Position, Resync, Subscription, SubscriptionRefused
from hlgateway.client.messages import DataMessage, Subscribed
from hlgateway.client.tokens import TokenSource

log = logging.getLogger("hlgateway.notifier.feed")

FILLS = "user_fills"
ORDERS = "user_orders"
ACCOUNT = "account_updates"
PRICES = "prices"
LOSSLESS = (FILLS, ORDERS)


@dataclass(frozen=True)
class Fills:
    wallet: str
    fills: list[dict[str, Any]]
    position: Position | None


@dataclass(frozen=True)
class OrderEvent:
    wallet: str
    update: dict[str, Any]
    position: Position | None


@dataclass(frozen=True)
class Account:
    wallet: str
    state: dict[str, Any]


@dataclass(frozen=True)
class Prices:
    prices: dict[str, Any]


@dataclass(frozen=True)
class Gap:
    """`channel` of `wallet` (re)started with no replay: what it missed must be reloaded."""

    wallet: str
    channel: str


@dataclass(frozen=True)
class Refused:
    wallet: str | None
    channel: str
    code: str
    message: str


FeedEvent = Fills | OrderEvent | Account | Prices | Gap | Refused


class GatewayFeed:
    def __init__(
        self,
        url: str,
        token: TokenSource,
        service_user: str,
        wallets_per_connection: int = 30,
        **client_options: Any,
    ) -> None:
        self.service_user = service_user
        self.url = url
        self.token = token
        self.wallets_per_connection = wallets_per_connection
        # Read through events, never through the handles' iterators: keep their
        # buffers minimal.
        self._client_options = {"buffer": 1, **client_options}
        self.queue: asyncio.Queue[FeedEvent] = asyncio.Queue()
        self.clients: list[GatewayClient] = []
        self._shard: dict[str, GatewayClient] = {}  # wallet -> its connection
        self._subs: dict[tuple[str, str], Subscription[Any]] = {}
        self._prices: Subscription[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._new_client()

    def _new_client(self) -> GatewayClient:
        client = GatewayClient(self.url, self.token, **self._client_options)
        client.on("data", self._on_data)
        client.on("subscribed", self._on_subscribed)
        client.on("resync", self._on_resync)
        self.clients.append(client)
        return client

    def _client_for(self, wallet: str) -> GatewayClient:
        client = self._shard.get(wallet)
        if client is not None:
            return client
        load = {id(c): 0 for c in self.clients}
        for c in self._shard.values():
            load[id(c)] += 1
        client = next((c for c in self.clients if load[id(c)] < self.wallets_per_connection), None)
        if client is None:
            client = self._new_client()
            client.start()
        self._shard[wallet] = client
        return client

    def start(self) -> None:
        """Connect in the background: the bot answers commands while the gateway is
        away, and subscriptions go out when the link comes up."""
        for client in self.clients:
            client.start()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))

    # -- what to read -------------------------------------------------------------
    def _params(self, wallet: str) -> dict[str, Any]:
        return {"userId": self.service_user, "wallet": wallet}

    def watch(self, wallet: str, since: dict[str, Position | None] | None = None) -> None:
        """Read `wallet`'s streams; `since` gives a stored position per lossless channel."""
        for channel in (*LOSSLESS, ACCOUNT):
            if (channel, wallet) in self._subs:
                continue
            position = (since or {}).get(channel) if channel in LOSSLESS else None
            sub = self._client_for(wallet).subscribe(channel, self._params(wallet), since=position)
            self._subs[(channel, wallet)] = sub
            self._watch_refusal(sub, wallet)

    async def unwatch(self, wallet: str) -> None:
        for channel in (*LOSSLESS, ACCOUNT):
            sub = self._subs.pop((channel, wallet), None)
            if sub is not None:
                await sub.unsubscribe()
        self._shard.pop(wallet, None)

    def watching(self) -> set[str]:
        return {wallet for _, wallet in self._subs}

    async def want_prices(self, on: bool) -> None:
        if on and self._prices is None:
            # Throttled: alerts need seconds, not every tick.
            self._prices = self.clients[0].subscribe(PRICES, {"throttle": 1000})
            self._watch_refusal(self._prices, None)
        elif not on and self._prices is not None:
            sub, self._prices = self._prices, None
            await sub.unsubscribe()

    def _watch_refusal(self, sub: Subscription[Any], wallet: str | None) -> None:
        async def wait() -> None:
            try:
                await sub
            except SubscriptionRefused as exc:
                self.queue.put_nowait(Refused(wallet, sub.channel, exc.code, exc.message))
                self._subs = {k: v for k, v in self._subs.items() if v is not sub}
            except Exception:  # ClientClosed: nothing to report
                pass

        task = asyncio.get_running_loop().create_task(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what arrives ---------------------------------------------------------------
    def _on_subscribed(self, msg: Subscribed) -> None:
        # Asked without `since` (no stored position): live from the head, and what
        # came between /watch and now must be reloaded. `recovered: false` comes as
        # a `resync`; `recovered: true` replays everything: no gap.
        wallet = msg.params.get("wallet")
        if msg.channel in LOSSLESS and isinstance(wallet, str) and msg.recovered is None:
            self.queue.put_nowait(Gap(wallet, msg.channel))

    def _on_resync(self, event: Resync) -> None:
        """The stream could not be resumed (`recovered: false`, a new epoch)."""
        wallet = event.params.get("wallet")
        if event.channel in LOSSLESS and isinstance(wallet, str):
            self.queue.put_nowait(Gap(wallet, event.channel))

    def _on_data(self, msg: DataMessage) -> None:
        wallet = msg.params.get("wallet")
        data = msg.data
        if msg.channel == PRICES and isinstance(data, dict):
            self.queue.put_nowait(Prices(data))
        elif not isinstance(wallet, str) or not isinstance(data, dict):
            return
        elif msg.channel == FILLS:
            self.queue.put_nowait(Fills(wallet, list(data.get("fills") or []), msg.position))
        elif msg.channel == ORDERS:
            self.queue.put_nowait(OrderEvent(wallet, data, msg.position))
        elif msg.channel == ACCOUNT:
            self.queue.put_nowait(Account(wallet, data))

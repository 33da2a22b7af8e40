"""The gateway side of the notifier, in one place: what it subscribes and what it hears.

The notifier reads every watched wallet's `user_fills` and `user_orders`
(lossless streams, with positions) and `account_updates`, and `user_ledger` of
the wallets that a chat with `/ledger on` watches (`want_ledger`), plus `prices`, as a
service (an admin token) naming each wallet: `{"userId": <service user>,
"wallet": W}`. What arrives goes into a bounded, conflating `Inbox`, in the
order the gateway sent it, and `next()` hands it to the consumer. The gateway
caps subscriptions per connection (100 by default), so wallets are spread over
as many connections as needed, `wallets_per_connection` each; a wallet's
streams share one.

Backpressure without loss: when the inbox refuses a lossless event (the
consumer is far behind, e.g. its database is down), the feed stops taking that
stream in at the last position it took, and once the inbox has room again asks
the gateway to replay it from there (`GatewayClient.rewind`: a subscribe with
`since` on the same subscription); the gateway replays what came meanwhile, or
answers that it cannot, which is a `Gap`. It does not unsubscribe meanwhile: a
topic nobody reads is not fed, and its gap could not be replayed.

A lossless stream that starts without a replay (the first subscribe of a wallet,
or `recovered: false` after a gateway restart) is announced as a `Gap` before
its data: the consumer then reloads what the gap may hold before it handles
anything later. A stream resumed with `since` and `recovered: true` makes no gap.

The exchange's info API, needed for those reloads, is learned from the
gateway's `welcome` (`infoUrl`) unless the notifier was given one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from hlgateway.client import GatewayClient, Position, Resync, Subscription, SubscriptionRefused
from hlgateway.client.messages import DataMessage, Subscribed, Welcome
from hlgateway.client.tokens import TokenSource
from hlgateway.notifier.events import (
    ACCOUNT,
    FILLS,
    LEDGER,
    LOSSLESS,
    ORDERS,
    PRICES,
    Account,
    FeedEvent,
    Fills,
    Gap,
    LedgerEvents,
    OrderEvent,
    Prices,
    Refused,
)
from hlgateway.notifier.inbox import Inbox

log = logging.getLogger("hlgateway.notifier.feed")

StreamKey = tuple[str, str]  # (channel, wallet)
# Every watched wallet's streams; `user_ledger` only on demand (want_ledger).
WATCHED = (FILLS, ORDERS, ACCOUNT)


@dataclass(eq=False)
class _Stream:
    client: GatewayClient | None = None
    sub: Subscription[Any] | None = None
    # The last message of this stream taken into the inbox (or where it started).
    position: Position | None = None
    # While paused (its data is dropped): waiting for room, then asking for a replay.
    paused: asyncio.Task[None] | None = None


class GatewayFeed:
    def __init__(
        self,
        url: str,
        token: TokenSource,
        service_user: str,
        wallets_per_connection: int = 25,
        capacity: int = 1000,
        **client_options: Any,
    ) -> None:
        self.service_user = service_user
        self.url = url
        self.token = token
        self.wallets_per_connection = wallets_per_connection
        self.inbox = Inbox(capacity)
        self.info_url: str | None = None  # the exchange's info API, from the welcome
        # Read through events, never through the handles' iterators: keep their
        # buffers minimal.
        self._client_options = {"buffer": 1, **client_options}
        self.clients: list[GatewayClient] = []
        self._shard: dict[str, GatewayClient] = {}  # wallet -> its connection
        self._streams: dict[StreamKey, _Stream] = {}
        self._prices: Subscription[Any] | None = None
        self._ready = asyncio.Event()  # the inbox is not empty
        self._room = asyncio.Event()  # paused streams may resume
        self._tasks: set[asyncio.Task[Any]] = set()
        self._new_client()

    def _new_client(self) -> GatewayClient:
        client = GatewayClient(self.url, self.token, **self._client_options)
        client.on("welcome", self._on_welcome)
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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients))

    # -- what the consumer reads ------------------------------------------------------
    async def next(self) -> FeedEvent:
        """The next event, waiting for one."""
        while (event := self.inbox.take()) is None:
            self._ready.clear()
            await self._ready.wait()
        if self.inbox.has_room:
            self._room.set()
        return event

    def offer(self, event: FeedEvent) -> bool:
        """Into the inbox (the feed's own events, or a test's)."""
        taken = self.inbox.offer(event)
        if taken:
            self._ready.set()
        return taken

    # -- what to read -------------------------------------------------------------
    def _params(self, wallet: str) -> dict[str, Any]:
        return {"userId": self.service_user, "wallet": wallet}

    def watch(self, wallet: str, since: dict[str, Position | None] | None = None) -> None:
        """Read `wallet`'s streams; `since` gives a stored position per lossless channel."""
        for channel in WATCHED:
            key = (channel, wallet)
            if key not in self._streams:
                stream = _Stream(position=(since or {}).get(channel))
                self._streams[key] = stream
                self._subscribe(key, stream)

    async def want_ledger(self, wallet: str, on: bool, since: Position | None = None) -> None:
        """Read (or stop reading) `wallet`'s `user_ledger`; `since`: its stored position.
        Only for a watched wallet: unwatching ends it too."""
        key = (LEDGER, wallet)
        if on and key not in self._streams and (FILLS, wallet) in self._streams:
            stream = _Stream(position=since)
            self._streams[key] = stream
            self._subscribe(key, stream)
        elif not on and key in self._streams:
            stream = self._streams.pop(key)
            if stream.paused is not None:
                stream.paused.cancel()
            if stream.sub is not None:
                await stream.sub.unsubscribe()

    def _subscribe(self, key: StreamKey, stream: _Stream) -> None:
        channel, wallet = key
        start = stream.position if channel in LOSSLESS else None
        stream.client = self._client_for(wallet)
        sub = stream.client.subscribe(channel, self._params(wallet), since=start)
        stream.sub = sub
        self._background(self._refusal(sub, key))

    async def unwatch(self, wallet: str) -> None:
        for channel in (*WATCHED, LEDGER):
            stream = self._streams.pop((channel, wallet), None)
            if stream is None:
                continue
            if stream.paused is not None:
                stream.paused.cancel()
            if stream.sub is not None:
                await stream.sub.unsubscribe()
        self._shard.pop(wallet, None)

    def watching(self) -> set[str]:
        return {wallet for _, wallet in self._streams}

    def reading(self, channel: str, wallet: str) -> bool:
        """Is `channel` of `wallet` subscribed (user_ledger: only on demand)?"""
        return (channel, wallet) in self._streams

    def paused(self) -> set[StreamKey]:
        return {key for key, s in self._streams.items() if s.paused is not None}

    async def want_prices(self, on: bool) -> None:
        if on and self._prices is None:
            # Throttled: alerts need seconds, not every tick.
            self._prices = self.clients[0].subscribe(PRICES, {"throttle": 1000})
            self._background(self._refusal(self._prices, None))
        elif not on and self._prices is not None:
            sub, self._prices = self._prices, None
            await sub.unsubscribe()

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refusal(self, sub: Subscription[Any], key: StreamKey | None) -> None:
        try:
            await sub
        except SubscriptionRefused as exc:
            wallet = None if key is None else key[1]
            self.offer(Refused(wallet, sub.channel, exc.code, exc.message))
            if key is not None and (stream := self._streams.get(key)) and stream.sub is sub:
                del self._streams[key]
        except Exception:  # ClientClosed, or unsubscribed: nothing to report
            pass

    # -- backpressure ------------------------------------------------------------------
    def _pause(self, key: StreamKey, stream: _Stream) -> None:
        log.warning(
            "the notifier is behind: %s of %s paused after %s; it resumes with since",
            *key,
            stream.position,
        )
        self._room.clear()
        stream.paused = asyncio.get_running_loop().create_task(self._resume(key, stream))

    async def _resume(self, key: StreamKey, stream: _Stream) -> None:
        """Once the inbox has room: the gateway replays the stream after the last message
        taken in. The subscription stays meanwhile (its data is dropped): the gateway keeps
        reading the wallet from the exchange, so there is something to replay."""
        await self._room.wait()
        if self._streams.get(key) is not stream:
            return
        stream.paused = None
        log.info("%s of %s resumes after %s", *key, stream.position)
        if stream.client is not None and stream.sub is not None and stream.position is not None:
            stream.client.rewind(stream.sub, stream.position)
        elif stream.sub is not None:  # no position to replay from (a v1 gateway)
            sub, stream.sub = stream.sub, None
            await sub.unsubscribe()
            self._subscribe(key, stream)  # from the head: a Gap, and a reload

    # -- what arrives ---------------------------------------------------------------
    def _on_welcome(self, welcome: Welcome) -> None:
        if welcome.infoUrl:
            self.info_url = welcome.infoUrl

    def _live(self, channel: str, wallet: object) -> _Stream | None:
        """The stream a message is about, if it is read now (not unwatched, not paused)."""
        if not isinstance(wallet, str):
            return None
        stream = self._streams.get((channel, wallet))
        return stream if stream is not None and stream.paused is None else None

    def _on_subscribed(self, msg: Subscribed) -> None:
        # Asked without `since` (no stored position): live from the head, and what
        # came between /watch and now must be reloaded. `recovered: false` comes as
        # a `resync`; `recovered: true` replays everything: no gap.
        wallet = msg.params.get("wallet")
        stream = self._live(msg.channel, wallet)
        if msg.channel not in LOSSLESS or stream is None:
            return
        if stream.position is None and msg.offset is not None and msg.epoch is not None:
            stream.position = Position(msg.offset, msg.epoch)  # where its data starts
        if msg.recovered is None:
            self.offer(Gap(str(wallet), msg.channel))

    def _on_resync(self, event: Resync) -> None:
        """The stream could not be resumed (`recovered: false`, a new epoch)."""
        wallet = event.params.get("wallet")
        if event.channel in LOSSLESS and self._live(event.channel, wallet):
            self.offer(Gap(str(wallet), event.channel))

    def _on_data(self, msg: DataMessage) -> None:
        data = msg.data
        if msg.channel == PRICES:
            if isinstance(data, dict):
                self.offer(Prices(data))
            return
        wallet = msg.params.get("wallet")
        stream = self._live(msg.channel, wallet)
        if stream is None or not isinstance(data, dict):
            return  # unwatched; or paused: replayed when it resumes
        assert isinstance(wallet, str)
        if msg.channel == ACCOUNT:
            self.offer(Account(wallet, data))
            return
        position = msg.position
        event: FeedEvent
        if msg.channel == FILLS:
            event = Fills(wallet, list(data.get("fills") or []), position)
        elif msg.channel == ORDERS:
            event = OrderEvent(wallet, data, position)
        elif msg.channel == LEDGER:
            event = LedgerEvents(wallet, list(data.get("events") or []), position)
        else:
            return
        if self.offer(event):
            stream.position = position or stream.position
        else:
            self._pause((msg.channel, wallet), stream)

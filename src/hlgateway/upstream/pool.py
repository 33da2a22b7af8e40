"""The upstream as a whole: a small pool of links, the REST API, and market data
that the gateway needs before anyone subscribes (the market list, 24 h context).

The market list is every perp of the main dex, every spot pair and every perp of
each builder-deployed dex, refreshed while running: the main dex's perps and the
spot pairs (with their 24 h contexts) every `context_refresh` seconds, the list
of builder dexes and their perps every `dex_refresh` seconds (one REST call per
dex: slower, to stay well inside the weight budget). A market that disappears
from the list is delisted: refused by name from then on. Nodes (or `--workers`)
on one broker read it once for all: one of them reads, the others take what it
read (`_next_listing`), instead of each spending the weight on the same answer.

Subscriptions are reference counted by their Hyperliquid identity, so many
topics that need the same upstream stream (every `prices` topic needs
allMids) share one subscription. Each wallet's orderUpdates goes on a link of
its own, because those frames do not say which user they are for.

Hyperliquid's per-IP limits are respected by construction: at most
`max_links` connections, `max_subscriptions` subscriptions, `max_new_links`
connection attempts and `max_messages` sent messages per minute, and a REST
weight budget. (The 10-user limit is kept by WalletFeeds, which serves extra
wallets by REST polling.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from hlgateway.backoff import Backoff
from hlgateway.broker.base import Shared
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import Markets
from hlgateway.ratelimit import SlidingWindow
from hlgateway.reconnect import GiveUp, Reconnect, Retry, Wait, retrying, wait_or_wake
from hlgateway.upstream import wire
from hlgateway.upstream.clock import ExchangeClock
from hlgateway.upstream.limits import MessageRate, WeightBudget, wait_turn
from hlgateway.upstream.link import Link, LinkState, subscription_key
from hlgateway.upstream.networks import Endpoint
from hlgateway.upstream.rest import InfoClient, RestError, info_weight

log = logging.getLogger(__name__)

EventSink = Callable[[Link, wire.Event], None]
LinkStateSink = Callable[[Link, LinkState], None]
StatusSink = Callable[[str], None]
Gate = Callable[[], Awaitable[None]]

_LISTING = msgspec.msgpack.Decoder(wire.Listing)
READ_RETRY_MAX = 10.0  # seconds: the longest wait between tries of a one-off REST read


@dataclass(frozen=True)
class UpstreamLimits:
    """Hyperliquid's per-IP limits (defaults), all configurable."""

    max_links: int = 10
    max_subscriptions: int = 1000
    max_new_links_per_minute: int = 30
    max_messages_per_minute: int = 2000
    max_ws_wallets: int = 10
    rest_weight_per_minute: int = 1200
    # Weight a minute set aside for the market list, added to this node's budget while
    # it reads the list for every node of its broker (`--workers`: set aside from the
    # IP's budget before the split, server/workers.py).
    market_list_weight: int = 0


# Builder dexes assumed when nothing has been read yet (`--workers` sizing the
# market list's set-aside): mainnet lists about ten.
MAINNET_DEXES = 10


def listing_weight_per_minute(context_refresh: float, dex_refresh: float, dexes: int) -> float:
    """REST weight the market list and contexts cost a minute: the main and spot lists
    every `context_refresh`, the dex list and each builder dex's every `dex_refresh`."""
    listing = info_weight("metaAndAssetCtxs") + info_weight("spotMetaAndAssetCtxs")
    per_dex = info_weight("perpDexs") + info_weight("metaAndAssetCtxs") * dexes
    return listing * 60.0 / context_refresh + per_dex * 60.0 / dex_refresh


@dataclass(frozen=True)
class LinkTiming:
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    stale_after: float = 15.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0  # every upstream retry (links, REST, wallets) stays under it

    @property
    def backoff(self) -> Backoff:
        """Links' reconnects: full jitter, from `backoff_initial` doubling."""
        return Backoff.full_jitter(self.backoff_initial, self.backoff_max)

    @property
    def rest_backoff(self) -> Backoff:
        """Retries of the markets/context refresh: from 2 s doubling."""
        return Backoff.full_jitter(2.0, self.backoff_max)

    @property
    def read_backoff(self) -> Backoff:
        """Retries of one-off REST reads (a wallet's recovery, a candle snapshot):
        from 0.5 s doubling, at most 10 s apart: a client is waiting for them."""
        return Backoff.full_jitter(0.5, min(READ_RETRY_MAX, self.backoff_max))


class Upstream:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        on_event: EventSink,
        on_status: StatusSink | None = None,
        limits: UpstreamLimits = UpstreamLimits(),
        timing: LinkTiming = LinkTiming(),
        context_refresh: float = 10.0,
        dex_refresh: float = 60.0,
        ca_file: str | None = None,
        source_address: str | None = None,
        wait: Wait = wait_or_wake,
        share: Shared | None = None,
    ) -> None:
        self.endpoint = endpoint
        # Every connection (links and REST share one session) leaves from this
        # address: the per-IP limits Hyperliquid counts are this address's.
        self.source_address = source_address
        self.markets = Markets()
        self.contexts: dict[str, wire.AssetContext] = {}  # by canonical symbol
        self.limits = limits
        self._on_event = on_event
        self._on_status = on_status
        self.timing = timing
        # Every REST retry's wait and the refresh interval: a fake clock in tests.
        self.wait = wait
        # The market list, read here or taken from the node that reads it for all.
        self._share = share or Shared()
        self.reads_listing = True
        self._context_refresh = context_refresh
        self._dex_refresh = dex_refresh
        self._dex_listings: dict[str, wire.Listing] = {}
        self._dexes_read_at = float("-inf")
        # An extra CA (a private upstream, or the simulator over TLS in tests).
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self._links: list[Link] = []
        self.post_link: Link | None = None  # order entry's own link (upstream/exchange.py)
        self._refs: dict[str, int] = {}
        self._placement: dict[str, Link] = {}
        self._session: aiohttp.ClientSession | None = None
        self.rest: InfoClient | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._status = "idle"
        self._new_links = SlidingWindow(limits.max_new_links_per_minute, 60.0)
        self._messages = MessageRate(limits.max_messages_per_minute)
        # A call counts a second longer here than at the exchange: it is counted when
        # sent and there when received, and a full window must never be full there first.
        # Its own share until the broker's share says it reads the list for all.
        self.budget = WeightBudget(limits.rest_weight_per_minute, window=61.0)
        self.markets_loaded = asyncio.Event()
        # How far the exchange's clock may lag ours, from what it pushes (clock.py).
        self.exchange_clock = ExchangeClock()
        self.degraded_since: float | None = None

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        local = (self.source_address, 0) if self.source_address else None
        connector = aiohttp.TCPConnector(ssl=self._ssl, local_addr=local)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=15), connector=connector
        )
        self.rest = InfoClient(self.endpoint.info_url, self._session, self.budget)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        links = [*self._links, *([self.post_link] if self.post_link is not None else [])]
        await asyncio.gather(*(link.stop() for link in links))
        if self._session is not None:
            await self._session.close()

    # -- subscriptions ----------------------------------------------------
    def acquire(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        count = self._refs.get(key, 0)
        if count == 0:
            if len(self._refs) >= self.limits.max_subscriptions:
                raise ProtocolError(
                    ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream subscription limit reached"
                )
            link = self._place(subscription)
            self._placement[key] = link
            link.add(subscription)
        self._refs[key] = count + 1

    def release(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        count = self._refs.get(key, 0)
        if count <= 1:
            self._refs.pop(key, None)
            link = self._placement.pop(key, None)
            if link is not None:
                link.remove(subscription)
        else:
            self._refs[key] = count - 1

    def _place(self, subscription: dict[str, Any]) -> Link:
        needs_own_orders = subscription.get("type") == "orderUpdates"
        per_link = max(1, self.limits.max_subscriptions // self.limits.max_links)
        candidates = [
            link
            for link in self._links
            if len(link.wanted) < per_link
            and not (needs_own_orders and link.order_updates_wallet is not None)
        ]
        if candidates:
            return min(candidates, key=lambda link: len(link.wanted))
        if self._link_count() >= self.limits.max_links or self._session is None:
            raise ProtocolError(
                ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream capacity reached; try again later"
            )
        messages = self._messages
        link = self._new_link(
            len(self._links), self._on_event, self._link_state, messages.try_take, messages.take
        )
        self._links.append(link)
        link.start()
        return link

    def _new_link(
        self,
        index: int,
        on_event: EventSink,
        on_state: LinkStateSink,
        send_now: Callable[[], bool],
        send_gate: Gate,
    ) -> Link:
        t = self.timing
        return Link(
            index,
            self.endpoint.ws_url,
            on_event,
            on_state,
            ping_interval=t.ping_interval,
            pong_timeout=t.pong_timeout,
            stale_after=t.stale_after,
            backoff=t.backoff,
            connect_gate=self._connect_gate,
            send_now=send_now,
            send_gate=send_gate,
            ssl=self._ssl,
            local_addr=(self.source_address, 0) if self.source_address else None,
        )

    def _link_count(self) -> int:
        return len(self._links) + (self.post_link is not None)

    def open_post_link(self, on_event: EventSink, on_state: LinkStateSink) -> Link | None:
        """Order entry's own link, opened on first use; None when no link is left.

        It carries posts and pings only: a post never waits in a send queue behind
        market data's subscribes, nor its answer behind market data's frames. It
        counts toward Hyperliquid's connection limit like any link.
        """
        if self.post_link is not None:
            return self.post_link
        if self._link_count() >= self.limits.max_links or self._session is None:
            return None

        def count_now(self: Upstream = self) -> bool:
            self._messages.count_now()  # its pings (posts took their message when admitted)
            return True  # never waits

        async def count() -> None:
            count_now()

        self.post_link = self._new_link(-1, on_event, on_state, count_now, count)
        self.post_link.start()
        return self.post_link

    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session of REST calls (started with the upstream)."""
        if self._session is None:
            raise RuntimeError("upstream not started")
        return self._session

    @property
    def messages(self) -> MessageRate:
        """Messages sent per minute across every link (Hyperliquid's per-IP count)."""
        return self._messages

    async def _connect_gate(self) -> None:
        # Hyperliquid allows 30 new connections a minute per IP: wait our turn.
        await wait_turn(self._new_links)

    @property
    def context_weight_per_minute(self) -> float:
        """REST weight the market list and contexts take a minute: what polling
        cannot have (upstream/polling.py). Grows with the builder dexes listed;
        none where another node reads the list for this one."""
        if not self.reads_listing:
            return 0.0
        return listing_weight_per_minute(
            self._context_refresh, self._dex_refresh, len(self._dex_listings)
        )

    @property
    def listing_allowance(self) -> float:
        """Weight a minute this node's budget has beyond its own share, for reading
        the market list for the others: the set-aside while it reads, else none."""
        return float(self.limits.market_list_weight) if self.reads_listing else 0.0

    @property
    def reserved_weight_per_minute(self) -> float:
        """What polling cannot have of the node's own share: the market list's cost
        less what was set aside for it (more than it costs: polling gets the rest)."""
        return self.context_weight_per_minute - self.listing_allowance

    @property
    def subscription_count(self) -> int:
        return len(self._refs)

    @property
    def links(self) -> list[Link]:
        return list(self._links)

    # -- health -----------------------------------------------------------
    def _link_state(self, link: Link, state: LinkState) -> None:
        log.info("upstream link %d %s", link.index, state.value)
        self._status_changed()

    def _status_changed(self) -> None:
        status = self.status
        if status != self._status:
            self._status = status
            self.degraded_since = time.time() if status == "degraded" else None
            if self._on_status is not None:
                self._on_status(status)

    @property
    def status(self) -> str:
        """connected, degraded (a link that should be up is down) or idle (no links)."""
        if not self.markets.loaded:
            return "degraded"
        if not self._links:
            return "idle"
        if all(link.state is LinkState.CONNECTED for link in self._links):
            return "connected"
        return "degraded"

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "status": self.status,
            "network": self.endpoint.name,
            "host": self.endpoint.host,
            "sourceAddress": self.source_address,
            "marketsLoaded": self.markets.loaded,
            # False: another node (or worker) of the broker reads it for this one.
            "marketListReadHere": self.reads_listing,
            "degradedSince": self.degraded_since,
            # A user stream starts `marginMs` before its subscribe, on the exchange's
            # clock: 2 s, or how far behind ours its pushed frames say it may be.
            "clock": {
                "marginMs": self.exchange_clock.margin_ms(),
                "exchangeBehindAtMostMs": self.exchange_clock.behind_at_most_ms(),
            },
            "subscriptions": len(self._refs),
            "limits": {
                "links": f"{len(self._links)}/{self.limits.max_links}",
                "subscriptions": f"{len(self._refs)}/{self.limits.max_subscriptions}",
                "messagesLastMinute": self._messages.used(),
                "newLinksLastMinute": self._new_links.count(now),
                "restWeightAvailable": round(self.budget.available()),
                "restWeightLastMinute": round(self.budget.used()),
                "restWeightPerMinute": round(self.budget.capacity),
            },
            "links": [
                {
                    "index": link.index,
                    "state": link.state.value,
                    "connectedSince": link.connected_since,
                    "reconnects": link.reconnects,
                    "pongTimeouts": link.pong_timeouts,
                    "staleResubscribes": link.stale_resubscribes,
                    "staleRecycles": link.stale_recycles,
                    "garbageFrames": link.garbage_frames,
                    "subscriptions": len(link.wanted),
                    "acked": len(link.acked),
                    "lastMessageAgeSeconds": None
                    if link.last_message_at is None
                    else round(now - link.last_message_at, 3),
                    "streamAgeSeconds": link.stream_ages(),
                }
                for link in self._links
            ],
            "postLink": None
            if self.post_link is None
            else {
                "state": self.post_link.state.value,
                "reconnects": self.post_link.reconnects,
                "pongTimeouts": self.post_link.pong_timeouts,
            },
        }

    # -- REST -------------------------------------------------------------
    async def _refresh_loop(self) -> None:
        # The market list gates subscriptions; 24 h context feeds `prices`.
        assert self.rest is not None
        rest = self.rest
        policy = Reconnect(self.timing.rest_backoff)
        wake = asyncio.Event()  # nothing cuts the refresh interval short
        while True:
            self._apply_listing(await self._next_listing(rest, policy))
            await self.wait(self._context_refresh, wake)

    async def _next_listing(self, rest: InfoClient, policy: Reconnect) -> wire.Listing:
        """The market list: read from the exchange by the one node (or worker) the
        broker's share names, taken from it by the others: the same answer read N
        times behind one IP cost N times its weight (broker/base.py `Shared`). A
        node that finds nothing shared (the reader just started, or its reads
        fail) reads for itself. Reads are retried while they fail (reconnect.py,
        never giving up); the last good list stays meanwhile."""
        self.reads_listing = await self._share.lead()
        # The reader's budget holds the set-aside (if any) while it reads for the others.
        self.budget.resize(self.limits.rest_weight_per_minute + self.listing_allowance)
        if not self.reads_listing:
            shared = await self._share.get()
            if shared is not None:
                try:
                    return _LISTING.decode(shared)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("upstream: the shared market list is unreadable (%s)", exc)
        listing = await retrying(
            lambda: self._read_listing(rest),
            policy,
            on_retry=self._refresh_failed,
            retry_on=(RestError,),
            wait=self.wait,
        )
        assert not isinstance(listing, GiveUp)  # the backoff has no max_attempts
        if self.reads_listing:
            await self._share.put(msgspec.msgpack.encode(listing))
        return listing

    def _refresh_failed(self, retry: Retry) -> None:
        log.warning("upstream REST failed (%s); retry in %.1fs", retry.reason, retry.after)

    def _apply_listing(self, listing: wire.Listing) -> None:
        first = not self.markets.loaded
        known = set(self.markets.names)
        self.markets.load(listing.markets, listing.delisted)
        self.contexts = listing.contexts
        self.markets_loaded.set()
        if first:
            log.info("upstream %s: %d markets", self.endpoint.name, len(listing.markets))
            self._status_changed()
        else:
            self._log_changes(known)

    async def _read_listing(self, rest: InfoClient) -> wire.Listing:
        """Every market and its context, contexts keyed by canonical symbol."""
        main = await rest.meta_and_contexts()
        spot = await rest.spot_meta_and_contexts()
        if time.monotonic() - self._dexes_read_at >= self._dex_refresh:
            dexes = await rest.perp_dexs()
            listings = {
                dex: await rest.meta_and_contexts(dex, wire.DEX_ASSETS + 10_000 * k)
                for k, dex in enumerate(dexes)
            }
            self._dex_listings = listings
            self._dexes_read_at = time.monotonic()
        parts = [main, spot, *self._dex_listings.values()]
        markets = [m for part in parts for m in part.markets]
        contexts: dict[str, wire.AssetContext] = {}
        for part in parts:
            by_coin = {m.coin: m.symbol for m in part.markets}
            for coin, ctx in part.contexts.items():
                symbol = by_coin.get(coin)
                if symbol is not None:
                    contexts[symbol] = ctx
        delisted = [name for part in parts for name in part.delisted]
        return wire.Listing(markets, contexts, delisted)

    def _log_changes(self, known: set[str]) -> None:
        listed = set(self.markets.names)
        for symbol in sorted(listed - known):
            log.info("upstream %s: new market %s", self.endpoint.name, symbol)
        for symbol in sorted(known - listed):
            log.info("upstream %s: market %s delisted", self.endpoint.name, symbol)

"""Feeds: which upstream streams each topic needs, and what each topic gets
when an upstream event arrives.

This is the hub's listener (first subscriber starts a feed, last stops it) and
the upstream's event sink. Work here is per topic, never per client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from hlgateway.backoff import Backoff
from hlgateway.protocol.channels import (
    ACCOUNT_UPDATES,
    ORDERBOOK,
    PRICES,
    TRADES,
    USER_FILLS,
    USER_ORDERS,
    Topic,
)
from hlgateway.protocol.encoding import now_ms
from hlgateway.protocol.payloads import (
    OrderBook,
    OrderUpdate,
    PriceQuote,
)
from hlgateway.publisher import Publisher
from hlgateway.upstream import wire
from hlgateway.upstream.ledgers import TradeLedger
from hlgateway.upstream.link import Link
from hlgateway.upstream.pool import Upstream
from hlgateway.upstream.wallets import RECOVERY_RETRY, WalletFeeds

log = logging.getLogger(__name__)

# How long the shared ledgers remember a fill or order transition, and a trade
# (seconds): longer than any snapshot Hyperliquid re-sends on a resubscribe.
LEDGER_KEEP = 24 * 3600.0
TRADE_LEDGER_KEEP = 3600.0


def upstream_subscriptions(topic: Topic) -> list[dict[str, Any]]:
    """The Hyperliquid market-data subscriptions a topic reads from.

    User channels are WalletFeeds' business (per wallet, WS or REST polling);
    system and rooms are fed by the gateway itself.
    """
    channel = topic.channel
    if channel == PRICES:
        return [{"type": "allMids"}]
    if channel == ORDERBOOK:
        return [{"type": "l2Book", "coin": topic.symbol}]
    if channel == TRADES:
        return [{"type": "trades", "coin": topic.symbol}]
    return []


class Feeds:
    def __init__(
        self, upstream: Upstream, publisher: Publisher, poll_interval: float = 5.0
    ) -> None:
        self._upstream = upstream
        self._publisher = publisher
        self._prices: dict[Topic, None] = {}
        self._books: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        self._trades: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        # (channel, wallet) -> topics
        self._user: dict[tuple[str, str], dict[Topic, None]] = {}
        self._trade_ledgers: dict[str, TradeLedger] = {}
        # The latest snapshot sources: a topic's first subscriber gets its value
        # from them at once instead of waiting for the next upstream message.
        self._last_mids: wire.Mids | None = None
        self._last_books: dict[str, wire.Book] = {}
        self._last_accounts: dict[str, wire.Account] = {}
        self._last_status = "idle"
        self.wallets = WalletFeeds(
            upstream,
            self,
            lambda: upstream.rest,
            max_ws_wallets=upstream.limits.max_ws_wallets,
            poll_interval=poll_interval,
            retry=Backoff.full_jitter(
                0.5, min(RECOVERY_RETRY.max_delay, upstream.timing.backoff_max)
            ),
        )

    # -- the coordinator's feed control (broker/coordination.py) -----------
    def on_first(self, topic: Topic, since: Mapping[str, int] | None = None) -> None:
        """Start feeding `topic`; each wallet's user streams deliver from
        `since[wallet]` (exchange time, ms; default: now), never further back
        than the exactly-once ledgers remember."""
        acquired: list[dict[str, Any]] = []
        attached: list[str] = []
        floor = now_ms() - int(LEDGER_KEEP * 1000) + 60_000
        try:
            for subscription in upstream_subscriptions(topic):
                self._upstream.acquire(subscription)
                acquired.append(subscription)
            for wallet in topic.wallets:
                key = (topic.channel, wallet)
                if key not in self._user:
                    start = since.get(wallet) if since is not None else None
                    start = self.wallets.attach(
                        topic.channel, wallet, None if start is None else max(start, floor)
                    )
                    self._user[key] = {}
                    attached.append(wallet)
                    if start is not None:
                        # Nothing before its start is news: delivered up to there.
                        self._publisher.delivered(topic.channel, wallet, start)
                self._user[key][topic] = None
        except Exception:
            for subscription in acquired:
                self._upstream.release(subscription)
            for wallet in attached:
                self._user.pop((topic.channel, wallet), None)
                self.wallets.detach(topic.channel, wallet)
            raise
        index = self._index(topic)
        if index is not None:
            index[topic] = None
        if topic.snapshot:
            # After the subscriber's `subscribed` reply, which is sent in this same step.
            asyncio.get_running_loop().call_soon(self._prime, topic)

    def _prime(self, topic: Topic) -> None:
        """A new snapshot topic's first value, from what the upstream last said."""
        if topic.channel == PRICES and topic in self._prices and self._last_mids is not None:
            self._publish_prices(topic, self._last_mids, {})
        elif topic.channel == ORDERBOOK and topic in self._books.get(topic.symbol, ()):
            book = self._last_books.get(topic.symbol)
            if book is not None:
                self._publish_book(topic, book)
        elif topic.channel == ACCOUNT_UPDATES:
            for wallet in topic.wallets:
                account = self._last_accounts.get(wallet)
                if account is not None and topic in self._user.get((ACCOUNT_UPDATES, wallet), ()):
                    self._publisher.publish(topic, account)

    def on_last(self, topic: Topic) -> None:
        index = self._index(topic)
        if index is not None:
            index.pop(topic, None)
            self._prune(topic)
        for wallet in topic.wallets:
            key = (topic.channel, wallet)
            topics = self._user.get(key)
            if topics is None:
                continue
            topics.pop(topic, None)
            if not topics:
                del self._user[key]
                self.wallets.detach(topic.channel, wallet)
        for subscription in upstream_subscriptions(topic):
            self._upstream.release(subscription)
        self._publisher.forget(topic)
        if not self._prices:
            self._last_mids = None
        if topic.channel == ORDERBOOK and topic.symbol not in self._books:
            self._last_books.pop(topic.symbol, None)
        for wallet in topic.wallets:
            if (ACCOUNT_UPDATES, wallet) not in self._user:
                self._last_accounts.pop(wallet, None)

    def _index(self, topic: Topic) -> dict[Topic, None] | None:
        if topic.channel == PRICES:
            return self._prices
        if topic.channel == ORDERBOOK:
            return self._books[topic.symbol]
        if topic.channel == TRADES:
            return self._trades[topic.symbol]
        return None

    def _prune(self, topic: Topic) -> None:
        if topic.channel == ORDERBOOK and not self._books[topic.symbol]:
            del self._books[topic.symbol]
        elif topic.channel == TRADES and not self._trades[topic.symbol]:
            del self._trades[topic.symbol]
            self._trade_ledgers.pop(topic.symbol, None)

    # -- upstream events --------------------------------------------------
    def on_event(self, link: Link, event: wire.Event) -> None:
        match event:
            case wire.Mids():
                self._on_mids(event)
            case wire.Book():
                self._on_book(event)
            case wire.Trades():
                self._on_trades(event)
            case wire.Fills():
                self.wallets.on_fills(event)
            case wire.OrderUpdates():
                self.wallets.on_orders(event)
            case wire.Account():
                self.wallets.on_account(event)
            case wire.Ack():
                self.wallets.on_ack(event.subscription, link.gap_from_ms)

    def on_status(self, status: str) -> None:
        """Tell `system` subscribers when the upstream goes down and comes back."""
        if status == "degraded" and self._last_status == "connected":
            self._publisher.notice("upstream_degraded", "upstream degraded")
        elif status == "connected" and self._last_status == "degraded":
            self._publisher.notice("upstream_restored", "upstream restored")
        if status in ("connected", "degraded"):
            self._last_status = status

    # -- emitter for WalletFeeds ------------------------------------------
    # Ids for the broker's shared exactly-once ledger (every node, across an
    # upstream handover): a fill by (wallet, tid), an order transition by its
    # (oid, status, remaining size), a trade by (time, tid).
    # After each, the wallet's stream is delivered up to the event's time: where
    # an engine that keeps state across a restart starts it again.
    def emit_fills(self, wallet: str, fills: list[wire.Fill]) -> None:
        items = [(f"{f.wallet}:{f.id}", f) for f in fills]
        for topic in tuple(self._user.get((USER_FILLS, wallet), ())):
            self._publisher.publish_items(topic, {}, "fills", items, LEDGER_KEEP)
        self._publisher.delivered(USER_FILLS, wallet, max(f.timestamp for f in fills))

    def emit_order(self, wallet: str, action: str, order: wire.Order) -> None:
        data = OrderUpdate(action, order)
        item_id = f"{order.id}:{order.status}:{order.remaining}"
        for topic in tuple(self._user.get((USER_ORDERS, wallet), ())):
            self._publisher.publish_once(topic, data, item_id, LEDGER_KEEP)
        self._publisher.delivered(USER_ORDERS, wallet, order.timestamp)

    def emit_account(self, account: wire.Account) -> None:
        self._last_accounts[account.wallet] = account
        for topic in tuple(self._user.get((ACCOUNT_UPDATES, account.wallet), ())):
            self._publisher.publish(topic, account)

    # -- market data ------------------------------------------------------
    def _on_mids(self, event: wire.Mids) -> None:
        if not self._prices:
            return
        self._last_mids = event
        entries: dict[str, PriceQuote] = {}
        for topic in tuple(self._prices):
            self._publish_prices(topic, event, entries)

    def _publish_prices(
        self, topic: Topic, event: wire.Mids, entries: dict[str, PriceQuote]
    ) -> None:
        mids = event.mids
        symbols = topic.symbols if topic.symbols is not None else self._upstream.markets.names
        data = {s: self._entry(entries, s, mids[s]) for s in symbols if s in mids}
        if data:
            self._publisher.publish(topic, data)

    def _entry(self, entries: dict[str, PriceQuote], symbol: str, mid: float) -> PriceQuote:
        # `entries`: one mids message's cache, each symbol computed once for every topic.
        cached = entries.get(symbol)
        if cached is None:
            ctx = self._upstream.contexts.get(symbol)
            prev = ctx.prev_day_px if ctx is not None else None
            change = round((mid / prev - 1) * 100, 4) if prev else 0.0
            volume = ctx.day_ntl_vlm if ctx is not None else 0.0
            cached = entries[symbol] = PriceQuote(mid, change, volume, now_ms())
        return cached

    def _on_book(self, event: wire.Book) -> None:
        topics = self._books.get(event.symbol)
        if not topics:
            return
        self._last_books[event.symbol] = event
        for topic in tuple(topics):
            self._publish_book(topic, event)

    def _publish_book(self, topic: Topic, event: wire.Book) -> None:
        depth = topic.depth
        data = OrderBook(event.symbol, event.bids[:depth], event.asks[:depth], event.time)
        self._publisher.publish(topic, data)

    def _on_trades(self, event: wire.Trades) -> None:
        topics = self._trades.get(event.symbol)
        if not topics:
            return
        ledger = self._trade_ledgers.setdefault(event.symbol, TradeLedger())
        fresh = ledger.accept(event.trades)
        if not fresh:
            return
        items = [(f"{t.timestamp}:{t.id}", t) for t in fresh]
        for topic in tuple(topics):
            self._publisher.publish_items(
                topic, {"symbol": event.symbol}, "trades", items, TRADE_LEDGER_KEEP
            )

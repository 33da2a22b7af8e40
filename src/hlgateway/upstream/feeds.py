"""Feeds: which upstream streams each topic needs, and what each topic gets
when an upstream event arrives.

This is the hub's listener (first subscriber starts a feed, last stops it) and
the upstream's event sink. Work here is per topic, never per client.

Topics name markets by canonical symbol (`HYPE/USDC`); Hyperliquid's streams
and events by coin (`@107`): the market list (`Markets`) maps one to the other
here, both ways, so that every message a client gets names the market the way
it asked for it, fills and orders included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from hlgateway.broker.placement import NodeCapacity, Stream
from hlgateway.protocol.channels import (
    ACCOUNT_UPDATES,
    ASSET_CONTEXT,
    BBO,
    CANDLES,
    ORDERBOOK,
    PRICES,
    TRADES,
    USER_FILLS,
    USER_LEDGER,
    USER_ORDERS,
    Topic,
)
from hlgateway.protocol.encoding import now_ms
from hlgateway.protocol.markets import Markets
from hlgateway.protocol.payloads import (
    AssetContext,
    Bbo,
    CandlesData,
    OrderBook,
    OrderUpdate,
    PriceQuote,
)
from hlgateway.publisher import Publisher
from hlgateway.reconnect import GiveUp, Reconnect, retrying
from hlgateway.upstream import wire
from hlgateway.upstream.candles import CandleSeries, snapshot_window
from hlgateway.upstream.ledgers import TradeLedger
from hlgateway.upstream.link import Link, subscription_key
from hlgateway.upstream.polling import PollBudget, poll_weight
from hlgateway.upstream.pool import Upstream
from hlgateway.upstream.rest import RestError
from hlgateway.upstream.wallets import WalletFeeds, subscriptions_for

log = logging.getLogger(__name__)

# How long the shared ledgers remember a fill, order transition or ledger event,
# and a trade (seconds): longer than any snapshot Hyperliquid re-sends on a
# resubscribe.
LEDGER_KEEP = 24 * 3600.0
TRADE_LEDGER_KEEP = 3600.0
# A prices topic over several dexes waits this long (s) for each dex's first allMids
# before it publishes without one: its first message should hold every symbol.
PRICES_WAIT = 3.0

CandleKey = tuple[str, str]  # (coin, interval)


def upstream_subscriptions(topic: Topic, markets: Markets) -> list[dict[str, Any]]:
    """The Hyperliquid market-data subscriptions a topic reads from.

    User channels are WalletFeeds' business (per wallet, WS or REST polling);
    system and rooms are fed by the gateway itself.
    """
    channel = topic.channel
    if channel == PRICES:
        return [_all_mids(dex) for dex in _mids_dexes(topic, markets)]
    if not topic.symbols:
        return []
    coin = markets.coin_of(topic.symbol)
    if channel == ORDERBOOK:
        return [{"type": "l2Book", "coin": coin}]
    if channel == TRADES:
        return [{"type": "trades", "coin": coin}]
    if channel == BBO:
        return [{"type": "bbo", "coin": coin}]
    if channel == ASSET_CONTEXT:
        # A spot pair's context comes on Hyperliquid's `activeSpotAssetCtx` channel.
        return [{"type": "activeAssetCtx", "coin": coin}]
    if channel == CANDLES:
        return [{"type": "candle", "coin": coin, "interval": topic.interval}]
    return []


def _all_mids(dex: str) -> dict[str, Any]:
    return {"type": "allMids", "dex": dex} if dex else {"type": "allMids"}


def _mids_dexes(topic: Topic, markets: Markets) -> list[str]:
    """The perp dexes whose allMids a prices topic reads: the main one holds its
    perps and every spot pair; a builder dex's perps come on its own."""
    if topic.symbols is None:
        return ["", *markets.dexes()]
    dexes: dict[str, None] = {}
    for symbol in topic.symbols:
        market = markets.get(symbol)
        dexes[market.dex if market is not None else ""] = None
    return list(dexes)


class Feeds:
    def __init__(
        self, upstream: Upstream, publisher: Publisher, poll_budget: PollBudget | None = None
    ) -> None:
        self._upstream = upstream
        self._markets = upstream.markets
        self._publisher = publisher
        # topic -> the upstream subscriptions it acquired (released as acquired,
        # whatever the market list says by then)
        self._acquired: dict[Topic, list[dict[str, Any]]] = {}
        # topic -> the coin it was started with (a later market list may not know it)
        self._coins: dict[Topic, str] = {}
        self._prices: dict[Topic, float] = {}  # -> when it started (loop time)
        # by Hyperliquid coin
        self._books: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        self._trades: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        self._bbos: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        self._contexts: defaultdict[str, dict[Topic, None]] = defaultdict(dict)
        self._candles: defaultdict[CandleKey, dict[Topic, None]] = defaultdict(dict)
        # (channel, wallet) -> topics
        self._user: dict[tuple[str, str], dict[Topic, None]] = {}
        self._trade_ledgers: dict[str, TradeLedger] = {}
        self._series: dict[CandleKey, CandleSeries] = {}
        self._candle_reads: dict[CandleKey, asyncio.Task[None]] = {}
        # The latest snapshot sources: a topic's first subscriber gets its value
        # from them at once instead of waiting for the next upstream message.
        self._last_mids: dict[str, wire.Mids] = {}  # by dex
        self._last_books: dict[str, wire.Book] = {}
        self._last_bbos: dict[str, wire.BestBidOffer] = {}
        self._last_contexts: dict[str, wire.ContextUpdate] = {}
        self._last_accounts: dict[str, wire.Account] = {}
        self._last_status = "idle"
        # User events that came before the market list (a restarted gateway reads back
        # its downtime at once): published, in order, once their markets have names.
        self._unnamed: list[Callable[[], None]] = []
        # (topic, wallet) -> what the wallet's feed gave meanwhile, while the topic
        # catches up with that feed (`_catch_up`): published after what is read back.
        self._catching: dict[tuple[Topic, str], list[Callable[[], None]]] = {}
        self._catch_ups: dict[tuple[Topic, str], asyncio.Task[None]] = {}
        self._naming: asyncio.Task[None] | None = None
        self.wallets = WalletFeeds(
            upstream,
            self,
            lambda: upstream.rest,
            max_ws_wallets=upstream.limits.max_ws_wallets,
            poll_budget=poll_budget
            or PollBudget(
                upstream.limits.rest_weight_per_minute,
                reserved=lambda: upstream.reserved_weight_per_minute,
            ),
            # REST retries of a recovery: live updates are held meanwhile.
            retry=upstream.timing.read_backoff,
            margin_ms=upstream.exchange_clock.margin_ms,
        )

    # -- the coordinator's feed control (broker/coordination.py) -----------
    def on_first(
        self,
        topic: Topic,
        since: Mapping[str, int] | None = None,
        *,
        placed: bool = False,
        behind: Mapping[str, int] | None = None,
    ) -> None:
        """Start feeding `topic`; each wallet's user streams deliver from
        `since[wallet]` (exchange time, ms; default: now), never further back
        than the exactly-once ledgers remember. `placed`: the fleet chose this
        node by capacity (WalletFeeds.attach). `behind`: where the topic's own
        stream stopped for wallets whose feed went on for other topics after it
        was let go: a wallet fed now is read back from there for this topic alone
        (`_catch_up`), one fed no more starts its feed there."""
        acquired: list[dict[str, Any]] = []
        attached: list[str] = []
        late: dict[str, int] = {}
        floor = now_ms() - int(LEDGER_KEEP * 1000) + 60_000
        try:
            for subscription in upstream_subscriptions(topic, self._markets):
                self._upstream.acquire(subscription)
                acquired.append(subscription)
            for wallet in topic.wallets:
                key = (topic.channel, wallet)
                stopped = behind.get(wallet) if behind is not None else None
                if key in self._user and stopped is not None:
                    late[wallet] = max(stopped, floor)
                if key not in self._user:
                    start = since.get(wallet) if since is not None else None
                    if stopped is not None:
                        start = stopped if start is None else min(start, stopped)
                    start = self.wallets.attach(
                        topic.channel,
                        wallet,
                        None if start is None else max(start, floor),
                        placed=placed,
                    )
                    self._user[key] = {}
                    attached.append(wallet)
                    if start is not None:
                        # Nothing before its start is news: delivered up to there, and
                        # no further (it may start before an earlier position here).
                        self._publisher.restarted(topic.channel, wallet, start)
                self._user[key][topic] = None
        except Exception:
            for subscription in acquired:
                self._upstream.release(subscription)
            for wallet in attached:
                self._user.pop((topic.channel, wallet), None)
                self.wallets.detach(topic.channel, wallet)
            for wallet in topic.wallets:
                topics = self._user.get((topic.channel, wallet))
                if topics is not None:
                    topics.pop(topic, None)
            raise
        for wallet in behind or ():
            if wallet in late:
                self._catch_up(topic, wallet, late[wallet])
            else:
                # Its feed starts (again) where the topic stopped: nothing to catch up.
                self._publisher.caught_up(topic, wallet)
        self._acquired[topic] = acquired
        if topic.symbols and topic.channel != PRICES:
            self._coins[topic] = self._markets.coin_of(topic.symbol)
        if topic.channel == PRICES:
            self._prices[topic] = asyncio.get_running_loop().time()
        else:
            index = self._index(topic)
            if index is not None:
                index[topic] = None
        if topic.channel == CANDLES:
            self._start_series(self._candle_key(topic))
        elif topic.snapshot:
            # After the subscriber's `subscribed` reply, which is sent in this same step.
            asyncio.get_running_loop().call_soon(self._prime, topic)

    def capacity(self) -> NodeCapacity:
        """What this node's upstream can feed: its address's budgets (placement)."""
        wallets = self.wallets
        budget = wallets.schedule.budget
        return NodeCapacity(
            ws_slots=wallets.max_ws_wallets,
            subscriptions=self._upstream.limits.max_subscriptions,
            poll_rate=budget.rate,
            max_poll_interval=budget.max_interval,
        )

    def stream(self, topic: Topic, key: str) -> Stream:
        """What feeding `topic` costs a node (placement): its upstream subscriptions,
        its wallets, and what polling one of them weighs."""
        if topic.wallets:
            subscriptions = frozenset(
                subscription_key(subscription)
                for wallet in topic.wallets
                for subscription in subscriptions_for(topic.channel, wallet)
            )
            return Stream(
                key, frozenset(topic.wallets), subscriptions, poll_weight({topic.channel})
            )
        keys = frozenset(subscription_key(s) for s in upstream_subscriptions(topic, self._markets))
        return Stream(key, subscriptions=keys)

    def _prime(self, topic: Topic) -> None:
        """A new snapshot topic's first value, from what the upstream last said."""
        channel = topic.channel
        if channel == PRICES:
            if topic in self._prices and self._last_mids:
                self._publish_prices(topic, {})
        elif channel == ACCOUNT_UPDATES:
            for wallet in topic.wallets:
                account = self._last_accounts.get(wallet)
                if account is not None and topic in self._user.get((ACCOUNT_UPDATES, wallet), ()):
                    self._publisher.publish(topic, account)
        elif topic in self._coins:
            coin = self._coins[topic]
            if channel == ORDERBOOK and topic in self._books.get(coin, ()):
                book = self._last_books.get(coin)
                if book is not None:
                    self._publish_book(topic, book)
            elif channel == BBO and topic in self._bbos.get(coin, ()):
                bbo = self._last_bbos.get(coin)
                if bbo is not None:
                    self._publish_bbo(topic, bbo)
            elif channel == ASSET_CONTEXT and topic in self._contexts.get(coin, ()):
                context = self._last_contexts.get(coin)
                if context is not None:
                    self._publisher.publish(topic, _asset_context(topic.symbol, context))

    def on_last(self, topic: Topic) -> None:
        if topic.channel == PRICES:
            self._prices.pop(topic, None)
        else:
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
            # Let go before it caught up: where it stopped stays its position.
            self._catching.pop((topic, wallet), None)
            task = self._catch_ups.pop((topic, wallet), None)
            if task is not None:
                task.cancel()
            if not topics:
                del self._user[key]
                self.wallets.detach(topic.channel, wallet)
        for subscription in self._acquired.pop(topic, ()):
            self._upstream.release(subscription)
        self._coins.pop(topic, None)
        self._publisher.forget(topic)
        if not self._prices:
            self._last_mids.clear()
        for wallet in topic.wallets:
            if (ACCOUNT_UPDATES, wallet) not in self._user:
                self._last_accounts.pop(wallet, None)

    def _coin(self, topic: Topic) -> str:
        coin = self._coins.get(topic)
        return coin if coin is not None else self._markets.coin_of(topic.symbol)

    def _candle_key(self, topic: Topic) -> CandleKey:
        return self._coin(topic), topic.interval

    def _index(self, topic: Topic) -> dict[Topic, None] | None:
        channel = topic.channel
        if channel == CANDLES:
            return self._candles[self._candle_key(topic)]
        by_coin = {
            ORDERBOOK: self._books,
            TRADES: self._trades,
            BBO: self._bbos,
            ASSET_CONTEXT: self._contexts,
        }.get(channel)
        if by_coin is None:
            return None
        return by_coin[self._coin(topic)]

    def _prune(self, topic: Topic) -> None:
        channel = topic.channel
        if channel == PRICES:
            return
        if channel == CANDLES:
            key = self._candle_key(topic)
            if not self._candles[key]:
                del self._candles[key]
                self._series.pop(key, None)
                task = self._candle_reads.pop(key, None)
                if task is not None:
                    task.cancel()
            return
        coin = self._coin(topic)
        if channel == ORDERBOOK and not self._books[coin]:
            del self._books[coin]
            self._last_books.pop(coin, None)
        elif channel == TRADES and not self._trades[coin]:
            del self._trades[coin]
            self._trade_ledgers.pop(coin, None)
        elif channel == BBO and not self._bbos[coin]:
            del self._bbos[coin]
            self._last_bbos.pop(coin, None)
        elif channel == ASSET_CONTEXT and not self._contexts[coin]:
            del self._contexts[coin]
            self._last_contexts.pop(coin, None)

    # -- upstream events --------------------------------------------------
    def on_event(self, link: Link, event: wire.Event) -> None:
        self._clock_of(event)
        match event:
            case wire.Mids():
                self._on_mids(event)
            case wire.Book():
                self._on_book(event)
            case wire.Trades():
                self._on_trades(event)
            case wire.BestBidOffer():
                self._on_bbo(event)
            case wire.ContextUpdate():
                self._on_context(event)
            case wire.CandleUpdate():
                self._on_candle(event)
            case wire.Fills():
                self.wallets.on_fills(event)
            case wire.OrderUpdates():
                self.wallets.on_orders(event)
            case wire.Account():
                self.wallets.on_account(event)
            case wire.LedgerEntries():
                self.wallets.on_ledger(event)
            case wire.Ack():
                self.wallets.on_ack(event.subscription, link.gap_from_ms)
                self._on_ack(event.subscription, link.gap_from_ms)

    def _clock_of(self, event: wire.Event) -> None:
        """What pushed frames stamped as they happened say of the exchange's clock
        (clock.ExchangeClock); replays and snapshots of history say nothing."""
        match event:
            case wire.Book() | wire.BestBidOffer():
                stamped = event.time
            case wire.Fills(is_snapshot=False, fills=[_, *_]):
                stamped = max(f.timestamp for f in event.fills)
            case wire.OrderUpdates(orders=[_, *_]):
                stamped = max(o.timestamp for o in event.orders)
            case _:
                return
        clock = self._upstream.exchange_clock
        if clock.observe(now_ms(), stamped):
            log.warning(
                "the exchange's clock runs up to %d ms behind this host's: user streams now "
                "start that much before a subscribe (check this host's clock: NTP)",
                clock.margin_ms(),
            )

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
    # (oid, status, remaining size), a ledger event by its id (hash and kind;
    # a funding payment by coin and time), a trade by (time, tid).
    # After each, the wallet's stream is delivered up to the event's time: where
    # an engine that keeps state across a restart starts it again.
    def emit_fills(self, wallet: str, fills: list[wire.Fill]) -> None:
        if self._before_names(lambda: self.emit_fills(wallet, fills)):
            return
        items = self._fill_items(fills)
        for topic in tuple(self._user.get((USER_FILLS, wallet), ())):
            self._to(topic, wallet, self._fills_publisher(topic, items))
        self._publisher.delivered(USER_FILLS, wallet, max(f.timestamp for f in fills))

    def _fill_items(self, fills: list[wire.Fill]) -> list[tuple[str, Any]]:
        symbol_of = self._markets.symbol_of
        return [
            (f"{f.wallet}:{f.id}", msgspec.structs.replace(f, symbol=symbol_of(f.symbol)))
            for f in fills
        ]

    def _fills_publisher(self, topic: Topic, items: list[tuple[str, Any]]) -> Callable[[], None]:
        return lambda: self._publisher.publish_items(topic, {}, "fills", items, LEDGER_KEEP)

    def _order_publisher(self, topic: Topic, action: str, order: wire.Order) -> Callable[[], None]:
        named = msgspec.structs.replace(order, symbol=self._markets.symbol_of(order.symbol))
        data = OrderUpdate(action, named)
        item_id = f"{order.id}:{order.status}:{order.remaining}"
        return lambda: self._publisher.publish_once(topic, data, item_id, LEDGER_KEEP)

    def _ledger_items(self, wallet: str, events: list[wire.LedgerEvent]) -> list[tuple[str, Any]]:
        symbol_of = self._markets.symbol_of
        return [
            (
                f"{wallet}:{e.id}",
                e
                if isinstance(e.symbol, msgspec.UnsetType)
                else msgspec.structs.replace(e, symbol=symbol_of(e.symbol)),
            )
            for e in events
        ]

    def _ledger_publisher(self, topic: Topic, items: list[tuple[str, Any]]) -> Callable[[], None]:
        return lambda: self._publisher.publish_items(topic, {}, "events", items, LEDGER_KEEP)

    def _to(self, topic: Topic, wallet: str, publish: Callable[[], None]) -> None:
        """Publish a wallet's events to a topic now, or after what it catches up with."""
        held = self._catching.get((topic, wallet))
        if held is None:
            publish()
        else:
            held.append(publish)

    def _catch_up(self, topic: Topic, wallet: str, since_ms: int) -> None:
        """`topic` comes back behind its wallet's feed, which went on for another topic
        since it was let go at `since_ms` (the exchange's time of the last event it was
        given): what the feed delivered meanwhile is read back from REST for this topic
        alone, and what the feed gives meanwhile waits behind it, so that the topic's
        stream has every event once (its exactly-once ledger drops what it had), in
        order. The wallet's own ledgers are not asked: they know those events as
        delivered."""
        self._catching[(topic, wallet)] = []
        task = asyncio.get_running_loop().create_task(self._read_back(topic, wallet, since_ms))
        self._catch_ups[(topic, wallet)] = task

    async def _read_back(self, topic: Topic, wallet: str, since_ms: int) -> None:
        wallets = self.wallets
        channel = topic.channel
        key = (topic, wallet)
        # This catch-up's own hold: the topic may be let go and come back meanwhile, with
        # a hold of a later catch-up that this one must leave alone.
        mine = self._catching.get(key)
        if mine is None:
            return  # let go before it began
        publish: Callable[[], None]
        try:
            if channel == USER_FILLS:
                fills = await wallets.read_back_fills(wallet, since_ms)

                def publish() -> None:  # named once the market list is loaded
                    if fills:
                        self._fills_publisher(topic, self._fill_items(fills))()
            elif channel == USER_ORDERS:
                orders = await wallets.read_back_orders(wallet, since_ms)

                def publish() -> None:
                    for action, order in orders:
                        self._order_publisher(topic, action, order)()
            else:
                events = await wallets.read_back_ledger(wallet, since_ms)

                def publish() -> None:
                    if events:
                        self._ledger_publisher(topic, self._ledger_items(wallet, events))()
        except Exception:
            # Not a REST failure (those are retried): live data goes on; the topic
            # keeps its position, so a restart reads back from there again.
            log.exception("reading back %s of %s for a topic failed", channel, wallet)
            if self._catching.get(key) is mine:
                del self._catching[key]
                self._catch_ups.pop(key, None)
                for emit in mine:
                    emit()
            return

        def caught_up() -> None:
            if self._catching.get(key) is not mine:
                return  # let go meanwhile
            del self._catching[key]
            self._catch_ups.pop(key, None)
            publish()
            for emit in mine:
                emit()
            self._publisher.caught_up(topic, wallet)

        if not self._before_names(caught_up):
            caught_up()

    def emit_order(self, wallet: str, action: str, order: wire.Order) -> None:
        if self._before_names(lambda: self.emit_order(wallet, action, order)):
            return
        for topic in tuple(self._user.get((USER_ORDERS, wallet), ())):
            self._to(topic, wallet, self._order_publisher(topic, action, order))
        self._publisher.delivered(USER_ORDERS, wallet, order.timestamp)

    def emit_account(self, account: wire.Account) -> None:
        self._last_accounts[account.wallet] = account
        for topic in tuple(self._user.get((ACCOUNT_UPDATES, account.wallet), ())):
            self._publisher.publish(topic, account)

    def emit_ledger(self, wallet: str, events: list[wire.LedgerEvent]) -> None:
        if self._before_names(lambda: self.emit_ledger(wallet, events)):
            return
        items = self._ledger_items(wallet, events)
        for topic in tuple(self._user.get((USER_LEDGER, wallet), ())):
            self._to(topic, wallet, self._ledger_publisher(topic, items))
        self._publisher.delivered(USER_LEDGER, wallet, max(e.time for e in events))

    def _before_names(self, emit: Callable[[], None]) -> bool:
        """Keep `emit` for when the market list is loaded, if it is not yet (or events
        kept before it still wait: order is kept); True if kept. Without the list a
        spot fill would go out under Hyperliquid's raw name (@107, not HYPE/USDC)."""
        if self._markets.loaded and not self._unnamed:
            return False
        self._unnamed.append(emit)
        if self._naming is None:
            self._naming = asyncio.get_running_loop().create_task(self._publish_named())
        return True

    async def _publish_named(self) -> None:
        await self._upstream.markets_loaded.wait()
        waiting, self._unnamed = self._unnamed, []
        self._naming = None
        for emit in waiting:
            emit()

    # -- market data ------------------------------------------------------
    def _on_mids(self, event: wire.Mids) -> None:
        if not self._prices:
            return
        self._last_mids[event.dex] = event
        entries: dict[str, PriceQuote] = {}
        for topic in tuple(self._prices):
            if topic.symbols is None or event.dex in _mids_dexes(topic, self._markets):
                self._publish_prices(topic, entries)

    def _publish_prices(self, topic: Topic, entries: dict[str, PriceQuote]) -> None:
        markets = self._markets
        started = self._prices.get(topic)
        waiting = started is not None and asyncio.get_running_loop().time() - started < PRICES_WAIT
        if waiting and any(d not in self._last_mids for d in _mids_dexes(topic, markets)):
            return  # not every dex's mids yet: the first message would miss symbols
        symbols = topic.symbols if topic.symbols is not None else markets.names
        data: dict[str, PriceQuote] = {}
        for symbol in symbols:
            market = markets.get(symbol)
            if market is None:
                continue
            mids = self._last_mids.get(market.dex)
            mid = mids.mids.get(market.coin) if mids is not None else None
            if mid is not None:
                data[symbol] = self._entry(entries, symbol, mid)
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
        data = OrderBook(topic.symbol, event.bids[:depth], event.asks[:depth], event.time)
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
                topic, {"symbol": topic.symbol}, "trades", items, TRADE_LEDGER_KEEP
            )

    def _on_bbo(self, event: wire.BestBidOffer) -> None:
        topics = self._bbos.get(event.coin)
        if not topics:
            return
        self._last_bbos[event.coin] = event
        for topic in tuple(topics):
            self._publish_bbo(topic, event)

    def _publish_bbo(self, topic: Topic, event: wire.BestBidOffer) -> None:
        self._publisher.publish(topic, Bbo(topic.symbol, event.bid, event.ask, event.time))

    def _on_context(self, event: wire.ContextUpdate) -> None:
        topics = self._contexts.get(event.coin)
        if not topics:
            return
        self._last_contexts[event.coin] = event
        for topic in tuple(topics):
            self._publisher.publish(topic, _asset_context(topic.symbol, event))

    # -- candles ----------------------------------------------------------
    def _on_candle(self, event: wire.CandleUpdate) -> None:
        key = (event.coin, event.interval)
        series = self._series.get(key)
        if series is None or not series.update(event.candle):
            return
        self._publish_candles(key, [event.candle])

    def _on_ack(self, subscription: dict[str, Any], gap_from_ms: int | None) -> None:
        """A candle stream came back after a gap: re-read what it missed from REST."""
        if subscription.get("type") != "candle" or gap_from_ms is None:
            return
        key = (str(subscription.get("coin")), str(subscription.get("interval")))
        series = self._series.get(key)
        if series is not None and series.ready:
            self._read_series(key)

    def _start_series(self, key: CandleKey) -> None:
        if key in self._series:
            return
        self._series[key] = CandleSeries()
        self._read_series(key)

    def _read_series(self, key: CandleKey) -> None:
        if key in self._candle_reads:
            return
        task = asyncio.get_running_loop().create_task(self._load_series(key))
        self._candle_reads[key] = task
        task.add_done_callback(lambda _: self._candle_reads.pop(key, None))

    async def _load_series(self, key: CandleKey) -> None:
        """The last 500 candles from REST (retried while it fails), then published whole."""
        coin, interval = key
        upstream = self._upstream

        async def read() -> list[wire.Candle]:
            rest = upstream.rest
            if rest is None:
                raise RestError("REST client not started")
            start, end = snapshot_window(interval, now_ms())
            return await rest.candles(coin, interval, start, end)

        candles = await retrying(
            read,
            Reconnect(upstream.timing.read_backoff),
            failed=lambda exc: log.warning("candles %s %s: %s; retrying", coin, interval, exc),
            retry_on=(RestError,),
            wait=upstream.wait,
        )
        assert not isinstance(candles, GiveUp)  # the backoff has no max_attempts
        series = self._series.get(key)
        if series is None:
            return  # nobody wants it any more
        series.load(candles)
        self._publish_candles(key, series.candles)

    def _publish_candles(self, key: CandleKey, update: list[wire.Candle]) -> None:
        series = self._series[key]
        for topic in tuple(self._candles.get(key, ())):
            whole = CandlesData(topic.symbol, topic.interval, series.candles)
            data = (
                whole
                if update is series.candles
                else CandlesData(topic.symbol, topic.interval, update)
            )
            self._publisher.publish_update(topic, data, whole)

    async def stop(self) -> None:
        tasks = list(self._candle_reads.values()) + list(self._catch_ups.values())
        self._catching.clear()
        if self._naming is not None:
            tasks.append(self._naming)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.wallets.stop()


def _asset_context(symbol: str, c: wire.ContextUpdate) -> AssetContext:
    if c.spot:
        return AssetContext(
            symbol=symbol,
            markPrice=c.mark_px,
            midPrice=c.mid_px,
            dayVolume=c.day_ntl_vlm,
            prevDayPrice=c.prev_day_px,
            timestamp=now_ms(),
            circulatingSupply=c.circulating_supply
            if c.circulating_supply is not None
            else msgspec.UNSET,
        )
    return AssetContext(
        symbol=symbol,
        markPrice=c.mark_px,
        midPrice=c.mid_px,
        dayVolume=c.day_ntl_vlm,
        prevDayPrice=c.prev_day_px,
        timestamp=now_ms(),
        oraclePrice=c.oracle_px if c.oracle_px is not None else msgspec.UNSET,
        funding=c.funding if c.funding is not None else msgspec.UNSET,
        premium=c.premium,
        openInterest=c.open_interest if c.open_interest is not None else msgspec.UNSET,
    )

"""Orders placed through ``/exchange``, resting in and matching against the simulated book.

The market model's book is synthetic: rebuilt every tick around a fair price.
Orders that accounts place through ``/exchange`` live beside it:

- a taker sweeps the best prices first; other accounts' resting orders go
  ahead of synthetic liquidity at the same price (they were there first), and
  synthetic liquidity it took stays taken for the rest of the tick; its own
  resting orders that it would cross are canceled first (``selfTradeCanceled``:
  Hyperliquid's self-trade prevention expires the maker);
- a resting order fills, as maker and at its own price, when the market trades
  through it: a public trade of the other side at or beyond its price (up to
  that trade's size), or the synthetic book crossing it after a move;
- trigger orders (TP/SL) wait off the book until the mark price reaches their
  trigger, then execute as a market order (bounded by their limit price) or
  rest as a limit order;
- a scheduled cancel (the dead man's switch) cancels every open order at its
  time;
- a TWAP (twap.py) runs a market slice at each of its 30-second marks: an IOC
  at most 3% from the mark, clipped like the order it is (reduce-only to the
  position, a spot sell to the balance, skipped when margin or balance does
  not cover it); its fills carry the ``twapId``. Slices are the exchange's own
  orders: they show as fills, not as order updates;
- a spot pair's order (asset 10000 + the pair's index) spends token balances,
  not margin: a buy needs the USDC it would pay, a sell the base tokens, beyond
  what the account's other resting spot orders hold ("Insufficient spot
  balance"); its fills move the balances (spot.py). A spot trigger order holds
  nothing until it triggers, and is canceled then if the balance no longer
  covers it.

``book(coin)`` is what ``l2Book`` shows: the synthetic levels less what was
taken this tick, plus the resting orders. Every fill and status transition goes
through the accounts engine, so REST and the streams see them exactly as they
see the demo wallets'. Sans I/O: the caller passes the time.
"""

from __future__ import annotations

import bisect
import decimal
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

from hlgateway.simulator.accounts import (
    EXACT,
    PX_PRECISION,
    ZERO,
    AccountsEngine,
    Fill,
    LiveOrder,
    OrderStatus,
    OrderUpdate,
    Wallet,
    WalletActivity,
)
from hlgateway.simulator.actions import OrderSpec, TwapOrder
from hlgateway.simulator.listing import Listing
from hlgateway.simulator.market import (
    BOOK_DEPTH,
    MAX_PERP_DECIMALS,
    MAX_SIG_FIGS,
    MAX_SPOT_DECIMALS,
    Book,
    CoinSpec,
    Level,
    MarketModel,
    Side,
    Trade,
)
from hlgateway.simulator.rng import derive_address, derive_int
from hlgateway.simulator.spot import sellable
from hlgateway.simulator.twap import ZERO_HASH, Twap, duration_problem, worst_price
from hlgateway.simulator.wire import num, twap_history

MIN_NOTIONAL = Decimal(10)
MAX_TWAP_FILLS = 2_000  # kept per wallet for userTwapSliceFills
SCHEDULE_MIN_DELAY_MS = 5_000
SCHEDULE_TRIGGERS_PER_DAY = 10
DAY_MS = 86_400_000

Status = dict[str, object] | str  # one entry of an order response's "statuses"
# One user's resting orders of one coin and side, best first, then by arrival:
# (price key, arrival number, oid); the key is the price for asks, minus it for bids.
Ladder = list[tuple[Decimal, int, int]]


class OrderRefused(Exception):
    """An order or cancel Hyperliquid refuses with an error status; the text is its answer."""


@dataclass
class Events:
    """What one request or one tick changed: per wallet, in emission order, and the tape."""

    updates: dict[str, list[OrderUpdate]] = field(default_factory=dict)
    fills: dict[str, list[Fill]] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    twaps: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # twapHistory rows

    def updates_of(self, user: str) -> list[OrderUpdate]:
        self.fills.setdefault(user, [])
        return self.updates.setdefault(user, [])

    def fills_of(self, user: str) -> list[Fill]:
        self.updates.setdefault(user, [])
        return self.fills.setdefault(user, [])

    def twap_changed(self, twap: Twap) -> None:
        self.fills_of(twap.user)
        self.twaps.setdefault(twap.user, []).append(twap_history(twap))

    def activities(self) -> list[WalletActivity]:
        return [
            WalletActivity(
                user=user,
                order_updates=tuple(updates),
                fills=tuple(self.fills[user]),
                twaps=tuple(self.twaps.get(user, ())),
            )
            for user, updates in self.updates.items()
            if updates or self.fills[user] or self.twaps.get(user)
        ]


def trigger_is_above(is_buy: bool, tpsl: str) -> bool:
    """Whether a trigger fires when the mark rises to it (else when it falls to it).

    Take-profit sells and stop-loss buys fire above; stop-loss sells and take-profit
    buys fire below.
    """
    return (tpsl == "tp") != is_buy


def order_problem(spec: OrderSpec, coin: CoinSpec) -> str | None:
    """Hyperliquid's answer to an order that is malformed for its coin, or None."""
    if spec.sz <= 0 or not _on_lot(spec.sz, coin):
        return "Order has invalid size."
    prices = [spec.px] + ([spec.trigger.px] if spec.trigger is not None else [])
    for px in prices:
        if px <= 0 or not _valid_price(px, coin):
            return "Price must be divisible by tick size."
    if not spec.reduce_only and spec.px * spec.sz < MIN_NOTIONAL:
        return "Order must have minimum value of $10."
    return None


def _on_lot(sz: Decimal, coin: CoinSpec) -> bool:
    return (sz / coin.lot) == (sz / coin.lot).to_integral_value()


def _valid_price(px: Decimal, coin: CoinSpec) -> bool:
    """At most 6 - szDecimals decimals (8 for spot), and 5 significant figures unless an
    integer."""
    exponent = px.normalize().as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    max_decimals = MAX_SPOT_DECIMALS if coin.spot else MAX_PERP_DECIMALS
    if decimals > max_decimals - coin.sz_decimals:
        return False
    if px == px.to_integral_value():
        return True
    digits = len(px.normalize().as_tuple().digits)
    return digits <= MAX_SIG_FIGS


class Matcher:
    def __init__(self, market: MarketModel, accounts: AccountsEngine, listing: Listing) -> None:
        self._market = market
        self._accounts = accounts
        self._listing = listing
        # coin -> oid -> (user, oid), by arrival; an unlist is O(1), and a walk copies
        # the values without making a tuple per order (the tick walks them all)
        self._resting: dict[str, dict[int, tuple[str, int]]] = {}
        self._triggers: dict[str, dict[int, tuple[str, int]]] = {}
        # The resting orders again, indexed for the checks every order runs (the best
        # price others offer, one's own orders it would cross, one's reduce-only orders):
        # a grid bot keeps hundreds resting, and walking them all per order was O(K).
        # Entries of orders that left ``live_orders`` by other paths (a demo wallet's
        # own flow) are skipped and dropped when met, as ``_resting_entries`` skips them.
        self._ladders: dict[tuple[str, Side], dict[str, Ladder]] = {}  # (coin, side) -> user
        self._rungs: dict[int, tuple[str, Side, str, tuple[Decimal, int, int]]] = {}  # by oid
        self._reduce_only: dict[tuple[str, str], dict[int, None]] = {}  # (coin, user) -> oids
        self._arrivals = 0
        self._schedules: dict[str, int] = {}  # user -> when its open orders get canceled
        self._triggered_today: dict[str, tuple[int, int]] = {}  # user -> (day, count)
        self._taken: dict[tuple[str, Side, Decimal], Decimal] = {}  # synthetic size taken
        self._taken_tick = -1
        self._liquidity = derive_address(market.seed, "trader", 0)  # the book's counterparty
        self._twaps: dict[int, Twap] = {}  # every TWAP placed, by id
        self._next_twap_id = 1 + derive_int(market.seed, "twap", market.start_ms, bits=24)

    # -- what clients see ------------------------------------------------------
    def book(self, coin: str) -> Book:
        """The synthetic book less what takers took this tick, plus resting orders."""
        synthetic = self._market.book(coin)
        self._fresh_tick()
        resting = self._resting.get(coin)
        if not resting and not self._taken:
            return synthetic
        bids = self._merge(coin, "A", synthetic.bids, descending=True)
        asks = self._merge(coin, "B", synthetic.asks, descending=False)
        return Book(coin=coin, time=synthetic.time, bids=bids, asks=asks)

    def _merge(
        self, coin: str, taker: Side, levels: tuple[Level, ...], *, descending: bool
    ) -> tuple[Level, ...]:
        by_px: dict[Decimal, tuple[Decimal, int]] = {}
        for level in levels:
            left = level.sz - self._taken.get((coin, taker, level.px), ZERO)
            if left > 0:
                by_px[level.px] = (left, level.n)
        for order in self._resting_orders(coin, "B" if taker == "A" else "A"):
            sz, n = by_px.get(order.limit_px, (ZERO, 0))
            by_px[order.limit_px] = (sz + order.sz, n + 1)
        ordered = sorted(by_px, reverse=descending)[:BOOK_DEPTH]
        return tuple(Level(px=px, sz=by_px[px][0], n=by_px[px][1]) for px in ordered)

    def best(self, coin: str, side: Side, *, excluding: str | None = None) -> Decimal | None:
        """The best price a taker on ``side`` would meet (others' orders and the book)."""
        self._fresh_tick()
        taker = side
        synthetic = self._market.book(coin)
        levels = synthetic.asks if side == "B" else synthetic.bids
        best: Decimal | None = None
        for level in levels:
            if level.sz - self._taken.get((coin, taker, level.px), ZERO) > 0:
                best = level.px
                break
        for user, ladder in self._ladders.get((coin, "A" if side == "B" else "B"), {}).items():
            top = None if user == excluding else self._top(user, ladder)
            if top is None:
                continue
            px = top[1].limit_px
            if best is None or (px < best if side == "B" else px > best):
                best = px
        return best

    # -- placing ---------------------------------------------------------------
    def place(
        self, wallet: Wallet, spec: OrderSpec, coin: CoinSpec, at_ms: int, events: Events
    ) -> Status:
        """Place one order; answer its entry of the response's ``statuses``."""
        try:
            size = self._check(wallet, spec, coin, at_ms, replacing=None)
        except OrderRefused as exc:
            return {"error": f"{exc} asset={spec.asset}"}
        return self._enter(wallet, spec, size, coin, at_ms, events)

    def _check(
        self,
        wallet: Wallet,
        spec: OrderSpec,
        coin: CoinSpec,
        at_ms: int,
        *,
        replacing: LiveOrder | None,
    ) -> Decimal:
        """Everything that can refuse an order, before anything changes; its size."""
        problem = order_problem(spec, coin)
        if problem is not None:
            raise OrderRefused(problem)
        if spec.cloid is not None:
            known = wallet.cloids.get(spec.cloid)
            if known is not None and (replacing is None or known != replacing.oid):
                raise OrderRefused(f"Duplicate cloid: already used by order {known}.")
        if coin.spot and spec.reduce_only:
            raise OrderRefused("Reduce only orders are for perps: a spot pair has no position.")
        if spec.trigger is not None:
            return spec.sz  # checked again when it triggers
        side: Side = "B" if spec.is_buy else "A"
        size = spec.sz
        if coin.spot:
            if not self._spot_covered(wallet, coin.name, side, size, spec.px, at_ms, replacing):
                raise OrderRefused("Insufficient spot balance")
        elif spec.reduce_only:
            size = self._reducible(wallet, coin.name, side, size)
        elif not self._margin_ok(wallet, coin, side, size, spec.px, at_ms, replacing):
            raise OrderRefused("Insufficient margin to place order.")
        best = self.best(coin.name, side, excluding=wallet.address)
        crosses = best is not None and (best <= spec.px if spec.is_buy else best >= spec.px)
        if spec.tif == "Alo" and crosses:
            bid, ask = self.best(coin.name, "A"), self.best(coin.name, "B")
            bbo = f"{'-' if bid is None else num(bid)}@{'-' if ask is None else num(ask)}"
            raise OrderRefused(f"Post only order would have immediately matched, bbo was {bbo}.")
        if spec.tif == "Ioc" and not crosses:
            raise OrderRefused("Order could not immediately match against any resting orders.")
        return size

    def _enter(
        self,
        wallet: Wallet,
        spec: OrderSpec,
        size: Decimal,
        coin: CoinSpec,
        at_ms: int,
        events: Events,
    ) -> Status:
        """A checked order goes live: it takes what it crosses, then rests (or waits)."""
        order = LiveOrder(
            oid=self._accounts.next_oid(),
            coin=coin.name,
            side="B" if spec.is_buy else "A",
            limit_px=spec.px,
            orig_sz=size,
            sz=size,
            timestamp=at_ms,
            cloid=spec.cloid,
            tif=spec.tif,
            reduce_only=spec.reduce_only,
        )
        if spec.trigger is not None:
            above = trigger_is_above(spec.is_buy, spec.trigger.tpsl)
            order.trigger_px = spec.trigger.px
            order.is_market = spec.trigger.is_market
            order.trigger_condition = (
                f"Price {'above' if above else 'below'} {num(spec.trigger.px)}"
            )
        wallet.live_orders[order.oid] = order
        if spec.cloid is not None:
            wallet.cloids[spec.cloid] = order.oid
        self._accounts.record(
            wallet, order.update("open", at_ms), events.updates_of(wallet.address)
        )
        if spec.trigger is not None:
            self._triggers.setdefault(coin.name, {})[order.oid] = (wallet.address, order.oid)
            return _resting(order)
        filled, notional = self._take(wallet, order, at_ms, events)
        if order.sz > 0 and order.tif == "Ioc":
            self._finish(wallet, order, "canceled", at_ms, events)
        elif order.sz > 0:
            self._rest(wallet, order)
            return _resting(order)
        return _filled(order, filled, notional)

    def _reducible(self, wallet: Wallet, coin: str, side: Side, size: Decimal) -> Decimal:
        """A reduce-only order's size, clipped to the position it reduces."""
        pos = wallet.positions.get(coin)
        szi = ZERO if pos is None else pos.szi
        if szi == 0 or (szi > 0) == (side == "B"):
            raise OrderRefused("Reduce only order would increase position.")
        return min(size, abs(szi))

    def _margin_ok(
        self,
        wallet: Wallet,
        coin: CoinSpec,
        side: Side,
        size: Decimal,
        px: Decimal,
        at_ms: int,
        replacing: LiveOrder | None,
    ) -> bool:
        pos = wallet.positions.get(coin.name)
        szi = ZERO if pos is None else pos.szi
        reduces = szi != 0 and (szi > 0) != (side == "B")
        opening = size - (min(size, abs(szi)) if reduces else ZERO)
        if opening <= 0:
            return True
        needed = opening * px / wallet.leverage_for(coin.name, coin.max_leverage)
        return needed <= self._free_usdc(wallet, at_ms, replacing)

    def free_usdc(self, wallet: Wallet, at_ms: int) -> Decimal:
        """USDC neither used as margin nor held by resting orders."""
        return self._free_usdc(wallet, at_ms, None)

    def _free_usdc(self, wallet: Wallet, at_ms: int, replacing: LiveOrder | None) -> Decimal:
        """USDC neither used as margin nor held by resting orders (but ``replacing``)."""
        view = self._accounts.account_view(wallet.address, at_ms)
        return view.account_value - view.total_margin_used - self._reserved(wallet, replacing)

    def _reserved(self, wallet: Wallet, replacing: LiveOrder | None) -> Decimal:
        """USDC held by resting orders (but ``replacing``): the margin of those that would
        open perp positions, the cost of spot buys. Trigger orders hold nothing yet."""
        total = self._reserved_from_totals(wallet, replacing)
        return self._reserved_by_order(wallet, replacing) if total is None else total

    def _reserved_from_totals(self, wallet: Wallet, replacing: LiveOrder | None) -> Decimal | None:
        """``_reserved`` from the wallet's per-coin totals (accounts.LiveOrders), or None
        where that could differ from the sum order by order.

        That sum rounds each order's margin (size x price / leverage) and each partial
        sum to the context's precision. Per coin, size x price summed exactly and then
        divided is the same number when the leverage divides exactly (only 2s and 5s:
        1, 2, 4, 5, 10, 20, 25, 40, 50) and every term and partial sum fits the
        precision, as then nothing was rounded either way; otherwise the order-by-order
        sum decides. Spot orders are never reduce-only (refused), so the buys' notional
        is their cost.
        """
        total = ZERO
        lowest = 0  # no term of the order-by-order sum has a digit below 10**lowest
        skip = _counted(wallet, replacing)
        for key, held in wallet.live_orders.held.items():
            coin, side = key
            spec = self._market.spec(coin)
            if spec is None or (spec.spot and side == "A"):
                continue
            notional = held.notional
            if skip is not None and key == skip[0]:
                notional = EXACT.subtract(notional, skip[2])
            extra = 0  # decimal places that dividing by the leverage may add
            if not spec.spot:
                leverage = wallet.leverage_for(coin, spec.max_leverage)
                extra = _places(leverage)
                if extra < 0:
                    return None
                notional = EXACT.divide(notional, leverage)
            total = EXACT.add(total, notional)
            lowest = min(lowest, _exponent(held.notional) - extra)
        return total if _unrounded(total, lowest) else None

    def _reserved_by_order(self, wallet: Wallet, replacing: LiveOrder | None) -> Decimal:
        total = ZERO
        for order in wallet.live_orders.values():
            spec = self._market.spec(order.coin)
            if order.tif is None or spec is None or order is replacing:
                continue
            if spec.spot:
                total += order.sz * order.limit_px if order.side == "B" else ZERO
            elif not order.reduce_only:
                leverage = wallet.leverage_for(order.coin, spec.max_leverage)
                total += order.sz * order.limit_px / leverage
        return total

    def spot_holds(self, wallet: Wallet) -> dict[str, Decimal]:
        """What ``wallet``'s resting spot orders hold, by token name (a buy its cost in
        the quote token, a sell its size in the base token): ``spotClearinghouseState``'s
        ``hold``."""
        holds: dict[str, Decimal] = {}
        for order in wallet.live_orders.values():
            pair = self._listing.pair(order.coin)
            if pair is None or order.tif is None:
                continue
            token, amount = (
                (pair.quote.name, order.sz * order.limit_px)
                if order.side == "B"
                else (pair.base.name, order.sz)
            )
            holds[token] = holds.get(token, ZERO) + amount
        return holds

    def _spot_covered(
        self,
        wallet: Wallet,
        coin: str,
        side: Side,
        size: Decimal,
        px: Decimal,
        at_ms: int,
        replacing: LiveOrder | None,
    ) -> bool:
        """Whether the wallet holds what a spot order would spend, beyond what its other
        resting orders hold (a buy pays at most its limit price; the fee of a buy is
        taken from the tokens received, of a sell from the proceeds)."""
        pair = self._listing.pair(coin)
        if pair is None:
            return False
        if side == "B":
            return size * px <= self._free_usdc(wallet, at_ms, replacing)
        # The sizes of the other resting sells, from the wallet's totals: a sum of
        # sizes is exact, the same as adding them up order by order.
        totals = wallet.live_orders.held.get((coin, "A"))
        held = ZERO if totals is None else totals.sz
        skip = _counted(wallet, replacing)
        if skip is not None and skip[0] == (coin, "A"):
            held = EXACT.subtract(held, skip[1])
        if not _unrounded(held, _exponent(held)):
            held = sum(
                (
                    order.sz
                    for order in wallet.live_orders.values()
                    if order.coin == coin
                    and order.side == "A"
                    and order.tif is not None
                    and order is not replacing
                ),
                ZERO,
            )
        return size <= sellable(wallet.spot.get(coin), pair) - held

    # -- taking liquidity ----------------------------------------------------------
    def _take(
        self,
        wallet: Wallet,
        order: LiveOrder,
        at_ms: int,
        events: Events,
        *,
        twap_id: int | None = None,
    ) -> tuple[Decimal, Decimal]:
        """Sweep what ``order`` crosses, best price first; (size filled, notional).

        A TWAP slice (``twap_id``) reports its fills only: no order updates."""
        self._fresh_tick()
        buying = order.side == "B"
        self._expire_own_makers(wallet, order, at_ms, events)
        filled = notional = ZERO
        last: OrderUpdate | None = None
        book = self._market.book(order.coin)
        levels = book.asks if buying else book.bids
        while order.sz > 0:
            maker = self._best_maker(wallet, order)
            level = next(
                (
                    lvl
                    for lvl in levels
                    if self._synthetic_left(order, lvl) > 0 and _crosses(order, lvl.px)
                ),
                None,
            )
            use_maker = maker is not None and (
                level is None
                or (maker[1].limit_px <= level.px if buying else maker[1].limit_px >= level.px)
            )
            if use_maker:
                assert maker is not None
                maker_wallet, maker_order = maker
                px = maker_order.limit_px
                size = min(order.sz, maker_order.sz)
                self._maker_fill(maker_wallet, maker_order, size, at_ms, events)
                counterparty = maker_wallet.address
            elif level is not None:
                px = level.px
                size = min(order.sz, self._synthetic_left(order, level))
                key = (order.coin, order.side, px)
                self._taken[key] = self._taken.get(key, ZERO) + size
                counterparty = self._liquidity
            else:
                break
            last, fill = self._accounts.execute(wallet, order, size, px, at_ms, crossed=True)
            if twap_id is not None:
                fill = replace(fill, twap_id=twap_id, hash=ZERO_HASH)
                wallet.twap_fills.append(fill)
                if len(wallet.twap_fills) > MAX_TWAP_FILLS * 11 // 10:
                    del wallet.twap_fills[: len(wallet.twap_fills) - MAX_TWAP_FILLS]
            self._accounts.keep_fill(wallet, fill, events.fills_of(wallet.address))
            filled += size
            notional += size * px
            users = (wallet.address, counterparty) if buying else (counterparty, wallet.address)
            events.trades.append(
                self._market.record_trade(order.coin, order.side, px, size, at_ms, users)
            )
        if twap_id is None and last is not None and (last.status == "filled" or order.tif != "Ioc"):
            self._accounts.record(wallet, last, events.updates_of(wallet.address))
        if filled:
            self._after_fill(wallet, order.coin, at_ms, events)
        return filled, notional

    def _synthetic_left(self, order: LiveOrder, level: Level) -> Decimal:
        return level.sz - self._taken.get((order.coin, order.side, level.px), ZERO)

    def _best_maker(self, owner: Wallet, taker: LiveOrder) -> tuple[Wallet, LiveOrder] | None:
        """Others' best-priced order that ``taker`` crosses; of equals, the first to rest."""
        best: tuple[Wallet, LiveOrder] | None = None
        best_rung: tuple[Decimal, int, int] | None = None
        other: Side = "A" if taker.side == "B" else "B"
        for user, ladder in self._ladders.get((taker.coin, other), {}).items():
            top = None if user == owner.address else self._top(user, ladder)
            if top is None or not _crosses(taker, top[1].limit_px):
                continue
            if best_rung is None or ladder[0] < best_rung:
                best, best_rung = top, ladder[0]
        return best

    def _expire_own_makers(
        self, wallet: Wallet, taker: LiveOrder, at_ms: int, events: Events
    ) -> None:
        """``wallet``'s resting orders that ``taker`` would cross go first, in the order
        they came to rest (the ladder's crossing end, re-sorted by arrival)."""
        other: Side = "A" if taker.side == "B" else "B"
        ladder = self._ladders.get((taker.coin, other), {}).get(wallet.address, [])
        crossed: list[tuple[int, LiveOrder]] = []
        for _, arrival, oid in ladder:
            order = wallet.live_orders.get(oid)
            if order is None:
                continue
            if not _crosses(taker, order.limit_px):
                break
            crossed.append((arrival, order))
        for _, order in sorted(crossed, key=lambda c: c[0]):
            self._finish(wallet, order, "selfTradeCanceled", at_ms, events)

    def _maker_fill(
        self, wallet: Wallet, order: LiveOrder, size: Decimal, at_ms: int, events: Events
    ) -> None:
        update, fill = self._accounts.execute(wallet, order, size, order.limit_px, at_ms, False)
        self._accounts.record(wallet, update, events.updates_of(wallet.address))
        self._accounts.keep_fill(wallet, fill, events.fills_of(wallet.address))
        if update.status == "filled":
            self._unlist(order)
        self._after_fill(wallet, order.coin, at_ms, events)

    def _after_fill(self, wallet: Wallet, coin: str, at_ms: int, events: Events) -> None:
        """A closed position takes its resting reduce-only orders with it."""
        pos = wallet.positions.get(coin)
        if pos is not None and pos.szi != 0:
            return
        for oid in list(self._reduce_only.get((coin, wallet.address), ())):
            order = wallet.live_orders.get(oid)
            if order is not None:
                self._finish(wallet, order, "reduceOnlyCanceled", at_ms, events)

    # -- canceling and modifying ------------------------------------------------
    def find_open(self, wallet: Wallet, coin: str, key: int | str) -> LiveOrder | None:
        oid = wallet.cloids.get(key) if isinstance(key, str) else key
        order = None if oid is None else wallet.live_orders.get(oid)
        return order if order is not None and order.coin == coin else None

    def cancel(
        self, wallet: Wallet, coin: str, key: int | str, at_ms: int, events: Events
    ) -> Status:
        order = self.find_open(wallet, coin, key)
        if order is None:
            return {"error": "Order was never placed, already canceled, or filled."}
        self._finish(wallet, order, "canceled", at_ms, events)
        return "success"

    def modify(
        self,
        wallet: Wallet,
        key: int | str,
        spec: OrderSpec,
        coin: CoinSpec,
        at_ms: int,
        events: Events,
    ) -> Status:
        """Cancel the open order ``key`` and place ``spec`` in its stead (a new oid)."""
        order = self.find_open(wallet, coin.name, key)
        if order is None:
            return {"error": "Cannot modify canceled or filled order"}
        try:
            size = self._check(wallet, spec, coin, at_ms, replacing=order)
        except OrderRefused as exc:
            return {"error": f"{exc} asset={spec.asset}"}  # the order stays as it was
        self._finish(wallet, order, "canceled", at_ms, events)
        return self._enter(wallet, spec, size, coin, at_ms, events)

    def schedule_cancel(self, wallet: Wallet, when: int | None, now_ms: int) -> str | None:
        """Set or clear ``wallet``'s dead man's switch; an error text, or None."""
        if when is None:
            self._schedules.pop(wallet.address, None)
            return None
        if when < now_ms + SCHEDULE_MIN_DELAY_MS:
            return "Scheduled cancel time too early, must be at least 5 seconds after current time"
        day, count = self._triggered_today.get(wallet.address, (now_ms // DAY_MS, 0))
        if day == now_ms // DAY_MS and count >= SCHEDULE_TRIGGERS_PER_DAY:
            return "Too many scheduled cancel triggers today (at most 10 per day)"
        self._schedules[wallet.address] = when
        return None

    def _finish(
        self, wallet: Wallet, order: LiveOrder, status: OrderStatus, at_ms: int, events: Events
    ) -> None:
        """End an open order with ``status`` (a cancel of some kind)."""
        wallet.live_orders.pop(order.oid, None)
        self._unlist(order)
        self._accounts.record(
            wallet, order.update(status, at_ms), events.updates_of(wallet.address)
        )

    def _rest(self, wallet: Wallet, order: LiveOrder) -> None:
        """``order`` rests on the book: listed by arrival, and in its owner's ladder."""
        user = wallet.address
        self._resting.setdefault(order.coin, {})[order.oid] = (user, order.oid)
        self._arrivals += 1
        rung = (-order.limit_px if order.side == "B" else order.limit_px, self._arrivals, order.oid)
        ladder = self._ladders.setdefault((order.coin, order.side), {}).setdefault(user, [])
        bisect.insort(ladder, rung)
        self._rungs[order.oid] = (order.coin, order.side, user, rung)
        if order.reduce_only:
            self._reduce_only.setdefault((order.coin, user), {})[order.oid] = None

    def _unlist(self, order: LiveOrder) -> None:
        for table in (self._resting, self._triggers):
            entries = table.get(order.coin)
            if entries:
                entries.pop(order.oid, None)
        self._drop_rung(order.oid)

    def _drop_rung(self, oid: int, *, keep_ladder: bool = False) -> None:
        """Out of the index; an emptied ladder goes too unless callers iterate them."""
        placed = self._rungs.pop(oid, None)
        if placed is None:
            return
        coin, side, user, rung = placed
        ladders = self._ladders[coin, side]
        ladder = ladders[user]
        del ladder[bisect.bisect_left(ladder, rung)]
        if not ladder and not keep_ladder:
            del ladders[user]
        reduce_only = self._reduce_only.get((coin, user))
        if reduce_only is not None and oid in reduce_only:
            del reduce_only[oid]
            if not reduce_only:
                del self._reduce_only[coin, user]

    def _top(self, user: str, ladder: Ladder) -> tuple[Wallet, LiveOrder] | None:
        """The best of ``user``'s live orders on ``ladder``. Rungs of orders that left
        ``live_orders`` by another path (a demo wallet's own flow) go when met; such
        orders stay in ``_resting``, skipped there as before."""
        wallet = self._accounts.wallet(user)
        while ladder:
            order = None if wallet is None else wallet.live_orders.get(ladder[0][2])
            if order is not None and wallet is not None:
                return wallet, order
            self._drop_rung(ladder[0][2], keep_ladder=True)
        return None

    # -- TWAP ------------------------------------------------------------------
    def place_twap(
        self, wallet: Wallet, request: TwapOrder, coin: CoinSpec, at_ms: int, events: Events
    ) -> Status:
        """Start a TWAP; its first slice runs at the first tick at or after ``at_ms``."""
        problem = duration_problem(request.minutes)
        if problem is None and (request.sz <= 0 or not _on_lot(request.sz, coin)):
            problem = "Order has invalid size."
        if problem is None and coin.spot and request.reduce_only:
            problem = "Reduce only orders are for perps: a spot pair has no position."
        if problem is not None:
            return {"error": problem}
        twap = Twap(
            twap_id=self._next_twap_id,
            user=wallet.address,
            coin=coin.name,
            asset=request.asset,
            is_buy=request.is_buy,
            sz=request.sz,
            reduce_only=request.reduce_only,
            minutes=request.minutes,
            randomize=request.randomize,
            timestamp=at_ms,
            seed=self._market.seed,
        )
        self._next_twap_id += 1
        self._twaps[twap.twap_id] = twap
        events.twap_changed(twap)
        return {"running": {"twapId": twap.twap_id}}

    def cancel_twap(
        self, wallet: Wallet, coin: str, twap_id: int, at_ms: int, events: Events
    ) -> Status:
        twap = self._twaps.get(twap_id)
        if twap is None or twap.user != wallet.address or twap.coin != coin or not twap.running:
            return {"error": "TWAP was never placed, already canceled, or filled."}
        twap.status = "terminated"
        twap.ended_ms = at_ms
        events.twap_changed(twap)
        return "success"

    def twaps_of(self, user: str) -> list[Twap]:
        """``user``'s TWAPs, oldest first (what ``twapHistory`` reports)."""
        return [t for t in self._twaps.values() if t.user == user.lower()]

    def _run_twaps(self, now_ms: int, events: Events) -> None:
        for twap in list(self._twaps.values()):
            while twap.running and twap.next_ms <= now_ms:
                self._run_slice(twap, now_ms, events)
                if not twap.running:
                    events.twap_changed(twap)

    def _run_slice(self, twap: Twap, now_ms: int, events: Events) -> None:
        wallet = self._accounts.wallet(twap.user)
        spec = self._market.spec(twap.coin)
        if wallet is None or spec is None:
            twap.status, twap.ended_ms = "terminated", now_ms
            return
        side: Side = "B" if twap.is_buy else "A"
        size = twap.slice_size(spec.lot)
        px = worst_price(self._market.mark_px(twap.coin), twap.is_buy, spec)
        try:
            if size <= 0:
                raise OrderRefused("nothing left to slice")
            if spec.spot:
                if not self._spot_covered(wallet, spec.name, side, size, px, now_ms, None):
                    raise OrderRefused("Insufficient spot balance")
            elif twap.reduce_only:
                size = self._reducible(wallet, spec.name, side, size)
            elif not self._margin_ok(wallet, spec, side, size, px, now_ms, None):
                raise OrderRefused("Insufficient margin")
        except OrderRefused:
            twap.ran(ZERO, ZERO, now_ms)  # this slice is skipped; later ones catch up
            return
        order = LiveOrder(
            oid=self._accounts.next_oid(),
            coin=spec.name,
            side=side,
            limit_px=px,
            orig_sz=size,
            sz=size,
            timestamp=now_ms,
            cloid=None,
            tif="Ioc",
            reduce_only=twap.reduce_only,
        )
        wallet.live_orders[order.oid] = order
        filled, notional = self._take(wallet, order, now_ms, events, twap_id=twap.twap_id)
        wallet.live_orders.pop(order.oid, None)  # an IOC: what did not fill is gone
        twap.ran(filled, notional, now_ms)

    # -- the clock -------------------------------------------------------------
    def step(self, now_ms: int, trades: list[Trade]) -> Events:
        """One tick: the market traded (``trades``) and moved; fill, trigger, cancel.

        Only orders placed by the tick's time meet it: a world catching up on a
        backlog of ticks (its clock task ran late) must not fill an order with a
        trade from before the order was placed."""
        events = Events()
        self._fresh_tick()
        for trade in trades:
            self._hit_by(trade, now_ms, events)
        for coin in list(self._resting):
            self._crossed_by_book(coin, now_ms, events)
        for coin in list(self._triggers):
            self._fire_triggers(coin, now_ms, events)
        for user, when in list(self._schedules.items()):
            if when <= now_ms:
                self._run_schedule(user, now_ms, events)
        self._run_twaps(now_ms, events)
        return events

    def _hit_by(self, trade: Trade, now_ms: int, events: Events) -> None:
        """A public trade reaches the resting orders it traded through, best first."""
        maker_side: Side = "B" if trade.side == "A" else "A"
        left = trade.sz
        entries = [
            (w, o)
            for w, o in self._resting_entries(trade.coin, maker_side, now_ms)
            if (o.limit_px >= trade.px if maker_side == "B" else o.limit_px <= trade.px)
        ]
        entries.sort(key=lambda e: -e[1].limit_px if maker_side == "B" else e[1].limit_px)
        for wallet, order in entries:
            if left <= 0:
                break
            size = min(left, order.sz)
            left -= size
            self._maker_fill(wallet, order, size, now_ms, events)

    def _crossed_by_book(self, coin: str, now_ms: int, events: Events) -> None:
        """The synthetic market moved through a resting order: it fills in full."""
        book = self._market.book(coin)
        best_bid = book.bids[0].px if book.bids else None
        best_ask = book.asks[0].px if book.asks else None
        for wallet, order in list(self._resting_entries(coin, None, now_ms)):
            crossed = (
                best_ask is not None and order.limit_px >= best_ask
                if order.side == "B"
                else best_bid is not None and order.limit_px <= best_bid
            )
            if crossed and order.sz > 0:
                self._maker_fill(wallet, order, order.sz, now_ms, events)

    def _fire_triggers(self, coin: str, now_ms: int, events: Events) -> None:
        mark = self._market.mark_px(coin)
        spec = self._market.spec(coin)
        assert spec is not None
        for wallet, order in list(self._trigger_entries(coin, now_ms)):
            assert order.trigger_px is not None
            above = order.trigger_condition.startswith("Price above")
            if not (mark >= order.trigger_px if above else mark <= order.trigger_px):
                continue
            self._unlist(order)
            self._accounts.record(
                wallet, order.update("triggered", now_ms), events.updates_of(wallet.address)
            )
            if order.reduce_only:
                try:
                    order.sz = min(order.sz, self._reducible(wallet, coin, order.side, order.sz))
                except OrderRefused:
                    self._finish(wallet, order, "canceled", now_ms, events)
                    continue
            elif spec.spot and not self._spot_covered(
                wallet, coin, order.side, order.sz, order.limit_px, now_ms, order
            ):
                self._finish(wallet, order, "canceled", now_ms, events)
                continue
            order.tif = "Ioc" if order.is_market else "Gtc"
            wallet.live_orders.refresh(order)  # it holds margin or balance from now on
            self._take(wallet, order, now_ms, events)
            if order.sz > 0 and order.tif == "Ioc":
                self._finish(wallet, order, "canceled", now_ms, events)
            elif order.sz > 0:
                self._rest(wallet, order)

    def _run_schedule(self, user: str, now_ms: int, events: Events) -> None:
        del self._schedules[user]
        wallet = self._accounts.wallet(user)
        if wallet is None:
            return
        day, count = self._triggered_today.get(user, (now_ms // DAY_MS, 0))
        if day != now_ms // DAY_MS:
            day, count = now_ms // DAY_MS, 0
        self._triggered_today[user] = (day, count + 1)
        for order in list(wallet.live_orders.values()):
            self._finish(wallet, order, "scheduledCancel", now_ms, events)

    # -- bookkeeping -----------------------------------------------------------
    def _fresh_tick(self) -> None:
        """Synthetic liquidity taken in an earlier tick is back: the book was rebuilt."""
        if self._taken_tick != self._market.now_ms:
            self._taken.clear()
            self._taken_tick = self._market.now_ms

    def _resting_entries(
        self, coin: str, side: Side | None, at_ms: int | None = None
    ) -> Iterator[tuple[Wallet, LiveOrder]]:
        """The resting orders of ``coin`` (one ``side``), those on the book at ``at_ms``."""
        for user, oid in list(self._resting.get(coin, {}).values()):
            wallet = self._accounts.wallet(user)
            order = None if wallet is None else wallet.live_orders.get(oid)
            if wallet is None or order is None:
                continue
            if at_ms is not None and order.timestamp > at_ms:
                continue
            if side is None or order.side == side:
                yield wallet, order

    def _resting_orders(self, coin: str, side: Side) -> Iterator[_Placed]:
        for wallet, order in self._resting_entries(coin, side):
            yield _Placed(wallet.address, order.limit_px, order.sz)

    def _trigger_entries(self, coin: str, at_ms: int) -> Iterator[tuple[Wallet, LiveOrder]]:
        for user, oid in list(self._triggers.get(coin, {}).values()):
            wallet = self._accounts.wallet(user)
            order = None if wallet is None else wallet.live_orders.get(oid)
            if wallet is not None and order is not None and order.timestamp <= at_ms:
                yield wallet, order


@dataclass(frozen=True, slots=True)
class _Placed:
    address: str
    limit_px: Decimal
    sz: Decimal


def _counted(
    wallet: Wallet, order: LiveOrder | None
) -> tuple[tuple[str, Side], Decimal, Decimal] | None:
    """What ``order`` adds to ``wallet``'s totals, if anything: (coin, side), size,
    notional."""
    return None if order is None else wallet.live_orders.counted(order.oid)


def _places(leverage: int) -> int:
    """How many decimal places x / leverage may have beyond x's (-1: unbounded)."""
    twos = fives = 0
    while leverage % 2 == 0:
        leverage, twos = leverage // 2, twos + 1
    while leverage % 5 == 0:
        leverage, fives = leverage // 5, fives + 1
    return max(twos, fives) if leverage == 1 else -1


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number
    return exponent


def _unrounded(total: Decimal, lowest: int) -> bool:
    """Whether adding up positive terms to ``total``, none with a digit below
    ``10**lowest``, rounded nothing at the current context's precision: every term
    and partial sum spans at most the digits from ``total``'s first to ``lowest``
    (with two to spare for a product that a leverage then divides)."""
    return total == 0 or total.adjusted() - lowest + 3 <= decimal.getcontext().prec


def _crosses(order: LiveOrder, px: Decimal) -> bool:
    return px <= order.limit_px if order.side == "B" else px >= order.limit_px


def _resting(order: LiveOrder) -> Status:
    body: dict[str, object] = {"oid": order.oid}
    if order.cloid is not None:
        body["cloid"] = order.cloid
    return {"resting": body}


def _filled(order: LiveOrder, size: Decimal, notional: Decimal) -> Status:
    body: dict[str, object] = {
        "totalSz": num(size),
        "avgPx": num((notional / size).quantize(PX_PRECISION).normalize()),
        "oid": order.oid,
    }
    if order.cloid is not None:
        body["cloid"] = order.cloid
    return {"filled": body}

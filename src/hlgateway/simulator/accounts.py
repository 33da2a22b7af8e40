"""Sans-I/O, deterministic order flow for the wallets someone is watching.

Each tracked wallet places, partly fills, fills and cancels orders at random
times drawn from its own RNG (derived from the seed and the address), and is
forced to trade before ``max_fill_gap_ms`` elapses without a fill. It trades
perps and, through ``spot``, spot pairs. Positions, realised PnL, fees and
funding (every ``funding_interval_ms``, an hour like Hyperliquid's) move the
account, and so do the deposits, withdrawals and occasional liquidations that
``cashflows`` schedules from a second RNG of the wallet's. Every order status
transition, fill, funding payment and ledger update is kept per wallet: REST
snapshots are served from it and tests use it as the ledger of what the
simulator actually emitted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Literal

from hlgateway.simulator import cashflows
from hlgateway.simulator.cashflows import CashflowSchedule, FundingPayment, LedgerUpdate
from hlgateway.simulator.listing import Listing
from hlgateway.simulator.market import MarketModel, Side
from hlgateway.simulator.rng import derive_hash, derive_int, derive_rng
from hlgateway.simulator.spot import SpotHolding, sellable, settle

OrderStatus = Literal[
    "open",
    "filled",
    "canceled",
    # Orders placed through /exchange (simulator/matching.py) reach these too.
    "triggered",
    "selfTradeCanceled",
    "reduceOnlyCanceled",
    "scheduledCancel",
]

ZERO = Decimal(0)
USD = Decimal("1e-6")
PX_PRECISION = Decimal("1e-8")
MAKER_FEE = Decimal("0.00015")
TAKER_FEE = Decimal("0.00045")
HOUR_MS = 3_600_000
# Hyperliquid serves at most 10000 recent fills; keep a bit more history than that.
MAX_FILLS = 10_000
MAX_ORDER_LOG = 20_000
MAX_ORDERS = 10_000
# Above this notional a wallet mostly trades its position back down.
POSITION_CAP = Decimal(5_000)
MAX_CASHFLOWS = 10_000
# Share of fills that carry a builder fee (orders sent through a builder's frontend),
# and that fee's rate on the notional.
BUILDER_SHARE = 0.1
BUILDER_FEE = Decimal("0.0001")
DEFAULT_MANUAL_LEVERAGE = 20  # Hyperliquid's default cross leverage (capped per coin)


@dataclass(frozen=True)
class OrderUpdate:
    """One status transition of one order, as orderUpdates reports it."""

    coin: str
    side: Side
    limit_px: Decimal
    sz: Decimal  # remaining size at status_timestamp
    oid: int
    timestamp: int  # placement time
    orig_sz: Decimal
    cloid: str | None
    status: OrderStatus
    status_timestamp: int
    # How the order was placed (the demo flow places plain Gtc limit orders).
    tif: str | None = "Gtc"  # None: a trigger order
    reduce_only: bool = False
    trigger_px: Decimal | None = None
    trigger_condition: str = "N/A"  # Hyperliquid's text, e.g. "Price below 3000"
    is_market: bool = False  # a trigger order that executes as a market order


@dataclass(frozen=True)
class Fill:
    coin: str
    px: Decimal
    sz: Decimal
    side: Side
    time: int
    start_position: Decimal
    dir: str
    closed_pnl: Decimal
    hash: str
    oid: int
    crossed: bool
    fee: Decimal
    tid: int
    fee_token: str = "USDC"
    builder_fee: Decimal | None = None
    liquidation: Mapping[str, Any] | None = None  # {liquidatedUser, markPx, method}
    twap_id: int | None = None


@dataclass(frozen=True)
class WalletActivity:
    """Everything one wallet emitted during one ``step``, in emission order."""

    user: str
    order_updates: tuple[OrderUpdate, ...]
    fills: tuple[Fill, ...]
    fundings: tuple[FundingPayment, ...] = ()
    ledger: tuple[LedgerUpdate, ...] = ()
    # TWAP status changes (activated, finished, terminated), each its twapHistory row as
    # it was then (the TWAP itself goes on changing).
    twaps: tuple[Mapping[str, Any], ...] = ()


@dataclass
class Emitted:
    """What one wallet emits while events run: collected into a ``WalletActivity``."""

    updates: list[OrderUpdate] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    fundings: list[FundingPayment] = field(default_factory=list)
    ledger: list[LedgerUpdate] = field(default_factory=list)
    twaps: list[Mapping[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.updates or self.fills or self.fundings or self.ledger or self.twaps)

    def activity(self, user: str) -> WalletActivity:
        return WalletActivity(
            user,
            tuple(self.updates),
            tuple(self.fills),
            tuple(self.fundings),
            tuple(self.ledger),
            tuple(self.twaps),
        )


@dataclass(frozen=True)
class PositionView:
    coin: str
    szi: Decimal
    leverage: int
    entry_px: Decimal
    position_value: Decimal
    unrealized_pnl: Decimal
    return_on_equity: Decimal
    liquidation_px: Decimal | None
    margin_used: Decimal
    max_leverage: int
    cum_funding_all_time: Decimal
    cum_funding_since_open: Decimal
    cum_funding_since_change: Decimal
    isolated_raw_usd: Decimal | None = None  # None: a cross position


@dataclass(frozen=True)
class AccountView:
    """A clearinghouseState snapshot with exact numbers; wire.py formats it."""

    account_value: Decimal
    total_ntl_pos: Decimal
    total_raw_usd: Decimal
    total_margin_used: Decimal
    cross_maintenance_margin_used: Decimal
    withdrawable: Decimal
    positions: tuple[PositionView, ...]
    time: int


@dataclass
class LiveOrder:
    oid: int
    coin: str
    side: Side
    limit_px: Decimal
    orig_sz: Decimal
    sz: Decimal
    timestamp: int
    cloid: str | None
    tif: str | None = "Gtc"
    reduce_only: bool = False
    trigger_px: Decimal | None = None
    trigger_condition: str = "N/A"
    is_market: bool = False

    def update(self, status: OrderStatus, at_ms: int) -> OrderUpdate:
        return OrderUpdate(
            coin=self.coin,
            side=self.side,
            limit_px=self.limit_px,
            sz=self.sz,
            oid=self.oid,
            timestamp=self.timestamp,
            orig_sz=self.orig_sz,
            cloid=self.cloid,
            status=status,
            status_timestamp=at_ms,
            tif=self.tif,
            reduce_only=self.reduce_only,
            trigger_px=self.trigger_px,
            trigger_condition=self.trigger_condition,
            is_market=self.is_market,
        )


# Totals of held amounts are kept exact: no rounding however many orders come and go.
EXACT = Context(prec=200)


@dataclass
class Held:
    """What one coin's active orders (not waiting triggers) of one side hold, exactly."""

    sz: Decimal = ZERO  # their remaining sizes
    notional: Decimal = ZERO  # remaining size x limit price, reduce-only orders left out
    orders: int = 0


class LiveOrders(dict[int, LiveOrder]):
    """A wallet's open orders by oid, in placement order, with per-coin, per-side totals
    of what the active ones hold (``held``).

    Margin and spot-balance checks read the totals instead of walking every order: a
    grid bot keeps hundreds resting, and each of its posts is checked. Everything that
    changes an order's ``sz`` or ``tif`` while it is here calls ``refresh``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[tuple[str, Side], Held] = {}
        # oid -> (coin, side), size and notional it was counted with
        self._counted: dict[int, tuple[tuple[str, Side], Decimal, Decimal]] = {}

    def __setitem__(self, oid: int, order: LiveOrder) -> None:
        self._uncount(oid)
        super().__setitem__(oid, order)
        self._count(order)

    def __delitem__(self, oid: int) -> None:
        super().__delitem__(oid)
        self._uncount(oid)

    def pop(self, oid: int, default: LiveOrder | None = None) -> LiveOrder | None:  # type: ignore[override]
        order = super().pop(oid, default)
        self._uncount(oid)
        return order

    def _uncounted(self, *args: object, **kwargs: object) -> Any:
        raise TypeError("LiveOrders changes only through [oid] =, del and pop: they count")

    setdefault = update = popitem = clear = __ior__ = _uncounted

    def counted(self, oid: int) -> tuple[tuple[str, Side], Decimal, Decimal] | None:
        """Where order ``oid`` is counted in ``held`` and the size and notional it adds
        there, if it is counted."""
        return self._counted.get(oid)

    def refresh(self, order: LiveOrder) -> None:
        """``order``'s size or tif changed: count what it holds now."""
        self._uncount(order.oid)
        if super().get(order.oid) is order:
            self._count(order)

    def _count(self, order: LiveOrder) -> None:
        if order.tif is None:  # a trigger order holds nothing until it triggers
            return
        key = (order.coin, order.side)
        notional = ZERO if order.reduce_only else EXACT.multiply(order.sz, order.limit_px)
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = Held()
        held.sz = EXACT.add(held.sz, order.sz)
        held.notional = EXACT.add(held.notional, notional)
        held.orders += 1
        self._counted[order.oid] = (key, order.sz, notional)

    def _uncount(self, oid: int) -> None:
        counted = self._counted.pop(oid, None)
        if counted is None:
            return
        key, sz, notional = counted
        held = self.held[key]
        held.orders -= 1
        if held.orders == 0:
            del self.held[key]  # the totals list only coins with orders
            return
        held.sz = EXACT.subtract(held.sz, sz)
        held.notional = EXACT.subtract(held.notional, notional)


@dataclass
class _Position:
    szi: Decimal = ZERO
    entry_px: Decimal = ZERO
    since_open: Decimal = ZERO
    since_change: Decimal = ZERO


@dataclass
class Wallet:
    """One wallet's state and history. Read it; only the engine mutates it."""

    address: str
    rng: random.Random
    balance: Decimal
    leverage: int
    favourites: tuple[str, ...]
    next_tid: int
    cashflows: CashflowSchedule
    tracked: bool = False
    # Trades only through /exchange (a funded account with a key): no invented flow.
    manual: bool = False
    leverages: dict[str, int] = field(default_factory=dict)  # per coin (updateLeverage)
    # Coins in isolated mode -> the USDC set aside as their position's margin (part of
    # `balance`, not free for anything else; 0 while no position is open).
    isolated: dict[str, Decimal] = field(default_factory=dict)
    twap_fills: list[Fill] = field(default_factory=list)  # userTwapSliceFills, oldest first
    tracked_since_ms: int = 0  # first tracking; earlier events are invented pre-history
    next_event_ms: int = 0
    last_fill_ms: int = 0
    funding_hour: int = 0
    positions: dict[str, _Position] = field(default_factory=dict)
    spot: dict[str, SpotHolding] = field(default_factory=dict)  # by pair coin
    funding_all_time: dict[str, Decimal] = field(default_factory=dict)
    funding_log: list[FundingPayment] = field(default_factory=list)
    ledger_log: list[LedgerUpdate] = field(default_factory=list)
    live_orders: LiveOrders = field(default_factory=LiveOrders)
    fill_log: list[Fill] = field(default_factory=list)
    order_log: list[OrderUpdate] = field(default_factory=list)
    latest: dict[int, OrderUpdate] = field(default_factory=dict)
    cloids: dict[str, int] = field(default_factory=dict)

    def fills(self) -> list[Fill]:
        """Fill history, oldest first."""
        return list(self.fill_log)

    def fundings(self) -> list[FundingPayment]:
        """Funding payments, oldest first."""
        return list(self.funding_log)

    def ledger_updates(self) -> list[LedgerUpdate]:
        """Deposits, withdrawals and liquidations, oldest first."""
        return list(self.ledger_log)

    def order_history(self) -> list[OrderUpdate]:
        """Every status transition emitted, oldest first."""
        return list(self.order_log)

    def latest_orders(self) -> list[OrderUpdate]:
        """The current status of every remembered order, in placement order."""
        return list(self.latest.values())

    def open_orders(self) -> list[OrderUpdate]:
        return [self.latest[oid] for oid in self.live_orders]

    def leverage_for(self, coin: str, max_leverage: int) -> int:
        return min(self.leverages.get(coin, self.leverage), max_leverage)

    def find_order(self, oid_or_cloid: int | str) -> OrderUpdate | None:
        if isinstance(oid_or_cloid, str):
            oid = self.cloids.get(oid_or_cloid.lower())
            return None if oid is None else self.latest.get(oid)
        return self.latest.get(oid_or_cloid)


class AccountsEngine:
    """Drives every tracked wallet against a ``MarketModel``."""

    def __init__(
        self,
        market: MarketModel,
        *,
        order_interval_ms: int = 2_500,
        max_fill_gap_ms: int = 10_000,
        history_ms: int = 30_000,
        max_open_orders: int = 4,
        listing: Listing | None = None,
        funding_interval_ms: int = HOUR_MS,
        transfer_interval_ms: int = 120_000,
        liquidation_interval_ms: int = 900_000,
    ) -> None:
        if order_interval_ms <= 0 or max_fill_gap_ms <= 0:
            raise ValueError("order_interval_ms and max_fill_gap_ms must be positive")
        if min(funding_interval_ms, transfer_interval_ms, liquidation_interval_ms) <= 0:
            raise ValueError("funding, transfer and liquidation intervals must be positive")
        if history_ms < 0 or max_open_orders < 1:
            raise ValueError("history_ms must be >= 0 and max_open_orders >= 1")
        self._market = market
        self._seed = market.seed
        self._order_interval_ms = order_interval_ms
        # Fire the forced fill a little early: delivery happens on the next clock
        # tick, and the promise is about when clients *see* fills.
        slack = min(max_fill_gap_ms // 5, 1_000)
        self._forced_gap_ms = max(1, max_fill_gap_ms - slack)
        self._history_ms = history_ms
        self._max_open_orders = max_open_orders
        self._listing = listing if listing is not None else Listing(market.coins, (), (), ())
        self._funding_ms = funding_interval_ms
        self._transfer_ms = transfer_interval_ms
        self._liquidation_ms = liquidation_interval_ms
        self._wallets: dict[str, Wallet] = {}
        # Global counter: oids are unique across wallets, like on Hyperliquid. Its start
        # (and each wallet's first tid) depends on the model epoch too: a simulator run
        # again with the same seed (`make serve` after Ctrl-C) is another exchange
        # whose oids and tids are not the last run's, or a gateway that kept what it
        # delivered then (its state directory) would drop the new run's fills as seen.
        self._next_oid = 10**10 + derive_int(self._seed, "oid", market.start_ms, bits=32)

    # -- tracking ------------------------------------------------------------
    def wallet(self, user: str) -> Wallet | None:
        return self._wallets.get(user.lower())

    def tracked_users(self) -> list[str]:
        return [w.address for w in self._wallets.values() if w.tracked]

    def track(self, user: str, now_ms: int) -> Wallet:
        """Start generating flow for ``user``; the first time, invent some history."""
        address = user.lower()
        wallet = self._wallets.get(address)
        if wallet is not None and wallet.manual:
            wallet.tracked = True  # watched, but it trades only what its owner sends
            return wallet
        if wallet is not None:
            if not wallet.tracked:
                wallet.tracked = True
                wallet.next_event_ms = now_ms + self._interval(wallet)
                wallet.last_fill_ms = now_ms
                wallet.funding_hour = now_ms // self._funding_ms
                wallet.cashflows.restart(now_ms)
            return wallet
        wallet = self._new_wallet(address)
        self._wallets[address] = wallet
        start = now_ms - self._history_ms
        wallet.tracked = True
        wallet.tracked_since_ms = now_ms
        wallet.next_event_ms = start + self._interval(wallet)
        wallet.last_fill_ms = start
        wallet.funding_hour = now_ms // self._funding_ms
        wallet.cashflows.restart(start)
        # Pre-history goes straight into the ledger; it is what snapshots replay.
        while (due := self._due_ms(wallet)) <= now_ms:
            self._run_event(wallet, due, Emitted())
        return wallet

    def fund(self, user: str, usd: Decimal, now_ms: int) -> Wallet:
        """A manual account (one that trades through /exchange) holding ``usd`` more.

        An unknown address becomes a manual account; a demo wallet that gets funds
        keeps its flow.
        """
        address = user.lower()
        wallet = self._wallets.get(address)
        if wallet is None:
            wallet = self._new_wallet(address)
            wallet.balance = ZERO
            wallet.leverage = DEFAULT_MANUAL_LEVERAGE
            wallet.manual = True
            wallet.tracked_since_ms = now_ms
            wallet.funding_hour = now_ms // self._funding_ms
            self._wallets[address] = wallet
        wallet.balance += usd
        return wallet

    def manual_wallets(self) -> list[Wallet]:
        return [w for w in self._wallets.values() if w.manual]

    def next_oid(self) -> int:
        oid = self._next_oid
        self._next_oid += 1
        return oid

    def untrack(self, user: str) -> None:
        wallet = self._wallets.get(user.lower())
        if wallet is not None:
            wallet.tracked = False

    # -- clock ---------------------------------------------------------------
    def step(self, now_ms: int) -> list[WalletActivity]:
        """Run every event due at or before ``now_ms``, in (time, address) order."""
        pending: dict[str, Emitted] = {}
        tracked = [w for w in self._wallets.values() if w.tracked and not w.manual]
        while True:
            due = [(self._due_ms(w), w.address, w) for w in tracked]
            due = [item for item in due if item[0] <= now_ms]
            if not due:
                break
            at_ms, address, wallet = min(due, key=lambda item: (item[0], item[1]))
            self._run_event(wallet, at_ms, pending.setdefault(address, Emitted()))
        for wallet in self._wallets.values():
            if wallet.tracked or wallet.manual:
                self._accrue_funding(wallet, now_ms, pending.setdefault(wallet.address, Emitted()))
        return [out.activity(user) for user, out in pending.items() if out]

    # -- account view --------------------------------------------------------
    def account_view(self, user: str, now_ms: int, dex: str = "") -> AccountView:
        """The wallet's clearinghouse on one perp dex (``""``: the main one)."""
        wallet = self._wallets.get(user.lower())
        if wallet is None:
            return AccountView(ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, (), now_ms)
        market = self._market
        rows: list[tuple[str, _Position, Decimal, Decimal, Decimal, int, int]] = []
        for coin, pos in wallet.positions.items():
            spec = market.spec(coin)
            if pos.szi == 0 or spec is None or self._listing.dex_of(coin) != dex:
                continue
            mark = market.mark_px(coin)
            value = abs(pos.szi) * mark
            upnl = pos.szi * (mark - pos.entry_px)
            leverage = wallet.leverage_for(coin, spec.max_leverage)
            rows.append((coin, pos, mark, value, upnl, leverage, spec.max_leverage))
        # Builder dexes hold no USDC of the wallet's here: their margin is their own.
        balance = wallet.balance if dex == "" else ZERO
        account_value = balance + sum((row[4] for row in rows), ZERO)
        cross = [row for row in rows if row[0] not in wallet.isolated]
        # An isolated position's margin is its own USDC plus its unrealized pnl; the
        # cross account (maintenance, liquidation) is what is left.
        isolated_equity = sum(
            (wallet.isolated[row[0]] + row[4] for row in rows if row[0] in wallet.isolated), ZERO
        )
        cross_value = account_value - isolated_equity
        maintenance = sum((row[3] / row[6] / 2 for row in cross), ZERO)
        margin_total = sum((row[3] / row[5] for row in cross), ZERO) + isolated_equity
        positions: list[PositionView] = []
        for coin, pos, mark, value, upnl, leverage, max_leverage in rows:
            direction = 1 if pos.szi > 0 else -1
            iso_margin = wallet.isolated.get(coin)
            if iso_margin is None:
                liq = mark - direction * (cross_value - maintenance) / abs(pos.szi)
                used = value / leverage
            else:
                # Liquidated when margin + szi * (px - entry) falls to the maintenance
                # margin at px (half the initial margin at max leverage).
                k = Decimal(1) / (2 * max_leverage)
                liq = (direction * pos.entry_px - iso_margin / abs(pos.szi)) / (direction - k)
                used = iso_margin + upnl
            initial = abs(pos.szi) * pos.entry_px / leverage
            positions.append(
                PositionView(
                    coin=coin,
                    szi=pos.szi,
                    leverage=leverage,
                    entry_px=pos.entry_px.quantize(PX_PRECISION),
                    position_value=value.quantize(USD),
                    unrealized_pnl=upnl.quantize(USD),
                    return_on_equity=(upnl / initial if initial else ZERO).quantize(USD),
                    liquidation_px=liq.quantize(PX_PRECISION) if liq > 0 else None,
                    margin_used=used.quantize(USD),
                    max_leverage=max_leverage,
                    isolated_raw_usd=None
                    if iso_margin is None
                    else (iso_margin - pos.szi * pos.entry_px).quantize(USD),
                    cum_funding_all_time=wallet.funding_all_time.get(coin, ZERO).quantize(USD),
                    cum_funding_since_open=pos.since_open.quantize(USD),
                    cum_funding_since_change=pos.since_change.quantize(USD),
                )
            )
        total_ntl = sum((row[3] for row in rows), ZERO)
        exposure = sum((row[1].szi * row[2] for row in rows), ZERO)
        return AccountView(
            account_value=account_value.quantize(USD),
            total_ntl_pos=total_ntl.quantize(USD),
            total_raw_usd=(account_value - exposure).quantize(USD),
            total_margin_used=margin_total.quantize(USD),
            cross_maintenance_margin_used=maintenance.quantize(USD),
            withdrawable=max(ZERO, account_value - margin_total).quantize(USD),
            positions=tuple(positions),
            time=now_ms,
        )

    # -- internals -----------------------------------------------------------
    def _new_wallet(self, address: str) -> Wallet:
        rng = derive_rng(self._seed, "wallet", address)
        names = [spec.name for spec in self._listing.perps]
        favourites = rng.sample(names, min(3, len(names)))
        # A spot pair (and a builder-dex perp) too, drawn apart so that the perp
        # flow stays what it was for a given seed and address.
        extra = derive_rng(self._seed, "wallet-markets", address)
        if self._listing.pairs:
            favourites.append(extra.choice(self._listing.pairs).coin)
        dex_perps = [spec.name for dex in self._listing.dexes for spec in dex.perps]
        if dex_perps:
            favourites.append(extra.choice(dex_perps))
        schedule = CashflowSchedule(
            derive_rng(self._seed, "cashflows", address), self._transfer_ms, self._liquidation_ms
        )
        return Wallet(
            address=address,
            rng=rng,
            balance=Decimal(rng.randint(10_000, 100_000)),
            leverage=rng.choice((3, 5, 10, 20)),
            favourites=tuple(favourites),
            next_tid=10**14
            + derive_int(self._seed, "fill-tid", address, self._market.start_ms, bits=46),
            cashflows=schedule,
        )

    def _interval(self, wallet: Wallet) -> int:
        return max(20, round(wallet.rng.expovariate(1.0 / self._order_interval_ms)))

    def _due_ms(self, wallet: Wallet) -> int:
        return min(
            wallet.next_event_ms,
            wallet.last_fill_ms + self._forced_gap_ms,
            wallet.cashflows.due_ms,
        )

    def _run_event(self, wallet: Wallet, at_ms: int, out: Emitted) -> None:
        if at_ms >= wallet.cashflows.next_transfer_ms:
            self._transfer(wallet, at_ms, out)
            return
        if at_ms >= wallet.cashflows.next_liquidation_ms:
            self._liquidate(wallet, at_ms, out)
            return
        updates, fills = out.updates, out.fills
        if at_ms >= wallet.last_fill_ms + self._forced_gap_ms:
            self._forced_fill(wallet, at_ms, updates, fills)
            return
        wallet.next_event_ms = at_ms + self._interval(wallet)
        rng = wallet.rng
        roll = rng.random()
        orders = list(wallet.live_orders.values())
        if not orders or (roll < 0.4 and len(orders) < self._max_open_orders):
            self._place(wallet, at_ms, updates, marketable=False)
            return
        order = rng.choice(orders)
        lots = int(order.sz / self._lot(order.coin))
        if roll < 0.6 and lots >= 2:
            size = self._lot(order.coin) * rng.randint(1, lots - 1)
        elif roll < 0.85:
            size = order.sz
        else:
            self._cancel(wallet, order, at_ms, updates)
            return
        if not self._executable(wallet, order, size):
            self._cancel(wallet, order, at_ms, updates)
            return
        self._emit_fill(wallet, *self._fill(wallet, order, size, at_ms), updates, fills)

    def _cancel(
        self, wallet: Wallet, order: LiveOrder, at_ms: int, updates: list[OrderUpdate]
    ) -> None:
        del wallet.live_orders[order.oid]
        self._record(wallet, order.update("canceled", at_ms), updates)

    def _executable(self, wallet: Wallet, order: LiveOrder, size: Decimal) -> bool:
        """A spot sell needs the tokens: the balance may have gone since it was placed."""
        pair = self._listing.pair(order.coin)
        if pair is None or order.side == "B":
            return True
        return sellable(wallet.spot.get(order.coin), pair) >= size

    def _forced_fill(
        self, wallet: Wallet, at_ms: int, updates: list[OrderUpdate], fills: list[Fill]
    ) -> None:
        rng = wallet.rng
        if wallet.live_orders:
            order = next(iter(wallet.live_orders.values()))  # the oldest resting order
            lots = int(order.sz / self._lot(order.coin))
            size = order.sz
            if lots >= 2 and rng.random() < 0.4:
                size = self._lot(order.coin) * rng.randint(1, lots - 1)
            if not self._executable(wallet, order, size):
                self._cancel(wallet, order, at_ms, updates)
                self._forced_fill(wallet, at_ms, updates, fills)
                return
            result = self._fill(wallet, order, size, at_ms)
        else:
            # Nothing resting: send a marketable order that fills at once as taker.
            order = self._place(wallet, at_ms, updates, marketable=True)
            result = self._fill(wallet, order, order.sz, at_ms, crossed=True)
        self._emit_fill(wallet, *result, updates, fills)

    def _lot(self, coin: str) -> Decimal:
        spec = self._market.spec(coin)
        assert spec is not None  # orders only ever use listed coins
        return spec.lot

    def _place(
        self, wallet: Wallet, at_ms: int, updates: list[OrderUpdate], *, marketable: bool
    ) -> LiveOrder:
        rng = wallet.rng
        market = self._market
        coin = rng.choice(wallet.favourites)
        spec = market.spec(coin)
        assert spec is not None
        side = self._choose_side(wallet, coin)
        bid, ask = market.best_bid_ask(coin)
        if marketable:
            px = ask if side == "B" else bid
        else:
            away = spec.tick * rng.randint(0, 4)
            px = bid - away if side == "B" else ask + away
            if px <= 0:
                px = bid
        notional = Decimal(rng.randint(50, 2_000))
        lots = max(2, int(notional / (px * spec.lot)))
        size = spec.lot * lots
        pair = self._listing.pair(coin)
        if pair is not None and side == "A":
            size = min(size, sellable(wallet.spot.get(coin), pair))
        cloid = f"0x{rng.getrandbits(128):032x}" if rng.random() < 0.5 else None
        order = LiveOrder(
            oid=self._next_oid,
            coin=coin,
            side=side,
            limit_px=px,
            orig_sz=size,
            sz=size,
            timestamp=at_ms,
            cloid=cloid,
        )
        self._next_oid += 1
        wallet.live_orders[order.oid] = order
        if cloid is not None:
            wallet.cloids[cloid] = order.oid
        self._record(wallet, order.update("open", at_ms), updates)
        return order

    def _choose_side(self, wallet: Wallet, coin: str) -> Side:
        rng = wallet.rng
        pair = self._listing.pair(coin)
        if pair is not None:
            # Spot: sell only what the wallet holds (two lots at least), else buy.
            lot = Decimal(1).scaleb(-pair.base.sz_decimals)
            can_sell = sellable(wallet.spot.get(coin), pair) >= 2 * lot
            return "A" if can_sell and rng.random() < 0.5 else "B"
        pos = wallet.positions.get(coin)
        if pos is not None and abs(pos.szi) * self._market.mark_px(coin) > POSITION_CAP:
            reducing: Side = "A" if pos.szi > 0 else "B"
            if rng.random() < 0.85:
                return reducing
        return "B" if rng.random() < 0.5 else "A"

    def execute(
        self,
        wallet: Wallet,
        order: LiveOrder,
        size: Decimal,
        px: Decimal,
        at_ms: int,
        crossed: bool,
    ) -> tuple[OrderUpdate, Fill]:
        """Execute ``size`` of ``order`` at ``px``: position, fees and balance move."""
        return self._fill(wallet, order, size, at_ms, crossed=crossed, px=px)

    def record(self, wallet: Wallet, update: OrderUpdate, updates: list[OrderUpdate]) -> None:
        """Keep ``update`` in ``wallet``'s history and append it to ``updates``."""
        self._record(wallet, update, updates)

    def keep_fill(self, wallet: Wallet, fill: Fill, fills: list[Fill]) -> None:
        """Keep ``fill`` in ``wallet``'s history and append it to ``fills``."""
        wallet.fill_log.append(fill)
        if len(wallet.fill_log) > MAX_FILLS * 11 // 10:
            del wallet.fill_log[: len(wallet.fill_log) - MAX_FILLS]
        fills.append(fill)

    def _fill(
        self,
        wallet: Wallet,
        order: LiveOrder,
        size: Decimal,
        at_ms: int,
        *,
        crossed: bool = False,
        px: Decimal | None = None,
        liquidation: Mapping[str, Any] | None = None,
    ) -> tuple[OrderUpdate, Fill]:
        """Execute ``size`` of ``order`` at ``px`` (default: its limit price)."""
        px = order.limit_px if px is None else px
        pair = self._listing.pair(order.coin)
        if pair is not None:
            return self._spot_fill(wallet, order, size, px, at_ms, crossed)
        pos = wallet.positions.setdefault(order.coin, _Position())
        start = pos.szi
        signed = size if order.side == "B" else -size
        new = start + signed
        closed = ZERO
        if start != 0 and (start > 0) != (signed > 0):
            closing = min(abs(signed), abs(start))
            closed = (closing * (px - pos.entry_px) * (1 if start > 0 else -1)).quantize(USD)
        if new == 0:
            pos.entry_px = ZERO
        elif start == 0 or (start > 0) != (new > 0):
            pos.entry_px = px
            pos.since_open = ZERO
        elif abs(new) > abs(start):
            pos.entry_px = ((abs(start) * pos.entry_px + size * px) / abs(new)).quantize(
                PX_PRECISION
            )
        pos.szi = new
        pos.since_change = ZERO
        if order.coin in wallet.isolated:
            self._move_isolated(wallet, order.coin, start, new, px)
        fee = (px * size * (TAKER_FEE if crossed else MAKER_FEE)).quantize(USD)
        tid = wallet.next_tid
        wallet.next_tid += wallet.rng.randint(1, 50)
        builder_fee = self._builder_fee(wallet, tid, px * size)
        wallet.balance += closed - fee - (builder_fee or ZERO)
        fill = Fill(
            coin=order.coin,
            px=px,
            sz=size,
            side=order.side,
            time=at_ms,
            start_position=start,
            dir=_direction(start, new, order.side),
            closed_pnl=closed,
            hash=derive_hash(self._seed, "fill", wallet.address, tid),
            oid=order.oid,
            crossed=crossed,
            fee=fee,
            tid=tid,
            builder_fee=builder_fee,
            liquidation=liquidation,
        )
        return self._filled(wallet, order, size, at_ms), fill

    def _move_isolated(
        self, wallet: Wallet, coin: str, start: Decimal, new: Decimal, px: Decimal
    ) -> None:
        """An isolated position's margin follows its size: a reduction releases its
        share, an opening or increase sets aside its initial margin at the fill price."""
        margin = wallet.isolated[coin]
        kept = abs(new) if start != 0 and (start > 0) == (new > 0) else ZERO
        if start != 0:
            margin = margin * min(kept, abs(start)) / abs(start)
        opened = abs(new) - min(kept, abs(start))
        if opened > 0:
            spec = self._market.spec(coin)
            max_leverage = spec.max_leverage if spec is not None else 1
            margin += opened * px / wallet.leverage_for(coin, max_leverage)
        wallet.isolated[coin] = margin.quantize(USD) if new != 0 else ZERO

    def _spot_fill(
        self,
        wallet: Wallet,
        order: LiveOrder,
        size: Decimal,
        px: Decimal,
        at_ms: int,
        crossed: bool,
    ) -> tuple[OrderUpdate, Fill]:
        pair = self._listing.pair(order.coin)
        assert pair is not None
        holding = wallet.spot.setdefault(order.coin, SpotHolding())
        rate = TAKER_FEE if crossed else MAKER_FEE
        done = settle(holding, pair, order.side, px, size, rate)
        tid = wallet.next_tid
        wallet.next_tid += wallet.rng.randint(1, 50)
        builder_fee = self._builder_fee(wallet, tid, px * size)
        wallet.balance += done.quote_delta - (builder_fee or ZERO)
        fill = Fill(
            coin=order.coin,
            px=px,
            sz=size,
            side=order.side,
            time=at_ms,
            start_position=done.start,
            dir=done.direction,
            closed_pnl=done.closed_pnl,
            hash=derive_hash(self._seed, "fill", wallet.address, tid),
            oid=order.oid,
            crossed=crossed,
            fee=done.fee,
            tid=tid,
            fee_token=done.fee_token,
            builder_fee=builder_fee,
        )
        return self._filled(wallet, order, size, at_ms), fill

    def _builder_fee(self, wallet: Wallet, tid: int, notional: Decimal) -> Decimal | None:
        # Drawn from the tid, not the wallet's RNG: the order flow stays what it was.
        draw = derive_int(self._seed, "builder", wallet.address, tid, bits=16)
        if draw >= BUILDER_SHARE * 65_536:
            return None
        return (notional * BUILDER_FEE).quantize(USD)

    @staticmethod
    def _filled(wallet: Wallet, order: LiveOrder, size: Decimal, at_ms: int) -> OrderUpdate:
        order.sz -= size
        status: OrderStatus = "open"
        if order.sz == 0:
            status = "filled"
            del wallet.live_orders[order.oid]
        else:
            wallet.live_orders.refresh(order)
        wallet.last_fill_ms = at_ms
        return order.update(status, at_ms)

    def _emit_fill(
        self,
        wallet: Wallet,
        update: OrderUpdate,
        fill: Fill,
        updates: list[OrderUpdate],
        fills: list[Fill],
    ) -> None:
        self._record(wallet, update, updates)
        self.keep_fill(wallet, fill, fills)

    @staticmethod
    def _record(wallet: Wallet, update: OrderUpdate, updates: list[OrderUpdate]) -> None:
        wallet.order_log.append(update)
        if len(wallet.order_log) > MAX_ORDER_LOG * 11 // 10:
            del wallet.order_log[: len(wallet.order_log) - MAX_ORDER_LOG]
        wallet.latest[update.oid] = update
        if len(wallet.latest) > MAX_ORDERS * 11 // 10:
            _forget_old_orders(wallet)
        updates.append(update)

    def _accrue_funding(self, wallet: Wallet, now_ms: int, out: Emitted) -> None:
        """Hyperliquid settles funding on the hour (``funding_interval_ms``); so do we."""
        hour = now_ms // self._funding_ms
        if hour <= wallet.funding_hour:
            return
        wallet.funding_hour = hour
        market = self._market
        for coin, pos in wallet.positions.items():
            if pos.szi == 0:
                continue
            rate = market.funding_rate(coin)
            payment = (pos.szi * market.mark_px(coin) * rate).quantize(USD)
            wallet.balance -= payment
            if coin in wallet.isolated:
                # As on Hyperliquid, an isolated position pays (or receives) its funding
                # from its own margin, not from the cross account: the margin is part of
                # `balance`, so both move and the cross account is left as it was.
                wallet.isolated[coin] -= payment
            pos.since_open += payment
            pos.since_change += payment
            wallet.funding_all_time[coin] = wallet.funding_all_time.get(coin, ZERO) + payment
            record = FundingPayment(hour * self._funding_ms, coin, -payment, pos.szi, rate)
            wallet.funding_log.append(record)
            out.fundings.append(record)
        _trim(wallet.funding_log)

    # -- cashflows -----------------------------------------------------------
    def _transfer(self, wallet: Wallet, at_ms: int, out: Emitted) -> None:
        """A deposit, or a withdrawal of part of what is withdrawable."""
        rng = wallet.cashflows.rng
        wallet.cashflows.transfer_done(at_ms)
        tx = derive_hash(self._seed, "transfer", wallet.address, at_ms)
        amount = Decimal(rng.randint(100, 5_000))
        withdrawable = self.account_view(wallet.address, at_ms).withdrawable
        if rng.random() < 0.4 and withdrawable > amount + cashflows.WITHDRAW_FEE:
            wallet.balance -= amount + cashflows.WITHDRAW_FEE
            update = cashflows.withdraw(at_ms, tx, amount)
        else:
            wallet.balance += amount
            update = cashflows.deposit(at_ms, tx, amount)
        self._log_ledger(wallet, update, out)

    def _liquidate(self, wallet: Wallet, at_ms: int, out: Emitted) -> None:
        """Close every main-dex position at the mark, as a liquidation would."""
        wallet.cashflows.liquidation_done(at_ms)
        held = [
            (coin, pos.szi)
            for coin, pos in wallet.positions.items()
            if pos.szi != 0 and self._listing.dex_of(coin) == ""
        ]
        if not held:
            return
        view = self.account_view(wallet.address, at_ms)
        tx = derive_hash(self._seed, "liquidation", wallet.address, at_ms)
        notional = ZERO
        for coin, szi in held:
            mark = self._market.mark_px(coin)
            notional += abs(szi) * mark
            order = LiveOrder(
                oid=self._next_oid,
                coin=coin,
                side="A" if szi > 0 else "B",
                limit_px=mark,
                orig_sz=abs(szi),
                sz=abs(szi),
                timestamp=at_ms,
                cloid=None,
            )
            self._next_oid += 1
            wallet.live_orders[order.oid] = order
            self._record(wallet, order.update("open", at_ms), out.updates)
            marker = {"liquidatedUser": wallet.address, "markPx": mark, "method": "market"}
            update, fill = self._fill(
                wallet, order, abs(szi), at_ms, crossed=True, liquidation=marker
            )
            self._emit_fill(wallet, update, fill, out.updates, out.fills)
        entry = cashflows.liquidation(at_ms, tx, notional.quantize(USD), view.account_value, held)
        self._log_ledger(wallet, entry, out)

    @staticmethod
    def _log_ledger(wallet: Wallet, update: LedgerUpdate, out: Emitted) -> None:
        wallet.ledger_log.append(update)
        _trim(wallet.ledger_log)
        out.ledger.append(update)


def _trim(log: list[Any]) -> None:
    if len(log) > MAX_CASHFLOWS * 11 // 10:
        del log[: len(log) - MAX_CASHFLOWS]


def _direction(start: Decimal, new: Decimal, side: Side) -> str:
    """Hyperliquid's ``dir`` label for a perp fill."""
    if start == 0:
        return "Open Long" if side == "B" else "Open Short"
    if start > 0:
        if side == "B":
            return "Open Long"
        return "Close Long" if new >= 0 else "Long > Short"
    if side == "A":
        return "Open Short"
    return "Close Short" if new <= 0 else "Short > Long"


def _forget_old_orders(wallet: Wallet) -> None:
    """Drop the oldest finished orders once the per-wallet order memory is full."""
    excess = len(wallet.latest) - MAX_ORDERS
    for oid in [oid for oid in wallet.latest if oid not in wallet.live_orders][:excess]:
        update = wallet.latest.pop(oid)
        if update.cloid is not None:
            wallet.cloids.pop(update.cloid, None)


def legal_transition(previous: OrderStatus | None, current: OrderStatus) -> bool:
    """Which status sequences the simulator may emit for one oid."""
    if previous is None:
        return current == "open"
    if previous == "triggered":  # a triggered order executes or is canceled
        return current in ("open", "filled", "canceled")
    return previous == "open"

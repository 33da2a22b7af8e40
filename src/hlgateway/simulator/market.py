"""Sans-I/O, deterministic model of Hyperliquid's perp markets.

The model advances in fixed ticks (``tick_ms``); ``step(now_ms)`` runs every
whole tick up to ``now_ms``. Because state only changes per tick, the same seed
and start time give the same prices, books and trades however the caller
batches its ``step`` calls. Prices are kept on each coin's tick grid and sizes
on its lot grid (``szDecimals``) as exact ``Decimal`` values, so formatting and
partial-fill arithmetic never suffer from float noise.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from functools import cached_property
from typing import Literal

from hlgateway.simulator.rng import derive_address, derive_hash, derive_int, derive_rng

Side = Literal["B", "A"]

# Hyperliquid prices have at most 6 (perps) or 8 (spot) - szDecimals decimals and
# 5 significant figures.
MAX_PERP_DECIMALS = 6
MAX_SPOT_DECIMALS = 8
MAX_SIG_FIGS = 5
BOOK_DEPTH = 20
RECENT_TRADES = 100
# Annualised vol of a few hundred percent: exaggerated so short tests see movement.
VOL_PER_SQRT_SECOND = 4e-4
MEAN_REVERSION_PER_SECOND = 1.0 / 3600.0
# Never catch up more than this many ticks in one step (e.g. after a suspended laptop).
MAX_CATCHUP_TICKS = 600
IMPACT_NOTIONAL = Decimal(20_000)
BASE_FUNDING = Decimal("0.0000125")
MAX_FUNDING = Decimal("0.0004")
TRADER_POOL = 64


@dataclass(frozen=True)
class CoinSpec:
    """Static description of one market: a perp as listed in ``meta``, or a spot pair."""

    name: str
    sz_decimals: int
    max_leverage: int  # 0 for spot
    ref_px: float
    day_volume_usd: float
    kind: str = "perp"  # perp | spot

    @property
    def spot(self) -> bool:
        return self.kind == "spot"

    @cached_property
    def px_decimals(self) -> int:
        # 5 significant figures at the reference price, capped by the decimal rule.
        magnitude = math.floor(math.log10(self.ref_px))
        max_decimals = MAX_SPOT_DECIMALS if self.spot else MAX_PERP_DECIMALS
        return max(0, min(max_decimals - self.sz_decimals, MAX_SIG_FIGS - 1 - magnitude))

    @cached_property
    def tick(self) -> Decimal:
        return Decimal(1).scaleb(-self.px_decimals)

    @cached_property
    def lot(self) -> Decimal:
        return Decimal(1).scaleb(-self.sz_decimals)


DEFAULT_COINS: tuple[CoinSpec, ...] = (
    CoinSpec("BTC", 5, 40, 97_000.0, 2.0e9),
    CoinSpec("ETH", 4, 25, 3_400.0, 1.0e9),
    CoinSpec("SOL", 2, 20, 180.0, 3.0e8),
    CoinSpec("ARB", 1, 10, 0.80, 2.0e7),
    CoinSpec("AVAX", 2, 10, 35.0, 3.0e7),
    CoinSpec("DOGE", 0, 10, 0.38, 1.0e8),
    CoinSpec("MATIC", 1, 20, 0.50, 1.0e7),
    # Mixed case on purpose: Hyperliquid coin names are case-sensitive.
    CoinSpec("kPEPE", 0, 10, 0.020, 5.0e7),
    CoinSpec("LINK", 1, 10, 22.0, 3.0e7),
    CoinSpec("XRP", 0, 20, 2.30, 2.0e8),
    CoinSpec("HYPE", 2, 10, 25.0, 3.0e8),
    CoinSpec("SUI", 1, 10, 4.20, 8.0e7),
)


@dataclass(frozen=True)
class Level:
    px: Decimal
    sz: Decimal
    n: int


@dataclass(frozen=True)
class Book:
    coin: str
    time: int
    bids: tuple[Level, ...]  # best (highest) first
    asks: tuple[Level, ...]  # best (lowest) first


@dataclass(frozen=True)
class Trade:
    coin: str
    side: Side
    px: Decimal
    sz: Decimal
    time: int
    tid: int
    hash: str
    users: tuple[str, str]  # (buyer, seller)


@dataclass(frozen=True)
class AssetCtx:
    funding: Decimal
    open_interest: Decimal
    prev_day_px: Decimal
    day_ntl_vlm: Decimal
    premium: Decimal
    oracle_px: Decimal
    mark_px: Decimal
    mid_px: Decimal
    impact_pxs: tuple[Decimal, Decimal]
    day_base_vlm: Decimal


@dataclass(frozen=True)
class SpotAssetCtx:
    """A spot pair's context: no funding, oracle or open interest on spot."""

    prev_day_px: Decimal
    day_ntl_vlm: Decimal
    mark_px: Decimal
    mid_px: Decimal
    day_base_vlm: Decimal


class _CoinState:
    """Mutable per-coin state; only ``MarketModel`` touches it."""

    def __init__(self, spec: CoinSpec, seed: int) -> None:
        self.spec = spec
        self.rng: random.Random = derive_rng(seed, "coin", spec.name)
        self.fair = spec.ref_px
        self.oracle = spec.ref_px
        self.prev_day_px = _on_grid(
            Decimal(repr(spec.ref_px * self.rng.uniform(0.96, 1.04))), spec.tick
        )
        self.day_ntl = Decimal(repr(round(spec.day_volume_usd * self.rng.uniform(0.8, 1.2), 2)))
        self.day_base = _on_grid(self.day_ntl / Decimal(repr(spec.ref_px)), spec.lot)
        self.open_interest = spec.day_volume_usd * self.rng.uniform(0.3, 0.6) / spec.ref_px
        # Real tids are large integers; start each coin somewhere distinct.
        self.next_tid = 10**14 + derive_int(seed, "tid", spec.name, bits=46)
        self.trades: deque[Trade] = deque(maxlen=RECENT_TRADES)
        self.depth_scale = max(0.2, spec.day_volume_usd / 1e8)
        # USD value of one lot at a price of one tick.
        self.lot_value = 10.0 ** -(spec.px_decimals + spec.sz_decimals)
        magnitude = math.floor(math.log10(spec.ref_px))
        # Stay inside the reference decade so prices keep <= 5 significant figures.
        self.px_floor = spec.ref_px * 0.5
        self.px_ceiling = min(spec.ref_px * 2.0, 0.999 * 10.0 ** (magnitude + 1))


def _on_grid(value: Decimal, step: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return (value / step).to_integral_value(rounding=rounding) * step


class MarketModel:
    """Random-walk mids, 20-level books, trades and 24 h contexts for every coin."""

    def __init__(
        self,
        seed: int,
        start_ms: int,
        *,
        tick_ms: int = 100,
        coins: Sequence[CoinSpec] = DEFAULT_COINS,
        trade_rate: float = 2.0,
    ) -> None:
        if tick_ms <= 0:
            raise ValueError("tick_ms must be positive")
        if not coins:
            raise ValueError("at least one coin is required")
        names = [spec.name for spec in coins]
        if len(set(names)) != len(names):
            raise ValueError("coin names must be unique")
        self._seed = seed
        self._start_ms = start_ms
        self._tick_ms = tick_ms
        self._tick = 0
        self._trade_rate = trade_rate
        self._specs = tuple(coins)
        self._coins = {spec.name: _CoinState(spec, seed) for spec in coins}
        self._traders = tuple(derive_address(seed, "trader", i) for i in range(TRADER_POOL))
        self._book_cache: dict[str, tuple[int, Book]] = {}

    # -- clock ---------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self._seed

    @property
    def start_ms(self) -> int:
        """The model epoch: when the model's clock started (epoch ms)."""
        return self._start_ms

    @property
    def tick_ms(self) -> int:
        return self._tick_ms

    @property
    def now_ms(self) -> int:
        """Model time: the time of the last completed tick."""
        return self._start_ms + self._tick * self._tick_ms

    def ticks_until(self, now_ms: int) -> int:
        """How many whole ticks lie between the model time and ``now_ms``."""
        return max(0, (now_ms - self._start_ms) // self._tick_ms - self._tick)

    def step(self, now_ms: int) -> list[Trade]:
        """Advance through every whole tick up to ``now_ms``; return the new trades."""
        trades: list[Trade] = []
        for _ in range(self.skip_backlog(now_ms)):
            trades.extend(self.advance_tick())
        return trades

    def skip_backlog(self, now_ms: int) -> int:
        """Jump over ticks beyond ``MAX_CATCHUP_TICKS``; return the ticks left to run.

        Replaying hours of ticks (e.g. after a suspended machine) would stall the
        caller for nothing: nobody observed that time.
        """
        pending = self.ticks_until(now_ms)
        if pending > MAX_CATCHUP_TICKS:
            self._tick += pending - MAX_CATCHUP_TICKS
            pending = MAX_CATCHUP_TICKS
        return pending

    def advance_tick(self) -> list[Trade]:
        """Advance exactly one tick; coins are processed in listing order."""
        self._tick += 1
        trades: list[Trade] = []
        for state in self._coins.values():
            self._walk(state)
            trades.extend(self._trade(state))
        return trades

    # -- queries -------------------------------------------------------------
    @property
    def coins(self) -> tuple[CoinSpec, ...]:
        return self._specs

    def spec(self, coin: str) -> CoinSpec | None:
        """Exact, case-sensitive lookup (``kPEPE`` exists, ``KPEPE`` does not)."""
        state = self._coins.get(coin)
        return state.spec if state is not None else None

    def book(self, coin: str) -> Book:
        cached = self._book_cache.get(coin)
        if cached is not None and cached[0] == self._tick:
            return cached[1]
        book = self._build_book(self._coins[coin])
        self._book_cache[coin] = (self._tick, book)
        return book

    def mid(self, coin: str) -> Decimal:
        book = self.book(coin)
        return (book.bids[0].px + book.asks[0].px) / 2

    def mids(self) -> dict[str, Decimal]:
        return {spec.name: self.mid(spec.name) for spec in self._specs}

    def mark_px(self, coin: str) -> Decimal:
        return _on_grid(self.mid(coin), self._coins[coin].spec.tick)

    def best_bid_ask(self, coin: str) -> tuple[Decimal, Decimal]:
        book = self.book(coin)
        return book.bids[0].px, book.asks[0].px

    def recent_trades(self, coin: str, limit: int = RECENT_TRADES) -> list[Trade]:
        trades = list(self._coins[coin].trades)
        return trades[-limit:] if limit > 0 else []

    def ctx(self, coin: str) -> AssetCtx:
        state = self._coins[coin]
        spec = state.spec
        book = self.book(coin)
        mid = self.mid(coin)
        mark = _on_grid(mid, spec.tick)
        oracle = _on_grid(Decimal(repr(state.oracle)), spec.tick)
        premium = ((mark - oracle) / oracle).quantize(Decimal("1e-8"))
        funding = max(-MAX_FUNDING, min(MAX_FUNDING, premium / 8 + BASE_FUNDING))
        return AssetCtx(
            funding=funding.quantize(Decimal("1e-10")),
            open_interest=_on_grid(Decimal(repr(state.open_interest)), spec.lot),
            prev_day_px=state.prev_day_px,
            day_ntl_vlm=state.day_ntl.quantize(Decimal("1e-6")),
            premium=premium,
            oracle_px=oracle,
            mark_px=mark,
            mid_px=mid,
            impact_pxs=(_impact_px(book.bids), _impact_px(book.asks)),
            day_base_vlm=state.day_base,
        )

    def spot_ctx(self, coin: str) -> SpotAssetCtx:
        state = self._coins[coin]
        mid = self.mid(coin)
        return SpotAssetCtx(
            prev_day_px=state.prev_day_px,
            day_ntl_vlm=state.day_ntl.quantize(Decimal("1e-6")),
            mark_px=_on_grid(mid, state.spec.tick),
            mid_px=mid,
            day_base_vlm=state.day_base,
        )

    def funding_rate(self, coin: str) -> Decimal:
        return self.ctx(coin).funding

    def record_trade(
        self, coin: str, side: Side, px: Decimal, sz: Decimal, time: int, users: tuple[str, str]
    ) -> Trade:
        """A trade of an order placed through /exchange: on the tape like any other.

        It draws nothing from the coin's random stream, so the market's own path
        is the same whether or not anyone trades.
        """
        state = self._coins[coin]
        state.next_tid += 1
        trade = Trade(
            coin=coin,
            side=side,
            px=px,
            sz=sz,
            time=time,
            tid=state.next_tid,
            hash=derive_hash(self._seed, "trade", coin, state.next_tid),
            users=users,
        )
        state.day_ntl += px * sz
        state.day_base += sz
        state.trades.append(trade)
        return trade

    # -- internals -----------------------------------------------------------
    def _walk(self, state: _CoinState) -> None:
        dt = self._tick_ms / 1000.0
        rng = state.rng
        drift = MEAN_REVERSION_PER_SECOND * (state.spec.ref_px - state.fair) / state.spec.ref_px
        shock = VOL_PER_SQRT_SECOND * math.sqrt(dt) * rng.gauss(0.0, 1.0)
        state.fair = min(
            state.px_ceiling, max(state.px_floor, state.fair * math.exp(drift * dt + shock))
        )
        state.oracle = state.fair * (1.0 + rng.gauss(0.0, 1.5e-4))
        state.open_interest *= math.exp(rng.gauss(0.0, 2e-4))

    def _trade(self, state: _CoinState) -> list[Trade]:
        rng = state.rng
        spec = state.spec
        # Up to three Bernoulli draws approximate a Poisson arrival per tick.
        chance = min(1.0, self._trade_rate * self._tick_ms / 1000.0 / 3.0)
        count = sum(1 for _ in range(3) if rng.random() < chance)
        if count == 0:
            return []
        book = self.book(spec.name)
        trades: list[Trade] = []
        for _ in range(count):
            side: Side = "B" if rng.random() < 0.5 else "A"
            level = book.asks[0] if side == "B" else book.bids[0]
            notional = rng.expovariate(1.0 / (3_000.0 * state.depth_scale))
            lots = max(1, round(notional / float(level.px * spec.lot)))
            sz = min(level.sz, spec.lot * lots)
            buyer, seller = rng.sample(self._traders, 2)
            state.next_tid += rng.randint(1, 997)
            trade = Trade(
                coin=spec.name,
                side=side,
                px=level.px,
                sz=sz,
                time=self.now_ms,
                tid=state.next_tid,
                hash=derive_hash(self._seed, "trade", spec.name, state.next_tid),
                users=(buyer, seller),
            )
            state.day_ntl += trade.px * trade.sz
            state.day_base += trade.sz
            state.trades.append(trade)
            trades.append(trade)
        return trades

    def _build_book(self, state: _CoinState) -> Book:
        spec = state.spec
        # A separate stream per (coin, tick): books are a pure function of the tick.
        rng = derive_rng(self._seed, "book", spec.name, self._tick)
        tick = spec.tick
        fair_ticks = state.fair / float(tick)
        spread = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        best_bid = max(1, math.floor(fair_ticks - spread / 2.0))
        bids: list[Level] = []
        px = best_bid
        for depth in range(BOOK_DEPTH):
            if px <= 0:
                break
            bids.append(self._level(rng, state, px, depth))
            px -= _gap(rng)
        asks: list[Level] = []
        px = best_bid + spread
        for depth in range(BOOK_DEPTH):
            asks.append(self._level(rng, state, px, depth))
            px += _gap(rng)
        return Book(coin=spec.name, time=self.now_ms, bids=tuple(bids), asks=tuple(asks))

    @staticmethod
    def _level(rng: random.Random, state: _CoinState, px_ticks: int, depth: int) -> Level:
        # Float maths for the sizing, exact Decimals only for the published numbers:
        # books are rebuilt often and this is the model's hot path.
        spec = state.spec
        notional = (2_000.0 + 38_000.0 * rng.random()) * state.depth_scale * (1.0 + 0.15 * depth)
        lots = max(1, round(notional / (px_ticks * state.lot_value)))
        return Level(
            px=Decimal(px_ticks).scaleb(-spec.px_decimals),
            sz=Decimal(lots).scaleb(-spec.sz_decimals),
            n=1 + int(12 * rng.random()),
        )


def _gap(rng: random.Random) -> int:
    """Ticks between adjacent levels: mostly adjacent, sometimes a hole of 1-3 ticks."""
    roll = rng.random()
    return 1 if roll >= 0.3 else 2 + int(roll * 10)


def _impact_px(levels: Sequence[Level]) -> Decimal:
    """Price reached by a market order of ``IMPACT_NOTIONAL`` against ``levels``."""
    filled = Decimal(0)
    for level in levels:
        filled += level.px * level.sz
        if filled >= IMPACT_NOTIONAL:
            return level.px
    return levels[-1].px


def aggregate_book(book: Book, n_sig_figs: int | None, mantissa: int | None) -> Book:
    """Bucket levels like l2Book's ``nSigFigs``/``mantissa`` options.

    Bids round down and asks round up so an aggregated level never looks better
    than the real orders behind it.
    """
    if n_sig_figs is None:
        return book
    return Book(
        coin=book.coin,
        time=book.time,
        bids=_aggregate(book.bids, n_sig_figs, mantissa, ROUND_FLOOR),
        asks=_aggregate(book.asks, n_sig_figs, mantissa, ROUND_CEILING),
    )


def _aggregate(
    levels: Sequence[Level], n_sig_figs: int, mantissa: int | None, rounding: str
) -> tuple[Level, ...]:
    merged: list[Level] = []
    for level in levels:
        bucket = Decimal(mantissa or 1).scaleb(level.px.adjusted() - n_sig_figs + 1)
        px = _on_grid(level.px, bucket, rounding)
        if merged and merged[-1].px == px:
            last = merged[-1]
            merged[-1] = Level(px=px, sz=last.sz + level.sz, n=last.n + level.n)
        else:
            merged.append(Level(px=px, sz=level.sz, n=level.n))
    return tuple(merged)

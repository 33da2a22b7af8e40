"""Candles built from the simulator's own trades, for every coin and interval.

Sans I/O. Each trade updates the current candle of each of Hyperliquid's 14
intervals for its coin (open, high, low, close, base volume, trade count), as
``candle`` subscriptions and ``candleSnapshot`` report them. Intervals up to
``3d`` start on multiples of their length since the Unix epoch; ``1w`` starts
on Mondays 00:00 UTC and ``1M`` on the first of the month (UTC).

The simulator starts with no trades behind it, so the first time a coin's
interval is asked for, ``PREHISTORY`` candles before the start are invented: a
seeded random walk that ends at the coin's reference price, like the wallets'
invented pre-history. They are marked by ``time < started_ms`` only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from hlgateway.simulator.market import CoinSpec, Trade
from hlgateway.simulator.rng import derive_rng

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# Hyperliquid's candle intervals, in the order its docs list them.
INTERVALS: dict[str, int] = {
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": 7 * DAY,
    "1M": 30 * DAY,  # nominal: months are calendar months
}
MONDAY_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday
PREHISTORY = 500
MAX_CANDLES = 5_000  # kept per coin and interval (candleSnapshot answers at most this many)


def bounds(interval: str, time_ms: int) -> tuple[int, int]:
    """The ``(t, T)`` of the candle holding ``time_ms``: open time, and close time (inclusive)."""
    if interval == "1M":
        moment = datetime.fromtimestamp(time_ms / 1000, UTC)
        first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        following = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
        return int(first.timestamp() * 1000), int(following.timestamp() * 1000) - 1
    length = INTERVALS[interval]
    offset = MONDAY_OFFSET if interval == "1w" else 0
    start = (time_ms - offset) // length * length + offset
    return start, start + length - 1


@dataclass(frozen=True)
class Candle:
    coin: str
    interval: str
    t: int  # open time
    T: int  # close time (inclusive)
    o: Decimal
    c: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 (Hyperliquid's name)
    v: Decimal  # base volume
    n: int  # trades

    def add(self, px: Decimal, sz: Decimal) -> Candle:
        return replace(
            self, c=px, h=max(self.h, px), l=min(self.l, px), v=self.v + sz, n=self.n + 1
        )


class CandleBook:
    """Every coin's candles at every interval, from trades (and invented pre-history)."""

    def __init__(self, seed: int, started_ms: int, coins: Sequence[CoinSpec]) -> None:
        self._seed = seed
        self.started_ms = started_ms
        self._specs = {spec.name: spec for spec in coins}
        self._live: dict[tuple[str, str], deque[Candle]] = {}
        self._prehistory: dict[tuple[str, str], list[Candle]] = {}

    def add(self, trades: Iterable[Trade]) -> set[tuple[str, str]]:
        """Fold trades (in time order) into the candles; the (coin, interval)s changed."""
        changed: set[tuple[str, str]] = set()
        for trade in trades:
            if trade.coin not in self._specs:
                continue
            for interval in INTERVALS:
                self._fold(trade, interval)
                changed.add((trade.coin, interval))
        return changed

    def current(self, coin: str, interval: str) -> Candle | None:
        """The latest candle of the series (the one trades are folding into)."""
        live = self._live.get((coin, interval))
        if live:
            return live[-1]
        invented = self._invented(coin, interval)
        return invented[-1] if invented else None

    def history(
        self, coin: str, interval: str, start_ms: int, end_ms: int, limit: int = MAX_CANDLES
    ) -> list[Candle]:
        """Candles whose open time lies in ``[start_ms, end_ms]``, oldest first, the newest
        ``limit`` of them."""
        live = self._live.get((coin, interval), ())
        series = [*self._invented(coin, interval), *live]
        selected = [c for c in series if start_ms <= c.t <= end_ms]
        return selected[-limit:]

    def knows(self, coin: str) -> bool:
        return coin in self._specs

    # -- internals -----------------------------------------------------------
    def _fold(self, trade: Trade, interval: str) -> None:
        key = (trade.coin, interval)
        series = self._live.get(key)
        if series is None:
            series = self._live[key] = deque(maxlen=MAX_CANDLES)
        last = series[-1] if series else None
        t, end = bounds(interval, trade.time)
        if last is not None and last.t == t:
            series[-1] = last.add(trade.px, trade.sz)
            return
        px = trade.px
        series.append(Candle(trade.coin, interval, t, end, px, px, px, px, trade.sz, 1))

    def _invented(self, coin: str, interval: str) -> list[Candle]:
        # Made on first use only: most coins' intervals are never asked for.
        key = (coin, interval)
        invented = self._prehistory.get(key)
        if invented is None:
            invented = self._prehistory[key] = self._invent(coin, interval)
        return invented

    def _invent(self, coin: str, interval: str) -> list[Candle]:
        """PREHISTORY candles before the start: a walk backwards from the reference price."""
        spec = self._specs.get(coin)
        if spec is None:
            return []
        rng = derive_rng(self._seed, "candles", coin, interval)
        first_live, _ = bounds(interval, self.started_ms)
        starts: list[tuple[int, int]] = []
        cursor = first_live - 1
        for _ in range(PREHISTORY):
            t, end = bounds(interval, cursor)
            starts.append((t, end))
            cursor = t - 1
        starts.reverse()
        seconds = INTERVALS[interval] / 1000
        vol = min(0.08, 4e-4 * math.sqrt(seconds))
        # Walk backwards from the reference price, then read the path forwards.
        closes = [spec.ref_px]
        for _ in range(PREHISTORY - 1):
            pull = 0.05 * math.log(spec.ref_px / closes[-1])
            closes.append(closes[-1] * math.exp(pull + rng.gauss(0.0, vol)))
        closes.reverse()
        base_per_candle = spec.day_volume_usd / spec.ref_px * min(1.0, seconds / 86_400)
        candles: list[Candle] = []
        previous = closes[0] * math.exp(rng.gauss(0.0, vol))
        for (t, end), close in zip(starts, closes, strict=True):
            wick = abs(rng.gauss(0.0, vol / 2))
            high = max(previous, close) * (1 + wick)
            low = min(previous, close) * (1 - wick)
            o, c = _px(previous, spec), _px(close, spec)
            h, lo = max(_px(high, spec), o, c), min(_px(low, spec), o, c)
            volume = _sz(base_per_candle * rng.uniform(0.5, 1.5), spec)
            trades = max(1, int(rng.uniform(0.5, 1.5) * seconds * 2))
            candles.append(Candle(coin, interval, t, end, o, c, h, lo, volume, trades))
            previous = close
        return candles


def _px(value: float, spec: CoinSpec) -> Decimal:
    grid = spec.tick
    return max(grid, (Decimal(repr(value)) / grid).to_integral_value(ROUND_HALF_EVEN) * grid)


def _sz(value: float, spec: CoinSpec) -> Decimal:
    grid = spec.lot
    return max(grid, (Decimal(repr(value)) / grid).to_integral_value(ROUND_HALF_EVEN) * grid)

"""One market's candles at one interval, kept exact from two sources (sans I/O).

Hyperliquid's `candle` subscription pushes the current candle whenever it
changes, and nothing of the past; REST `candleSnapshot` gives the past. A
series starts from a snapshot (live updates that come first are held, then
folded in), and after an upstream gap it is re-read from REST, so that a candle
that closed while the link was down ends with its real final values. It keeps
the last `KEEP` candles: what a new subscriber gets.
"""

from __future__ import annotations

from hlgateway.upstream.wire import Candle

KEEP = 500
MINUTE = 60_000
# Nominal lengths, for how far back a snapshot reaches (1M: a 31-day month).
INTERVAL_MS: dict[str, int] = {
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": 60 * MINUTE,
    "2h": 120 * MINUTE,
    "4h": 240 * MINUTE,
    "8h": 480 * MINUTE,
    "12h": 720 * MINUTE,
    "1d": 1440 * MINUTE,
    "3d": 3 * 1440 * MINUTE,
    "1w": 7 * 1440 * MINUTE,
    "1M": 31 * 1440 * MINUTE,
}


def snapshot_window(interval: str, now_ms: int) -> tuple[int, int]:
    """The REST window holding the last KEEP candles of `interval` up to `now_ms`."""
    return now_ms - (KEEP + 1) * INTERVAL_MS[interval], now_ms


class CandleSeries:
    def __init__(self) -> None:
        self.candles: list[Candle] = []
        self.ready = False  # a snapshot has come: the series can be published
        self._held: list[Candle] = []  # updates that came before the snapshot

    def load(self, snapshot: list[Candle]) -> None:
        """A REST snapshot (oldest first): the series from now on, with held and
        already-known updates newer than its last candle kept."""
        merged = {c.t: c for c in snapshot}
        newest = max(merged) if merged else -1
        for candle in (*self.candles, *self._held):
            if candle.t > newest or (candle.t == newest and candle.trades > merged[newest].trades):
                merged[candle.t] = candle
        self.candles = [merged[t] for t in sorted(merged)][-KEEP:]
        self._held = []
        self.ready = True

    def update(self, candle: Candle) -> bool:
        """A live update of the current candle; True if the series changed."""
        if not self.ready:
            self._held.append(candle)
            return False
        candles = self.candles
        if candles and candle.t < candles[-1].t:
            return False  # an older candle's late echo: the snapshot knows better
        if candles and candle.t == candles[-1].t:
            if candle == candles[-1]:
                return False
            candles[-1] = candle
        else:
            candles.append(candle)
            if len(candles) > KEEP:
                del candles[: len(candles) - KEEP]
        return True

"""TWAP orders as Hyperliquid runs them: a size bought or sold in market slices. Sans I/O.

Hyperliquid's documented rules (trading/order types): a TWAP sends a suborder
every 30 seconds for its duration (5 minutes to 24 hours); each suborder is a
market order whose price may slip at most 3% from the mid; a suborder that
does not fill in full leaves the rest to later ones, which catch up with at
most 3 times the normal slice size. Its fills carry the TWAP's ``twapId`` (and
a zero hash). ``twapCancel`` stops it; what filled stays filled.

This module plans the slices (when, how much, at what worst price); the
matcher executes them against the book at the model clock's ticks.
``randomize`` is accepted and reported but does not change the schedule: the
real exchange's randomization is not documented beyond "varies", and an
invented one would only make the simulator's results harder to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Literal

from hlgateway.simulator.market import MAX_PERP_DECIMALS, MAX_SIG_FIGS, MAX_SPOT_DECIMALS, CoinSpec

SLICE_MS = 30_000
MIN_MINUTES = 5
MAX_MINUTES = 24 * 60
MAX_SLIPPAGE = Decimal("0.03")
CATCH_UP = 3  # a slice is at most this many normal slices
ZERO = Decimal(0)
ZERO_HASH = "0x" + "00" * 32  # what Hyperliquid's TWAP fills carry as their hash

TwapStatus = Literal["activated", "finished", "terminated"]


@dataclass
class Twap:
    """One TWAP order and how far it got."""

    twap_id: int
    user: str
    coin: str  # the coin's wire name ("ETH", "@107")
    asset: int
    is_buy: bool
    sz: Decimal
    reduce_only: bool
    minutes: int
    randomize: bool
    timestamp: int  # when it was placed: its first slice is due then
    status: TwapStatus = "activated"
    executed_sz: Decimal = ZERO
    executed_ntl: Decimal = ZERO
    slices_run: int = 0
    ended_ms: int | None = None

    @property
    def slices(self) -> int:
        return self.minutes * 60_000 // SLICE_MS

    @property
    def next_ms(self) -> int:
        return self.timestamp + self.slices_run * SLICE_MS

    @property
    def running(self) -> bool:
        return self.status == "activated"

    def slice_size(self, lot: Decimal) -> Decimal:
        """The next slice: what keeps the TWAP on pace, at most ``CATCH_UP`` normal
        slices and never more than is left, on the coin's lot grid (rounded down)."""
        normal = self.sz / self.slices
        on_pace = self.sz * (self.slices_run + 1) / self.slices - self.executed_sz
        size = min(on_pace, normal * CATCH_UP, self.sz - self.executed_sz)
        if size <= 0:
            return ZERO
        return (size / lot).to_integral_value(rounding=ROUND_DOWN) * lot

    def ran(self, filled: Decimal, notional: Decimal, at_ms: int) -> None:
        """A slice ran (``filled`` may be zero); the TWAP finishes after its last one."""
        self.executed_sz += filled
        self.executed_ntl += notional
        self.slices_run += 1
        if self.slices_run >= self.slices or self.executed_sz >= self.sz:
            self.status = "finished"
            self.ended_ms = at_ms


def duration_problem(minutes: int) -> str | None:
    if MIN_MINUTES <= minutes <= MAX_MINUTES:
        return None
    return f"Invalid TWAP duration: {minutes} min(s)"


def worst_price(mid: Decimal, is_buy: bool, coin: CoinSpec) -> Decimal:
    """The slice's limit: the mid moved 3% against the taker, then rounded to a valid
    price toward the mid (5 significant figures, the coin's decimals), so a slice
    never pays more than 3% away."""
    raw = mid * (1 + MAX_SLIPPAGE if is_buy else 1 - MAX_SLIPPAGE)
    rounding = ROUND_DOWN if is_buy else ROUND_UP
    decimals = (MAX_SPOT_DECIMALS if coin.spot else MAX_PERP_DECIMALS) - coin.sz_decimals
    px = raw.quantize(Decimal(1).scaleb(-decimals), rounding=rounding)
    if px != px.to_integral_value():
        digits = px.adjusted() + 1  # digits before the point
        px = px.quantize(Decimal(1).scaleb(digits - MAX_SIG_FIGS), rounding=rounding)
    return px.normalize()

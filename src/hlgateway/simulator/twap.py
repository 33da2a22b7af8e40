"""TWAP orders as Hyperliquid runs them: a size bought or sold in market slices. Sans I/O.

Hyperliquid's documented rules (trading/order types): a TWAP sends a suborder
every 30 seconds for its duration (5 minutes to 24 hours); each suborder is a
market order whose price may slip at most 3% from the mid; a suborder that
does not fill in full leaves the rest to later ones, which catch up with at
most 3 times the normal slice size. Its fills carry the TWAP's ``twapId`` (and
a zero hash). ``twapCancel`` stops it; what filled stays filled.

This module plans the slices (when, how much, at what worst price); the
matcher executes them against the book at the model clock's ticks.

``randomize`` (the action's ``t``): Hyperliquid's API documents the flag, and
its app says a randomized TWAP varies the size and timing of its suborders,
without publishing by how much. Here each slice after the first is sent up to
15 s into its 30 s slot (so the gaps vary between 15 and 45 s, 30 on average,
and the last still runs within the duration), and each slice but the last is
its on-pace size ±20%; the documented rules hold all the same: the execution
target (elapsed / total x size) is what later slices catch up to, at most 3
normal slices each. The draws derive from the simulator's seed and the TWAP's
id: a seeded run is the same every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Literal

from hlgateway.simulator.market import MAX_PERP_DECIMALS, MAX_SIG_FIGS, MAX_SPOT_DECIMALS, CoinSpec
from hlgateway.simulator.rng import derive_rng

SLICE_MS = 30_000
MIN_MINUTES = 5
MAX_MINUTES = 24 * 60
MAX_SLIPPAGE = Decimal("0.03")
CATCH_UP = 3  # a slice is at most this many normal slices
# randomize: how much a slice's size and time vary (Hyperliquid publishes no numbers).
RANDOM_SIZE = Decimal("0.2")  # its on-pace size x [0.8, 1.2)
RANDOM_DELAY_MS = SLICE_MS // 2  # sent up to 15 s into its slot
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
    seed: int = 0  # the simulator's: a randomized TWAP's draws derive from it and the id

    @property
    def slices(self) -> int:
        return self.minutes * 60_000 // SLICE_MS

    def _draw(self, index: int, what: str) -> float:
        """A uniform draw in [0, 1) for slice ``index``: the same for the same seed."""
        return derive_rng(self.seed, "twap", self.twap_id, index, what).random()

    @property
    def next_ms(self) -> int:
        index = self.slices_run
        delay = 0
        if self.randomize and index > 0:  # the first slice goes at once, as without
            delay = int(self._draw(index, "delay") * RANDOM_DELAY_MS)
        return self.timestamp + index * SLICE_MS + delay

    @property
    def running(self) -> bool:
        return self.status == "activated"

    def slice_size(self, lot: Decimal) -> Decimal:
        """The next slice: what keeps the TWAP on pace, at most ``CATCH_UP`` normal
        slices and never more than is left, on the coin's lot grid (rounded down)."""
        normal = self.sz / self.slices
        on_pace = self.sz * (self.slices_run + 1) / self.slices - self.executed_sz
        if self.randomize and self.slices_run + 1 < self.slices:  # the last one completes
            draw = Decimal(self._draw(self.slices_run, "size")).quantize(Decimal("1e-6"))
            on_pace *= 1 - RANDOM_SIZE + 2 * RANDOM_SIZE * draw
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

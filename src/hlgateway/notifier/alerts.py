"""Price alerts with hysteresis, liquidation-distance tiers (sans I/O).

An alert fires once when the price reaches its level (at or beyond it), then
stays quiet until the price has moved back past the level by `HYSTERESIS`
(0.5 %), which re-arms it: a price hovering around the level fires once, not on
every tick.

A liquidation warning is sent once per tier as a position's distance to its
liquidation price shrinks into the tier (20 %, 10 %, 5 %, 2 % of the mark
price); a tier is re-armed when the distance grows back past it by 0.5 percentage points, or
the position closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

HYSTERESIS = Decimal("0.005")
TIERS: tuple[Decimal, ...] = (Decimal("0.20"), Decimal("0.10"), Decimal("0.05"), Decimal("0.02"))


class Direction(StrEnum):
    ABOVE = "above"
    BELOW = "below"


@dataclass
class PriceAlert:
    id: int
    chat_id: int
    symbol: str
    direction: Direction
    level: Decimal
    armed: bool = True

    def observe(self, price: Decimal) -> bool:
        """Feed a price. True when the alert fires now (it is then disarmed)."""
        if self.direction is Direction.ABOVE:
            reached = price >= self.level
            back = price <= self.level * (1 - HYSTERESIS)
        else:
            reached = price <= self.level
            back = price >= self.level * (1 + HYSTERESIS)
        if self.armed and reached:
            self.armed = False
            return True
        if not self.armed and back:
            self.armed = True
        return False


def liquidation_distance(mark: Decimal, liquidation: Decimal) -> Decimal | None:
    """|mark - liq| / mark, or None when it cannot be told."""
    if mark <= 0 or liquidation <= 0:
        return None
    return abs(mark - liquidation) / mark


def tier_of(distance: Decimal, current: int) -> int:
    """The deepest tier (index+1 into TIERS, 0 = none) that `distance` is in, given
    the tier already warned (`current`): leaving a tier needs the hysteresis."""
    reached = 0
    for index, edge in enumerate(TIERS, start=1):
        bound = edge if index > current else edge + HYSTERESIS
        if distance <= bound:
            reached = index
    return reached


def tier_step(distance: Decimal | None, current: int) -> tuple[int, bool]:
    """(new tier, warn now?). Warn only when going into a deeper tier."""
    if distance is None:
        return 0, False
    new = tier_of(distance, current)
    return new, new > current


def tier_percent(tier: int) -> str:
    return f"{TIERS[tier - 1] * 100:.0f}%"

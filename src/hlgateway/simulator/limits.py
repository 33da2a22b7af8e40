"""Hyperliquid's per-IP budgets, sans-I/O: the caller passes the time.

One ``ClientBudget`` per client IP holds what is shared by all of that IP's
connections: how many are open, the sliding 60 s windows of accepted upgrades
and of client messages. Subscription and user counts are derived from the
IP's live connections by the server, so they cannot drift. ``RestBudget`` is an
IP's REST weight over the last minute (1200 on Hyperliquid), with the weights
of Hyperliquid's table (``info_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hlgateway.ratelimit import SlidingWindow

# Hyperliquid's /info weights ("Rate limits and user limits"). Written here, apart
# from the gateway's own table (upstream/rest.py), on purpose: the simulator stands
# for the exchange, so a gateway that misjudges a weight is caught, not agreed with.
LIGHT_INFO = frozenset(
    {"l2Book", "allMids", "clearinghouseState", "orderStatus", "spotClearinghouseState"}
    | {"exchangeStatus"}
)
INFO_WEIGHT = 20
# These add one unit of weight per 20 items answered.
PER_ITEM_INFO = frozenset(
    {"recentTrades", "historicalOrders", "userFills", "userFillsByTime", "fundingHistory"}
    | {"userFunding", "nonUserFundingUpdates", "twapHistory", "userTwapSliceFills"}
)
ITEMS_PER_WEIGHT = 20


def info_weight(kind: str, answer: Any) -> int:
    """The weight Hyperliquid charges an /info request of `kind` that answered `answer`."""
    if kind == "userRole":
        return 60
    base = 2 if kind in LIGHT_INFO else INFO_WEIGHT
    if kind in PER_ITEM_INFO and isinstance(answer, list):
        base += len(answer) // ITEMS_PER_WEIGHT
    return base


class RestBudget:
    """One IP's REST weight over a sliding minute: a request over the limit is refused."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._spent = SlidingWindow(per_minute, window)
        self.total = 0  # weight charged since start
        self.refused = 0  # requests refused for the limit

    def used(self, now: float) -> int:
        """Weight charged within the last minute."""
        return int(self._spent.total(now))

    def admit(self, now: float) -> bool:
        """Whether a request may be answered now (the last minute is under the limit)."""
        if self.used(now) >= self.per_minute:
            self.refused += 1
            return False
        return True

    def charge(self, now: float, weight: int) -> None:
        self._spent.add(now, weight)
        self.total += weight


@dataclass
class ClientBudget:
    """Everything one client IP shares across its connections."""

    ip: str
    new_connections: SlidingWindow
    messages: SlidingWindow
    links: set[int] = field(default_factory=set)  # ids of its open (or opening) links

    def idle(self, now: float) -> bool:
        """Nothing open and nothing left in either window: safe to forget."""
        return (
            not self.links
            and self.new_connections.count(now) == 0
            and self.messages.count(now) == 0
        )

"""How often REST-polled wallets can be polled: the interval the weight budget allows.

Hyperliquid limits REST to 1200 weight a minute per IP. Polling a wallet costs
what its calls weigh (`userFillsByTime` 20, `historicalOrders` 20, each plus
one per 20 items answered, `clearinghouseState` 2), at every poll. What the
node may spend on polling is its budget less what it needs otherwise: the
market list and contexts (`Upstream.context_weight_per_minute`) and a share
kept for the recoveries of WebSocket wallets after a reconnect. Spread
over the polled wallets, that gives the interval: never shorter than the
configured one, and longer when the wallets cost more than the budget gives,
which /health then says instead of the polls falling silently behind.

`max_interval` is the latency an operator accepts for a polled wallet: a new
wallet that would push the interval beyond it is refused, and wallets beyond
it (a costlier history than estimated) are reported.

Sans I/O: the caller passes the time (seconds, any monotonic origin).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hlgateway.protocol.channels import ACCOUNT_UPDATES, USER_FILLS, USER_LEDGER, USER_ORDERS
from hlgateway.upstream.rest import LEDGER_STREAMS, info_weight

# The share of the REST budget polling leaves for wallet recoveries (a reconnect
# rebuilds every WebSocket wallet's gap from REST).
RECOVERY_SHARE = 0.1


def one_context_call_every_10_s() -> float:
    """A reserve for tests and defaults: one `metaAndAssetCtxs` (20) every 10 s."""
    return info_weight("metaAndAssetCtxs") * 6.0


def poll_weight(channels: Iterable[str], fills: int = 0, orders: int = 0, ledger: int = 0) -> int:
    """The weight of one poll of a wallet with these user channels.

    `fills`, `orders`, `ledger`: how many items its calls answered (an estimate
    before the first poll: 0, the base weights).
    """
    wanted = set(channels)
    weight = 0
    if wanted & {USER_FILLS, USER_ORDERS}:
        weight += info_weight("userFillsByTime", fills)
    if USER_ORDERS in wanted:
        weight += info_weight("historicalOrders", orders)
    if USER_LEDGER in wanted:
        # Two calls (non-funding updates, funding payments), the items shared out.
        weight += sum(info_weight(stream) for stream in LEDGER_STREAMS) + ledger // 20
    if ACCOUNT_UPDATES in wanted:
        weight += info_weight("clearinghouseState")
    return weight


@dataclass(frozen=True)
class PollBudget:
    """A node's REST budget as polling sees it."""

    weight_per_minute: float = 1200.0
    # Weight a minute the node spends otherwise (market list and contexts), read live:
    # it grows with the builder dexes the exchange lists.
    reserved: Callable[[], float] = one_context_call_every_10_s
    min_interval: float = 5.0  # the configured interval: never poll a wallet faster
    max_interval: float = 30.0  # the latency accepted for a polled wallet

    @property
    def rate(self) -> float:
        """Weight per second polling may spend, sustained."""
        per_minute = self.weight_per_minute * (1 - RECOVERY_SHARE) - self.reserved()
        return max(0.0, per_minute / 60.0)

    def interval(self, cycle_weight: float) -> float:
        """Seconds between two polls of each wallet, when one round costs `cycle_weight`."""
        if cycle_weight <= 0:
            return self.min_interval
        if self.rate <= 0:
            return math.inf
        return max(self.min_interval, cycle_weight / self.rate)

    def fits(self, cycle_weight: float) -> bool:
        """Whether a round of this weight is polled within `max_interval`."""
        return self.interval(cycle_weight) <= self.max_interval


@dataclass
class _Entry:
    weight: float  # of its last poll (an estimate until the first)
    due: float


class PollSchedule:
    """Which polled wallet is due and when the next one is: each every `interval`,
    the polls spread over it.

    A wallet added is due at once (its first poll starts its delivery). After a
    poll its weight is what that poll cost, and it is due again one interval
    after the poll started; the interval follows the weight of a whole round.
    Polls are also paced: after a poll of weight w the next waits w / rate, so
    that polling never spends faster than its rate. Without that, wallets due
    together are polled together at every turn, and a minute can hold three such
    bursts where the interval counted on two and a half: the exchange counts
    weight per sliding minute, not on average.
    """

    def __init__(self, budget: PollBudget) -> None:
        self.budget = budget
        self._entries: dict[str, _Entry] = {}
        self._paced_until = float("-inf")  # no poll starts before then

    def __contains__(self, wallet: str) -> bool:
        return wallet in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, wallet: str, weight: float, now: float) -> None:
        if wallet not in self._entries:
            self._entries[wallet] = _Entry(weight, now)

    def remove(self, wallet: str) -> None:
        self._entries.pop(wallet, None)

    def estimate(self, wallet: str, weight: float) -> None:
        """A new estimate of a wallet's weight before its next poll (its channels changed)."""
        entry = self._entries.get(wallet)
        if entry is not None:
            entry.weight = weight

    @property
    def cycle_weight(self) -> float:
        return sum(entry.weight for entry in self._entries.values())

    @property
    def interval(self) -> float:
        return self.budget.interval(self.cycle_weight)

    def due(self, now: float) -> str | None:
        """The most overdue wallet whose turn it is, if any."""
        if now < self._paced_until:
            return None
        wallet, entry = min(self._entries.items(), key=lambda kv: kv[1].due, default=(None, None))
        return wallet if entry is not None and entry.due <= now else None

    def next_at(self) -> float | None:
        due = min((entry.due for entry in self._entries.values()), default=None)
        return None if due is None else max(due, self._paced_until)

    def polled(self, wallet: str, started: float, weight: float) -> None:
        """A poll of `wallet` that started at `started` is done; it cost `weight`."""
        rate = self.budget.rate
        self._paced_until = started + (weight / rate if rate > 0 else self.budget.min_interval)
        entry = self._entries.get(wallet)
        if entry is None:
            return
        entry.weight = weight
        entry.due = started + self.interval

    def failed(self, wallet: str, started: float) -> None:
        """A poll failed: try again a quarter of an interval later (at least the
        configured interval), not a whole one: its fills already wait since the last."""
        entry = self._entries.get(wallet)
        if entry is not None:
            entry.due = started + max(self.budget.min_interval, self.interval / 4)

    def lag(self, now: float) -> float:
        """How far behind its plan the most overdue wallet is (0: on time)."""
        due = min((entry.due for entry in self._entries.values()), default=None)
        return 0.0 if due is None else max(0.0, now - due)

    def over_latency(self) -> int:
        """Wallets beyond what `max_interval` allows, at their average weight."""
        count = len(self._entries)
        if not count or self.budget.fits(self.cycle_weight):
            return 0
        average = self.cycle_weight / count
        within = math.floor(self.budget.rate * self.budget.max_interval / average)
        return max(0, count - within)

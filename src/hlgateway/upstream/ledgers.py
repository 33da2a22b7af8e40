"""Exactly-once bookkeeping for the streams that must not repeat or lose events.

Sans I/O. Hyperliquid re-sends a userFills snapshot on every (re)subscribe and
replays recent trades; orderUpdates may repeat a state; the ledger streams
(userNonFundingLedgerUpdates, userFundings) re-send theirs too. These ledgers
decide what is new, by the ids Hyperliquid guarantees unique: fills by (wallet,
tid), trades by (time, tid) per coin, orders by (oid, status, remaining size,
time), ledger entries by (hash, type) and funding payments by (coin, time).
The ids, not the times, make each event once: reading back with a margin for
the clocks (clock.py) costs repeats that the ledgers drop, never a loss.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import TypeVar

from hlgateway.upstream.wire import Fill, LedgerEvent, Order, Trade

K = TypeVar("K", bound=Hashable)


class SeenSet:
    """A bounded set that forgets its oldest members first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, item: Hashable) -> bool:
        """True if the item is new."""
        if item in self._items:
            return False
        self._items[item] = None
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return True

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


class FillLedger:
    """One wallet's delivered fills, from the stream's start (`since_ms`, the
    exchange's time: upstream/clock.py).

    What is read back (a userFills snapshot, mostly history from before anyone
    watched; REST after a gap; a poll) delivers its fills from the start on;
    a live push, which happened after the subscription, delivers its fills
    whatever their stamp. Either way only fills not delivered before, by `tid`.
    """

    def __init__(self, since_ms: int = 0, capacity: int = 20_000) -> None:
        self._seen = SeenSet(capacity)
        self.since_ms = since_ms
        self.last_time = since_ms  # time of the newest fill seen

    def accept(self, fills: Iterable[Fill], live: bool = False) -> list[Fill]:
        """The fills not delivered before, oldest first (`live`: pushed, not read back)."""
        start = self.since_ms
        fresh = [f for f in fills if (live or f.timestamp >= start) and self._seen.add(f.id)]
        fresh.sort(key=lambda f: (f.timestamp, f.id))
        if fresh:
            self.last_time = max(self.last_time, fresh[-1].timestamp)
        return fresh


class EventLedger:
    """One wallet's delivered ledger events (the ids `wire.ledger_event` gives),
    from the stream's start (`since_ms`, the exchange's time).

    Two streams feed it, each with a snapshot of its own on every (re)subscribe,
    and REST reads after a gap or for a poll: what is read back delivers its
    events from the start on, a live push all of its events; only those not
    delivered before either way.
    """

    def __init__(self, since_ms: int = 0, capacity: int = 20_000) -> None:
        self._seen = SeenSet(capacity)
        self.since_ms = since_ms
        self.last_time = since_ms

    def accept(self, events: Iterable[LedgerEvent], live: bool = False) -> list[LedgerEvent]:
        """The events not delivered before, oldest first (`live`: pushed, not read back)."""
        start = self.since_ms
        fresh = [e for e in events if (live or e.time >= start) and self._seen.add(e.id)]
        fresh.sort(key=lambda e: (e.time, e.id))
        if fresh:
            self.last_time = max(self.last_time, fresh[-1].time)
        return fresh


class TradeLedger:
    """One coin's delivered trades."""

    def __init__(self, capacity: int = 2_000) -> None:
        self._seen = SeenSet(capacity)

    def accept(self, trades: Iterable[Trade]) -> list[Trade]:
        return [t for t in trades if self._seen.add((t.timestamp, t.id))]


CANCELLED_STATUSES = frozenset({"canceled", "rejected", "marginCanceled"})


def is_terminal(status: str) -> bool:
    return (
        status == "filled"
        or status in CANCELLED_STATUSES
        or status.endswith(("Canceled", "Rejected"))
    )


def order_action(status: str, first_seen: bool, partially_filled: bool) -> str:
    """Map Hyperliquid's order status to the seed's action."""
    if status == "filled":
        return "filled"
    if is_terminal(status):
        return "cancelled"
    if status == "open" and first_seen and not partially_filled:
        return "created"
    return "updated"


class OrderLedger:
    """One wallet's delivered order states: names each transition, drops what is not progress.

    An update is new if the order is unseen, or it was not finished and the
    update changes its status or lowers its remaining size. So a transition
    reconstructed from REST after a gap and the same one arriving live are
    delivered once, whichever comes first.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self._capacity = capacity
        self._last: OrderedDict[int, tuple[str, float]] = OrderedDict()

    def accept(self, order: Order) -> str | None:
        """The action for this update, or None if it is not news."""
        previous = self._last.get(order.id)
        if previous is not None:
            status, remaining = previous
            if is_terminal(status) or (order.status == status and order.remaining >= remaining):
                return None
        self._last[order.id] = (order.status, order.remaining)
        self._last.move_to_end(order.id)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return order_action(order.status, previous is None, order.remaining < order.amount)

    def state(self, oid: int) -> tuple[str, float] | None:
        return self._last.get(oid)

    def open_orders(self) -> set[int]:
        return {oid for oid, (status, _) in self._last.items() if not is_terminal(status)}

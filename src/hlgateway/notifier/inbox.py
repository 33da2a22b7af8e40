"""The gateway's events waiting for the notifier: bounded, conflating (sans I/O).

The events of lossless streams (fills, order updates) are kept, in order, up to
`capacity`; one beyond it is refused (`offer` answers False) and the feed stops
reading that stream until `has_room` again, then resumes it with `since` the
last one taken in: the gateway replays the rest (or says it cannot, and the
fills are reloaded). So a database outage that stops the consumer costs memory
for `capacity` events, and nothing is lost.

Snapshots conflate: prices merge per symbol into one pending event, an
account's state replaces the pending one of that wallet. They keep the place of
their first pending arrival, so the order of everything else is unchanged.
`Gap` and `Refused` (a few per subscription) are always taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from hlgateway.notifier.events import Account, FeedEvent, Fills, OrderEvent, Prices


@dataclass(frozen=True)
class _Latest:
    """A place in the order for the pending snapshot of `key`."""

    key: Hashable


class Inbox:
    def __init__(self, capacity: int = 1000, resume_below: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.resume_below = capacity // 2 if resume_below is None else resume_below
        self._order: deque[FeedEvent | _Latest] = deque()
        self._latest: dict[Hashable, FeedEvent] = {}
        self.lossless = 0  # lossless events waiting
        self.conflated = 0  # snapshots merged into a pending one
        self.refused = 0  # lossless events refused (their stream was paused)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def has_room(self) -> bool:
        """Paused streams may resume: the consumer has caught up well below capacity."""
        return self.lossless < max(1, self.resume_below)

    def offer(self, event: FeedEvent) -> bool:
        """Take `event` in; False (nothing taken) for a lossless event beyond capacity."""
        match event:
            case Prices():
                self._conflate("prices", event)
            case Account():
                self._conflate(("account", event.wallet), event)
            case Fills() | OrderEvent():
                if self.lossless >= self.capacity:
                    self.refused += 1
                    return False
                self.lossless += 1
                self._order.append(event)
            case _:
                self._order.append(event)
        return True

    def take(self) -> FeedEvent | None:
        """The oldest event, or None when empty."""
        if not self._order:
            return None
        item = self._order.popleft()
        if isinstance(item, _Latest):
            return self._latest.pop(item.key)
        if isinstance(item, Fills | OrderEvent):
            self.lossless -= 1
        return item

    def _conflate(self, key: Hashable, event: Prices | Account) -> None:
        pending = self._latest.get(key)
        if pending is None:
            self._order.append(_Latest(key))
            self._latest[key] = event
            return
        self.conflated += 1
        if isinstance(pending, Prices) and isinstance(event, Prices):
            self._latest[key] = Prices({**pending.prices, **event.prices})
        else:
            self._latest[key] = event

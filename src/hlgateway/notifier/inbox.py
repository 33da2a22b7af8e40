"""The gateway's events waiting for the notifier: bounded, conflating (sans I/O).

The events of lossless streams (fills, order updates) are kept, in order, up to
`capacity`; one beyond it is refused (`offer` answers False) and the feed stops
reading that stream until `has_room` again, then resumes it with `since` the
last one taken in: the gateway replays the rest (or says it cannot, and the
fills are reloaded). A stream with nothing waiting always gets one event in, even
when the inbox is full, so that a busy stream's replay cannot starve a quiet one:
the bound is `capacity` plus one per stream. So a database outage that stops the
consumer costs bounded memory, and nothing is lost.

Snapshots conflate: prices merge per symbol into one pending event, an
account's state replaces the pending one of that wallet. They keep the place of
their first pending arrival, so the order of everything else is unchanged.
`Gap` and `Refused` (a few per subscription) are always taken.
"""

from __future__ import annotations

from collections import Counter, deque
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
        self._per_stream: Counter[tuple[str, str]] = Counter()
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
                stream = _stream(event)
                if self.lossless >= self.capacity and self._per_stream[stream]:
                    self.refused += 1
                    return False
                self.lossless += 1
                self._per_stream[stream] += 1
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
            stream = _stream(item)
            self._per_stream[stream] -= 1
            if not self._per_stream[stream]:
                del self._per_stream[stream]
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


def _stream(event: Fills | OrderEvent) -> tuple[str, str]:
    return ("fills" if isinstance(event, Fills) else "orders", event.wallet)

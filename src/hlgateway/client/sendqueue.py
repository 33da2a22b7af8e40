"""The bounded queue of what is sent while the link is down (sans I/O).

Subscriptions and rooms are not queued: the registry restores them. The queue
holds everything else (raw `send`, pings, room publishes by bots, ...) until the
next `welcome`, in order. When it is full, the send is refused with
`SendQueueFull` instead of silently dropping something older.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from hlgateway.client.errors import SendQueueFull

T = TypeVar("T")


class SendQueue(Generic[T]):
    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.max_size = max_size
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self.max_size:
            raise SendQueueFull(f"{self.max_size} messages already wait for the link")
        self._items.append(item)

    def put_front(self, items: Iterable[T]) -> None:
        """Put back what a dropped link never wrote, ahead of newer items.
        These were accepted once, so the bound does not refuse them."""
        self._items.extendleft(reversed(list(items)))

    def drain(self) -> list[T]:
        items = list(self._items)
        self._items.clear()
        return items

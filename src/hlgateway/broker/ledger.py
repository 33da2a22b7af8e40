"""The exactly-once ledger of one lossless stream: the item ids it published. Sans I/O.

The feeds publish fills, order transitions and trades as items with ids
(`Broker.publish_items`). A feed that starts again from where its stream had
been delivered to (a client that let go of the stream and came back, a restart,
a handover) re-reads a little of what it gave before: the stream's ledger drops
those items. The Redis engine keeps its ledger in Redis, shared by every node
(broker/lua/publish.lua); the memory and durable engines keep this one per
stream (the durable engine also in its store, on each publication's row).
"""

from __future__ import annotations

from collections import OrderedDict

# Item ids kept per stream: a feed started again re-reads the seconds before where
# its stream had been delivered to, not hours (a burst of fills stays well inside).
CAPACITY = 1024


class ItemLedger:
    """One stream's published item ids (the newest CAPACITY) and their expiry.

    An id is kept as its hash (this process's: the durable engine stores the ids
    themselves and hashes them again at a start): ~165 bytes an item, not ~215."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: OrderedDict[int, float] = OrderedDict()

    def add(self, item: str, expires: float, now: float) -> bool:
        """True if the item was not published before (or its entry expired)."""
        key = hash(item)
        known = self.items.get(key)
        if known is not None and known > now:
            return False
        self.items[key] = expires
        self.items.move_to_end(key)
        if len(self.items) > CAPACITY:
            self.items.popitem(last=False)
        return True

    def trim(self) -> None:
        """Back to CAPACITY after items were put in directly (a start rebuilding it)."""
        while len(self.items) > CAPACITY:
            self.items.popitem(last=False)

    def forget(self, item: str) -> None:
        """An item whose publication was dropped (never stored): not published after all."""
        self.items.pop(hash(item), None)

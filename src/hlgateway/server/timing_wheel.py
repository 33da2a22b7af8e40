"""When each connection next needs the sweeper: a timing wheel of client ids. Sans I/O.

A connection needs attention only now and then: a ping every
`heartbeat_interval`, a check when it has been silent for `heartbeat_timeout`,
a close when its token expires. Visiting all of them every tick costs a
Python call per connection per second (at 10k connections, as much CPU as a
tick's broadcast to them); the wheel hands the sweeper only those due.

A connection is filed under the tick at which it is next due (ticks of
`resolution` seconds); `due(now)` takes every id filed at or before now's tick.
Filing an id again (its due time moved earlier: a token refresh) leaves the
older entry behind; the caller knows an entry is stale because the tick it was
filed under is not the one the connection was last filed at (`filed` returns
it). Ids, not connections, are filed: a connection that closed is not kept
alive by the wheel, its entry only finds nobody when its tick comes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class TimingWheel:
    def __init__(self, resolution: float, now: float) -> None:
        self.resolution = resolution
        self._buckets: dict[int, list[str]] = {}
        self._done = math.floor(now / resolution)  # every tick up to this one was taken

    def file(self, key: str, due: float) -> int:
        """File `key` for `due` (seconds, the caller's clock); returns the tick it went to.

        Never a tick already taken: something due in the past is due at the next one.
        """
        tick = max(math.ceil(due / self.resolution), self._done + 1)
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [key]
        else:
            bucket.append(key)
        return tick

    def due(self, now: float) -> list[tuple[int, str]]:
        """Every (tick, key) filed for a tick up to `now`'s, in tick order; they leave the wheel."""
        last = math.floor(now / self.resolution)
        out: list[tuple[int, str]] = []
        if last <= self._done:
            return out
        ticks: Iterable[int]
        if last - self._done <= len(self._buckets):
            ticks = range(self._done + 1, last + 1)
        else:  # a long pause: fewer buckets than ticks skipped, look at the buckets
            ticks = sorted(t for t in self._buckets if t <= last)
        for tick in ticks:
            bucket = self._buckets.pop(tick, None)
            if bucket is not None:
                out += [(tick, key) for key in bucket]
        self._done = last
        return out

    def __len__(self) -> int:
        """Entries filed (stale ones included)."""
        return sum(len(bucket) for bucket in self._buckets.values())

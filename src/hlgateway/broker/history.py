"""One lossless stream's positions and bounded history. Sans I/O.

Offsets grow by one per message within an epoch; the kept messages are always
the newest ones, contiguous, so the offset of each is derived from the stream's
head and needs no storage of its own. A message costs its payload, a float and
two deque slots (docs/protocol.md has the measured bytes per message). A stream
that a store keeps (the durable engine) also notes where each kept message is
stored (`stored_at`: its sequence number in the store's log).
"""

from __future__ import annotations

from collections import deque

from hlgateway.broker.base import Publication, Retention
from hlgateway.protocol.positions import Position


class StreamHistory:
    __slots__ = (
        "_payloads",
        "_retention",
        "_times",
        "epoch",
        "last_published",
        "offset",
        "stored_at",
    )

    def __init__(
        self, epoch: str, retention: Retention, now: float, *, stored: bool = False
    ) -> None:
        self.epoch = epoch
        self.offset = 0  # the last message's offset; 0 before the first
        self.last_published = now
        self._retention = retention
        self._payloads: deque[bytes] = deque()
        self._times: deque[float] = deque()
        # Kept by a store: each kept message's place in it, oldest first.
        self.stored_at: deque[int] | None = deque() if stored else None

    @classmethod
    def restored(
        cls,
        epoch: str,
        retention: Retention,
        offset: int,
        kept: list[tuple[float, bytes, int]],
        last_published: float,
    ) -> StreamHistory:
        """A stream as a store kept it: its head and its newest messages (contiguous,
        ending at the head; already positioned), each with its place in the store."""
        stream = cls(epoch, retention, last_published, stored=True)
        stream.offset = offset
        assert stream.stored_at is not None
        for when, payload, place in kept[-retention.max_size :]:
            stream._times.append(when)
            stream._payloads.append(payload)
            stream.stored_at.append(place)
        return stream

    @property
    def position(self) -> Position:
        return Position(self.offset, self.epoch)

    @property
    def first_offset(self) -> int:
        """The oldest kept message's offset (offset + 1 when none is kept)."""
        return self.offset - len(self._payloads) + 1

    def __len__(self) -> int:
        return len(self._payloads)

    def append(self, payload: bytes, now: float, stored_at: int = 0) -> int:
        """Keep a message already positioned at `offset + 1`; returns that offset."""
        self.offset += 1
        if self.stored_at is not None:
            self.stored_at.append(stored_at)
        self._payloads.append(payload)
        self._times.append(now)
        self.last_published = now
        self.trim(now)
        return self.offset

    def trim(self, now: float) -> None:
        retention = self._retention
        payloads, times = self._payloads, self._times
        stored_at = self.stored_at
        while len(payloads) > retention.max_size or (
            len(payloads) > retention.size and now - times[0] > retention.ttl
        ):
            payloads.popleft()
            times.popleft()
            if stored_at is not None:
                stored_at.popleft()

    def since(self, position: Position) -> list[Publication] | None:
        """Every message after `position`, or None if not all of them are kept
        (another epoch, an offset this stream never reached, or trimmed away)."""
        if position.epoch != self.epoch or not 0 <= position.offset <= self.offset:
            return None
        first = self.first_offset
        if position.offset + 1 < first:
            return None
        start = position.offset + 1 - first
        payloads = self._payloads
        return [
            Publication(first + index, payloads[index]) for index in range(start, len(payloads))
        ]

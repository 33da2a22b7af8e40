"""Where a client is in each lossless stream, and what each message means (sans I/O).

A lossless stream (`user_orders`, `user_fills`, `trades`, a room) numbers its
messages: `offset` grows by 1 per message within an `epoch`. A `Cursor` keeps
the last position the application was given and judges every message:

- the next one (offset = last + 1, same epoch) is delivered and advances it;
- one seen already (offset <= last) is a duplicate and dropped;
- one further ahead means messages are missing: it is dropped, and the client
  heals the gap by subscribing again with `since` on the same link (the gateway
  keeps the subscription and replays what is missing, the dropped message
  included);
- one of a new epoch means the stream's history was lost: it is delivered, and
  the application must reload its state (a resync).

The cursor advances only on messages the application actually gets, never to
the `subscribed` reply's head while a replay is still coming, so a drop during
a replay loses nothing either. A gateway without positions (v1) sends no
`epoch`: the cursor then stays idle and every message is delivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hlgateway.protocol.positions import Position

# What `since=` takes: a Position, or the wire's {"offset": N, "epoch": E}.
Since = Position | Mapping[str, Any]


def as_position(since: Since) -> Position:
    """A `since=` argument: a `Position`, or the wire's `{"offset": N, "epoch": E}`
    (as stored by an application that keeps JSON)."""
    if isinstance(since, Position):
        return since
    if isinstance(since, Mapping):
        offset, epoch = since.get("offset"), since.get("epoch")
        if isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
            return Position(offset, epoch)
    raise TypeError(f"since must be a Position or {{'offset': int, 'epoch': str}}, not {since!r}")


class Verdict(StrEnum):
    DELIVER = "deliver"  # the next message: give it to the application
    DUPLICATE = "duplicate"  # offset <= last in this epoch (or an epoch left behind): drop
    HEAL = "heal"  # messages are missing before this one: drop it, subscribe again with `since`
    SKIP = "skip"  # missing messages are being healed already: drop, the replay brings it
    NEW_EPOCH = "new_epoch"  # history lost mid-stream: deliver, the application must resync


class Joined(StrEnum):
    """What a `subscribed` (or `room_joined`) reply means for the stream."""

    UNTRACKED = "untracked"  # no positions (snapshot stream, or a v1 gateway)
    FRESH = "fresh"  # no position was asked for: live from the stream's head
    RECOVERED = "recovered"  # every message after `since` follows, then live data
    RESYNC = "resync"  # the gap cannot be replayed: live only, reload your state


# Epochs left behind: their late messages (in flight while the stream moved on) are dropped.
_RETIRED = 4


@dataclass
class Cursor:
    position: Position | None = None
    healing: bool = False  # a resubscribe with `since` is out to fill a gap
    duplicates: int = 0
    gaps: int = 0
    resyncs: int = 0
    _retired: deque[str] = field(default_factory=lambda: deque(maxlen=_RETIRED))

    def since(self) -> Position | None:
        """What to send as `since` on the next subscribe."""
        return self.position

    def on_joined(self, offset: int | None, epoch: str | None, recovered: bool | None) -> Joined:
        """The gateway confirmed the subscription with its head `offset`/`epoch`."""
        self.healing = False
        if epoch is None:
            return Joined.UNTRACKED
        head = Position(offset or 0, epoch)
        current = self.position
        if recovered is True and current is not None and current.epoch == epoch:
            return Joined.RECOVERED  # keep the position: the replay advances it
        if recovered is None and current is None:
            self.position = head
            return Joined.FRESH
        if recovered is None and current is not None and current.epoch == epoch:
            # No answer about recovery (the request had no `since`): the head is where
            # this subscription starts; whatever we had before it is ours already.
            if head.offset > current.offset:
                self.position = head
                self.resyncs += 1
                return Joined.RESYNC
            return Joined.FRESH
        self._move_to(head)
        self.resyncs += 1
        return Joined.RESYNC

    def on_data(self, offset: int | None, epoch: str | None) -> Verdict:
        """Judge one data message of the stream."""
        if offset is None or epoch is None:
            return Verdict.DELIVER
        current = self.position
        if current is None:
            self.position = Position(offset, epoch)
            return Verdict.DELIVER
        if epoch != current.epoch:
            if epoch in self._retired:
                self.duplicates += 1
                return Verdict.DUPLICATE
            self._move_to(Position(offset, epoch))
            self.resyncs += 1
            return Verdict.NEW_EPOCH
        if offset <= current.offset:
            self.duplicates += 1
            return Verdict.DUPLICATE
        if offset == current.offset + 1:
            self.position = Position(offset, epoch)
            return Verdict.DELIVER
        if self.healing:
            return Verdict.SKIP
        self.healing = True
        self.gaps += 1
        return Verdict.HEAL

    def rewind(self, position: Position) -> None:
        """Back to `position`: what came after it is wanted again (a replay is asked for)."""
        self.position = position
        self.healing = False

    def disconnected(self) -> None:
        """The link dropped: the reconnect's subscribe with `since` heals whatever is missing."""
        self.healing = False

    def _move_to(self, position: Position) -> None:
        old = self.position
        if old is not None and old.epoch != position.epoch:
            self._retired.append(old.epoch)
        self.position = position


# -- what the application is told ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resync:
    """A lossless stream could not be resumed where it stopped: messages were lost for
    this client, so reload the state they build (open orders, fills) from elsewhere.

    The `resync` event, and an item of the subscription's iterator (before the
    first message after the break). `position` is where the stream goes on from.
    """

    channel: str
    params: dict[str, Any]
    reason: str  # "not recovered" | "epoch changed" | "buffer overflow"
    previous: Position | None  # the last position received before the break
    position: Position | None  # the stream's position at the resync


@dataclass(frozen=True, slots=True)
class Recovered:
    """The `recovered` event: the gateway replays every message after `since`."""

    channel: str
    params: dict[str, Any]
    since: Position
    head: Position  # the stream's last published position when it answered

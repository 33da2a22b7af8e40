"""Leases: which node holds an upstream stream. Sans I/O, with an injected clock.

A lease is a Redis key set with `SET NX PX ttl` to the holder's node id and
renewed by the holder well before it expires; when the holder dies, the key
expires and another node that wants the stream takes it. This module decides
*when* to try, renew and give up; the I/O layer (upstream/ownership.py) runs
the commands and reports their outcome:

- `ok=True`: the command succeeded (the lease is ours until `sent_at + ttl`:
  counted from when the command was sent, never from when the answer came);
- `ok=False`: Redis answered no (another node holds it);
- `ok=None`: Redis could not be reached.

A lease that cannot be renewed because Redis is unreachable is kept (and
reported unconfirmed) rather than dropped: while Redis is away no node's
output reaches the other nodes anyway, and should the holder be cut off alone,
the shared exactly-once ledgers keep the lossless streams exactly once while
two nodes feed them. The first renewal that reaches Redis decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Command(enum.Enum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"


class Event(enum.Enum):
    GAINED = "gained"  # start feeding the stream
    LOST = "lost"  # stop feeding it


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl: float = 5.0  # how long a lease lives without renewal (the takeover time)
    renew_every: float = 1.5  # a holder renews this often
    retry_every: float = 1.0  # a node that wants a lease held elsewhere tries this often

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.ttl / 2:
            raise ValueError("renew_every must be positive and under half the ttl")
        if self.retry_every <= 0:
            raise ValueError("retry_every must be positive")


class Lease:
    """One stream's lease as this node sees it."""

    __slots__ = (
        "confirmed_until",
        "held",
        "in_flight",
        "key",
        "next_at",
        "timing",
        "wanted",
    )

    def __init__(self, key: str, timing: LeaseTiming) -> None:
        self.key = key
        self.timing = timing
        self.wanted = False
        self.held = False
        self.confirmed_until = 0.0  # held for sure until then
        self.in_flight: Command | None = None
        self.next_at = 0.0  # when to send the next command

    def want(self, now: float) -> None:
        if not self.wanted:
            self.wanted = True
            self.next_at = now

    def unwant(self, now: float) -> None:
        self.wanted = False
        self.next_at = now

    @property
    def idle(self) -> bool:
        """Neither wanted nor held nor waiting for an answer: may be forgotten."""
        return not self.wanted and not self.held and self.in_flight is None

    def confirmed(self, now: float) -> bool:
        return self.held and now < self.confirmed_until

    def poll(self, now: float) -> Command | None:
        """The command to send now, if any (at most one in flight per lease)."""
        if self.in_flight is not None or now < self.next_at:
            return None
        if self.held and not self.wanted:
            command = Command.RELEASE
        elif self.held:
            command = Command.RENEW
        elif self.wanted:
            command = Command.ACQUIRE
        else:
            return None
        self.in_flight = command
        return command

    def outcome(self, command: Command, ok: bool | None, sent_at: float) -> Event | None:
        """What came of `command`, sent at `sent_at`; the event for the feed, if any."""
        assert self.in_flight is command, "one command in flight at a time"
        self.in_flight = None
        timing = self.timing
        if command is Command.RELEASE:
            # Released, or Redis unreachable (the key then expires by itself).
            self.held = False
            self.next_at = sent_at + timing.retry_every
            return Event.LOST
        if ok is None:
            # Unreachable: try again soon; a held lease stays held (see above).
            self.next_at = sent_at + timing.retry_every
            return None
        if ok:
            gained = not self.held
            self.held = True
            self.confirmed_until = sent_at + timing.ttl
            self.next_at = sent_at + timing.renew_every
            return Event.GAINED if gained else None
        lost = self.held
        self.held = False
        self.next_at = sent_at + timing.retry_every
        return Event.LOST if lost else None

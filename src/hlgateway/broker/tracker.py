"""A node's view of one lossless stream kept in Redis. Sans I/O.

Publications reach a node over PUB/SUB, which loses what is sent while the
node's subscription is down and says nothing about it. The tracker keeps the
stream's delivery to the local hub contiguous: it passes on each offset once and
in order, holds what arrives after a gap while the missing offsets are fetched
from the stream's history, and drops what it already passed on.

When the stream changes epoch under it (a flushed or restarted Redis, or a
history that went backwards and was given a new epoch: broker/lua/verify.lua),
the tracker asks the store where the new epoch starts for it (its base) and
goes on from there: the node's subscribers get the new epoch from its first
message, never an offset of the old one again.

It also merges a subscriber's history read with live delivery (the broker
contract: the replay covers everything up to the moment the subscriber is
attached). While a read is in flight, every publication the tracker passes on
is caught; when the read's answer arrives, the replay is the history and the
caught publications, merged by offset and cut at the last offset passed on:
what is beyond it reaches the subscriber live, once attached, so nothing falls
between replay and live and nothing is given twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hlgateway.broker.base import Publication, Replay
from hlgateway.protocol.positions import Position


@dataclass(slots=True)
class Stored:
    """A history read's answer: the stream's epoch and (committed) head, the
    entries after the reader's `since` (all of them, in order, when they are
    kept; from the epoch's base when the reader followed another epoch), and
    the epoch's base: the offset before its first message (0 but for an epoch
    that began after its history went backwards)."""

    epoch: str
    head: int
    entries: list[Publication] = field(default_factory=list)
    base: int = 0
    top: int = 0  # the last offset stored, committed or not (at least `head`)


@dataclass(slots=True)
class Catch:
    """The publications passed on while one read was in flight."""

    caught: list[Publication] = field(default_factory=list)


# Epochs left behind: their late messages are dropped, not taken for a new epoch.
_LEFT = 4


class StreamTracker:
    __slots__ = (
        "_catches",
        "_incoming",
        "_left",
        "_pending",
        "epoch",
        "epochs",
        "fetching",
        "gaps_lost",
        "offset",
    )

    def __init__(self) -> None:
        self.epoch: str | None = None  # None: no baseline yet
        self.offset = 0  # the last offset passed on, in `epoch`
        self.fetching = False  # a history fetch (a gap, or a new epoch's start) is in flight
        self.gaps_lost = 0  # offsets skipped because the history no longer had them
        self.epochs = 0  # times the stream went on in a new epoch here
        self._pending: dict[int, Publication] = {}
        # Publications of a newer epoch, held until the store says where it starts.
        self._incoming: tuple[str, dict[int, Publication]] | None = None
        self._left: list[str] = []
        self._catches: list[Catch] = []

    # -- live ---------------------------------------------------------------
    def receive(self, epoch: str, publication: Publication) -> tuple[list[Publication], int | None]:
        """A publication from PUB/SUB: what to pass on now, in order, and the
        offset to fetch history after (a gap to fill), if any."""
        if self.epoch is None:
            # First sight of the stream: nothing before was wanted here.
            self.epoch, self.offset = epoch, publication.offset - 1
        elif epoch != self.epoch:
            if epoch in self._left:
                return [], None  # late news of an epoch this node left behind
            # The stream went on in a new epoch (its history was lost, or went
            # backwards): hold what comes in it until the store says where it
            # starts (the fetch answers from its base).
            if self._incoming is None or self._incoming[0] != epoch:
                self._incoming = (epoch, {})
            self._incoming[1][publication.offset] = publication
            if self.fetching:
                return [], None
            self.fetching = True
            return [], self.offset
        if publication.offset <= self.offset:
            return [], None
        if publication.offset > self.offset + 1:
            self._pending[publication.offset] = publication
            if self.fetching:
                return [], None
            self.fetching = True
            return [], self.offset
        return self._pass([publication]), None

    def fetched(self, stored: Stored | None) -> list[Publication]:
        """A fetch's answer (None: it failed): pass on what it closes, and
        skip what the history no longer has. A store in another epoch than this
        node's (the fetch was asked with this node's epoch, so its entries come
        from the new epoch's base): go on in that epoch, from its base."""
        self.fetching = False
        out: list[Publication] = []
        if stored is not None and self.epoch is not None and stored.epoch != self.epoch:
            self._switch(stored)
        if stored is not None and stored.epoch == self.epoch:
            for publication in stored.entries:
                if publication.offset == self.offset + 1:
                    out += self._pass([publication])
        self._pending = {o: p for o, p in self._pending.items() if o > self.offset}
        if self._pending:
            # What is still missing is gone (trimmed, or the fetch failed):
            # go on from the oldest publication held.
            first = min(self._pending)
            self.gaps_lost += first - self.offset - 1
            self.offset = first - 1
            out += self._pass([])
        return out

    def _switch(self, stored: Stored) -> None:
        """Go on in the store's epoch, from its base. What was held of the old
        epoch is not delivered (its history is gone); what came of the new one
        waits to follow the base in order."""
        assert self.epoch is not None
        self._left = [*self._left, self.epoch][-_LEFT:]
        self.gaps_lost += len(self._pending)  # held behind a gap of the old epoch: gone
        incoming = self._incoming
        self._pending = dict(incoming[1]) if incoming and incoming[0] == stored.epoch else {}
        self._incoming = None
        self.epoch, self.offset = stored.epoch, stored.base
        self.epochs += 1

    def _pass(self, publications: list[Publication]) -> list[Publication]:
        out: list[Publication] = []
        for publication in publications:
            self.offset = publication.offset
            out.append(publication)
        pending = self._pending
        while self.offset + 1 in pending:
            publication = pending.pop(self.offset + 1)
            self.offset = publication.offset
            out.append(publication)
        for catch in self._catches:
            catch.caught += out
        return out

    # -- reads ------------------------------------------------------------
    def open_catch(self) -> Catch:
        catch = Catch()
        self._catches.append(catch)
        return catch

    def close_catch(self, catch: Catch) -> None:
        self._catches.remove(catch)

    def resolve(self, catch: Catch, stored: Stored, since: Position | None) -> Replay:
        """The replay for a subscriber attached now, from its read's answer
        (`stored`, read after the node was subscribed) and what was caught."""
        self.close_catch(catch)
        if self.epoch is None:
            # No baseline yet: the store is the truth from here on.
            self.epoch, self.offset = stored.epoch, stored.head
            self._pending.clear()
        elif self.epoch != stored.epoch:
            # The stream went on in a new epoch that this node's delivery has not
            # reached yet (its fetch is on the way, or the next publication asks
            # for it): it will pass the new epoch on from its base, so that is
            # where this subscriber joins too; its earlier position is in another
            # epoch, or not yet delivered here.
            return Replay(Position(stored.base, stored.epoch), False)
        position = Position(self.offset, stored.epoch)
        if since is None:
            return Replay(position)
        # What this node passed on counts as reached, even beyond the store's
        # committed head (its commit lost at a failover, the entries not: read.lua).
        reached = max(stored.head, self.offset)
        if since.epoch != stored.epoch or not stored.base <= since.offset <= reached:
            return Replay(position, False)
        merged: dict[int, Publication] = {}
        for publication in stored.entries:
            merged[publication.offset] = publication
        for publication in catch.caught:
            merged[publication.offset] = publication
        wanted = [merged.get(o) for o in range(since.offset + 1, self.offset + 1)]
        if any(p is None for p in wanted):
            return Replay(position, False)  # not all of it is kept: give none
        return Replay(position, True, [p for p in wanted if p is not None])

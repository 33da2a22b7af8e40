"""A node's view of one lossless stream kept in Redis. Sans I/O.

Publications reach a node over PUB/SUB, which loses what is sent while the
node's subscription is down and says nothing about it. The tracker keeps the
stream's delivery to the local hub contiguous: it passes on each offset once and
in order, holds what arrives after a gap while the missing offsets are fetched
from the stream's history, and drops what it already passed on.

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
    """A history read's answer: the stream's epoch and head, and the entries
    after the reader's `since` (all of them, in order, when they are kept)."""

    epoch: str
    head: int
    entries: list[Publication] = field(default_factory=list)


@dataclass(slots=True)
class Catch:
    """The publications passed on while one read was in flight."""

    caught: list[Publication] = field(default_factory=list)


class StreamTracker:
    __slots__ = ("_catches", "_pending", "epoch", "fetching", "gaps_lost", "offset")

    def __init__(self) -> None:
        self.epoch: str | None = None  # None: no baseline yet
        self.offset = 0  # the last offset passed on, in `epoch`
        self.fetching = False  # a history fetch for a gap is in flight
        self.gaps_lost = 0  # offsets skipped because the history no longer had them
        self._pending: dict[int, Publication] = {}
        self._catches: list[Catch] = []

    # -- live ---------------------------------------------------------------
    def receive(self, epoch: str, publication: Publication) -> tuple[list[Publication], int | None]:
        """A publication from PUB/SUB: what to pass on now, in order, and the
        offset to fetch history after (a gap to fill), if any."""
        if self.epoch is None:
            # First sight of the stream: nothing before was wanted here.
            self.epoch, self.offset = epoch, publication.offset - 1
        elif epoch != self.epoch:
            # The stream's history was lost (a flushed or restarted Redis): its
            # offsets start again; give the new epoch from its start.
            self.epoch, self.offset = epoch, 0
            self._pending.clear()
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
        """A gap fetch's answer (None: it failed): pass on what it closes, and
        skip what the history no longer has."""
        self.fetching = False
        out: list[Publication] = []
        if stored is not None and stored.epoch == self.epoch:
            for publication in stored.entries:
                if publication.offset == self.offset + 1:
                    out += self._pass([publication])
        if self._pending:
            # What is still missing is gone (trimmed, or the fetch failed):
            # go on from the oldest publication held.
            first = min(self._pending)
            self.gaps_lost += first - self.offset - 1
            self.offset = first - 1
            out += self._pass([])
        return out

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
        if self.epoch != stored.epoch:
            # No baseline yet, or the stream lost its history since this node
            # last heard of it: the store is the truth from here on.
            self.epoch, self.offset = stored.epoch, stored.head
            self._pending.clear()
        position = Position(self.offset, stored.epoch)
        if since is None:
            return Replay(position)
        if since.epoch != stored.epoch or not 0 <= since.offset <= stored.head:
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

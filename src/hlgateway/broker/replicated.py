"""Lossless publications that wait for the replicas (the Redis engine with `min_replicas`).

Redis replicates asynchronously: a primary answers a write before any replica
has it, and a failover promotes a replica that may lack the last writes. Had a
client been given one of them, the new primary would give its offset to another
message, and the client, coming back with `since`, would be handed other
content, or told it missed nothing. So when the engine has replicas to wait for
(`min_replicas`, 1 by default with Sentinel: broker/redis_url.py), a lossless
publication becomes visible only once that many replicas have it:

1. store: broker/lua/publish.lua with `commit` 0 (shared ledger, offset,
   history; no PUBLISH, and the stream's committed head does not move, so
   reads and replays do not give it either);
2. `WAIT min_replicas timeout`, on the same connection: the replicas have
   everything this connection wrote;
3. commit: broker/lua/commit.lua per stream, up to the head its store answered:
   PUBLISH to every node, and the committed head moves up.

A publication stays in flight until its commit answers: after a lost connection
it is sent again, in order (its ledger ids make that safe, and a store that the
new primary has, but that was never committed, is committed then). So a
failover loses nothing a client was given, and nothing the upstream gave.

One round at a time: while a round's WAIT is out, what is published waits, and
goes in the next round (written right after that round's commits): batching
grows with the load, and a commit never waits behind a later round's WAIT.

Replicas that do not answer within the timeout: the round waits again, and the
owner asks the sentinels (`ReplicaWait` decides, below). If they name another
primary (a failover in progress, a partition), the connection goes and every
publication not committed is sent to the new one. If the server is still the
primary and fewer than `min_replicas` of its replicas are up (the sentinels
see them down: a dead replica, or the old primary after a failover, not back
yet), no WAIT can succeed and no failover can promote one of them: the rounds
are committed without them (each counted, /health `unreplicated`) until the
sentinels see enough replicas again; otherwise (replicas up but not
acknowledging, as a replica being promoted in a manual failover), the round
keeps waiting: never visible before a replica that may become the primary has
it. Without Sentinel nobody can tell, and the round keeps waiting.

The lane has a connection of its own, so that waiting for a replica never holds
up a snapshot publication (prices, books). Sans I/O but for the connection it
writes to: the owner (broker/redis.py) builds the commands, asks the sentinels,
and is told what was committed or refused.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import time
from collections.abc import Callable
from typing import Any

import hiredis

from hlgateway.broker.resp import RespConnection, RespError, encode
from hlgateway.protocol.channels import Topic

IN_FLIGHT = 1024  # publications in one round
WAIT_TIMEOUT_MS = 1000  # how long a round waits for the replicas before the sentinels are asked
SHORT_WAIT_MS = 10  # ... while the sentinels see too few replicas up (they may come back)
TRUST_FOR = 5.0  # seconds the sentinels' "too few replicas up" holds before they are asked again

# (topic, prefix or snapshot payload, items, suffix, ledger keep ms): one publication
# (broker/redis.py says more: a snapshot's suffix, delivery positions).
Entry = tuple[Topic, bytes, list[tuple[str, bytes]], bytes, int]


class Round:
    """Publications stored together, waited for together, committed together."""

    __slots__ = ("commits", "entries", "heads", "publications")

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.heads: dict[Topic, int] = {}  # each stream's head after its stores
        self.commits = 0  # commit answers still awaited
        self.publications = 0  # entries that were publications (not plain writes)


class Decision(enum.Enum):
    COMMIT = "commit"  # the replicas have it
    UNREPLICATED = "unreplicated"  # commit without them: too few are up to ever have it
    WAIT = "wait"  # wait again


class ReplicaWait:
    """When a stored round may be committed (sans I/O, injected clock)."""

    def __init__(
        self,
        min_replicas: int,
        clock: Callable[[], float] = time.monotonic,
        timeout_ms: int = WAIT_TIMEOUT_MS,
    ) -> None:
        self.min_replicas = min_replicas
        self._clock = clock
        self._timeout_ms = timeout_ms
        self._down_until = float("-inf")  # the sentinels said too few replicas are up
        self.asking = False  # the sentinels are being asked
        self.late = 0  # WAITs timed out in a row
        self.timeouts = 0  # ... since start
        self.unreplicated = 0  # rounds committed without the replicas

    @property
    def degraded(self) -> bool:
        """Committing without the replicas (the sentinels see too few up)."""
        return self._clock() < self._down_until

    def timeout_ms(self) -> int:
        """How long the next WAIT may take."""
        return SHORT_WAIT_MS if self.degraded else self._timeout_ms

    def answered(self, acked: int) -> tuple[Decision, bool]:
        """A WAIT's answer (replicas that acknowledged): what to do with the
        round, and whether to ask the sentinels now."""
        if acked >= self.min_replicas:
            self.late = 0
            self._down_until = float("-inf")  # enough replicas are back
            return Decision.COMMIT, False
        self.late += 1
        self.timeouts += 1
        if self.degraded:
            self.unreplicated += 1
            return Decision.UNREPLICATED, False
        ask = not self.asking
        self.asking = True
        return Decision.WAIT, ask

    def told(self, up: int | None) -> None:
        """The sentinels' answer: replicas of this primary they see up (None: no
        answer, or no sentinels; the server is still the primary either way)."""
        self.asking = False
        if up is not None and up < self.min_replicas:
            self._down_until = self._clock() + TRUST_FOR
        else:
            self._down_until = float("-inf")


class ReplicatedLane:
    def __init__(
        self,
        min_replicas: int,
        *,
        store: Callable[[Entry], bytes],
        commit: Callable[[Topic, int], bytes],
        committed: Callable[[Topic, str, int], None],
        refused: Callable[[hiredis.ReplyError, RespConnection | None], bool],
        ask: Callable[[], None],
        max_queued: int,
        policy: ReplicaWait | None = None,
    ) -> None:
        self.min_replicas = min_replicas
        self._store = store
        self._commit = commit
        self._committed = committed
        self._refused = refused
        self._ask = ask
        self._max_queued = max_queued
        self.policy = policy or ReplicaWait(min_replicas)
        self.connection: RespConnection | None = None
        self.queue: collections.deque[Entry] = collections.deque()
        self._rounds: collections.deque[Round] = collections.deque()
        self._waiting: Round | None = None  # the round whose WAIT is out
        self._due = False
        self.published = 0  # publications committed
        self.dropped = 0  # over the queue's bound while Redis was away

    @property
    def queued(self) -> int:
        """Publications not yet committed (waiting, or in a round)."""
        return len(self.queue) + sum(len(r.entries) for r in self._rounds)

    # -- the connection -----------------------------------------------------
    def attach(self, connection: RespConnection) -> None:
        """Write on `connection` from now on (the owner made sure it may)."""
        self.connection = connection
        connection.on_writable = self.schedule
        self.schedule()

    def detach(self) -> None:
        """The connection is gone: every publication not committed goes back to
        the front of the queue, in order, to be sent again on the next one."""
        self.connection = None
        self._waiting = None
        again = [entry for round_ in self._rounds for entry in round_.entries]
        self._rounds.clear()
        self.queue.extendleft(reversed(again))

    # -- publishing ---------------------------------------------------------------
    def enqueue(self, entry: Entry) -> None:
        if len(self.queue) >= self._max_queued:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(entry)
        self.schedule()

    def schedule(self) -> None:
        # Once per loop turn: what was published in this turn goes in one round.
        if not self._due and self.connection is not None:
            self._due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._due = False
        conn = self.connection
        if conn is None or not conn.is_open or not conn.writable or self._waiting is not None:
            return  # on reconnecting, once the buffer drains, or at the WAIT's answer
        count = min(len(self.queue), IN_FLIGHT)
        if count <= 0:
            return
        queue = self.queue
        round_ = Round([queue.popleft() for _ in range(count)])
        self._rounds.append(round_)
        self._waiting = round_
        chunks = [self._store(entry) for entry in round_.entries]
        replies: list[Any] = [functools.partial(self._stored, round_, e[0]) for e in round_.entries]
        chunks.append(encode("WAIT", self.min_replicas, self.policy.timeout_ms()))
        replies.append(functools.partial(self._waited, round_))
        conn.send(b"".join(chunks), replies)

    def _stored(self, round_: Round, topic: Topic, reply: Any) -> None:
        if isinstance(reply, RespError):
            return  # the connection is gone: detach() sends the round again
        if isinstance(reply, hiredis.ReplyError):
            self._refused(reply, self.connection)  # retried on a new connection, or dropped
            return
        if not isinstance(reply, list):
            return  # a plain write that rides along (a delivery position): nothing to commit
        round_.publications += 1
        head, epoch = int(reply[0]), reply[1]
        if epoch:  # else nothing stored and no stream: nothing to commit
            round_.heads[topic] = max(head, round_.heads.get(topic, 0))

    def _waited(self, round_: Round, reply: Any) -> None:
        if isinstance(reply, RespError):
            return
        conn = self.connection
        if isinstance(reply, hiredis.ReplyError):
            # WAIT itself refused (it never should): the connection is not to be trusted.
            if conn is not None:
                conn.fail(RespError(f"Redis refused WAIT: {reply}"))
            return
        if conn is None or not conn.is_open:
            return
        decision, ask = self.policy.answered(int(reply))
        if ask:
            self._ask()
        if decision is Decision.WAIT:
            # Not visible before a replica that may become the primary has it.
            conn.send(
                encode("WAIT", self.min_replicas, self.policy.timeout_ms()),
                [functools.partial(self._waited, round_)],
            )
            return
        self._waiting = None
        if round_.heads:
            round_.commits = len(round_.heads)
            conn.send(
                b"".join(self._commit(topic, head) for topic, head in round_.heads.items()),
                [functools.partial(self._committed_one, round_, t) for t in round_.heads],
            )
        else:
            self._done(round_)
        self.flush()  # the next round goes right behind these commits

    def _committed_one(self, round_: Round, topic: Topic, reply: Any) -> None:
        if isinstance(reply, RespError):
            return
        if isinstance(reply, hiredis.ReplyError):
            if self._refused(reply, self.connection):
                return  # sent again on the next connection
        else:
            epoch = reply[1]
            if epoch:
                self._committed(topic, epoch.decode(), int(reply[0]))
        round_.commits -= 1
        if round_.commits == 0:
            self._done(round_)

    def _done(self, round_: Round) -> None:
        if self._rounds and self._rounds[0] is round_:
            self._rounds.popleft()
            self.published += round_.publications
        if self.queue:
            self.schedule()

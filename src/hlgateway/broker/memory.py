"""The in-memory engine: one process, history in this process's memory.

Everything happens synchronously: a publication reaches the hub before
`publish` returns, and `read_now` answers at once, so a recovering subscriber
is attached in the same step as its replay is taken and nothing can fall in
between. A restart loses the history: every stream starts a new epoch. One node
alone: it feeds every stream its clients want (broker/coordination.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from hlgateway.broker.base import Broker, BrokerStats, Publication, Replay, Retention, with_position
from hlgateway.broker.coordination import Coordinator, FeedControl, LocalCoordinator
from hlgateway.broker.history import StreamHistory
from hlgateway.protocol.channels import Topic
from hlgateway.protocol.positions import Position


class MemoryBroker(Broker):
    def __init__(
        self,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        node: str | None = None,
    ) -> None:
        super().__init__(node)
        self.retention = retention if retention is not None else Retention()
        self._clock = clock
        self._streams: dict[Topic, StreamHistory] = {}
        self._latest: dict[Topic, bytes] = {}
        self._wanted: set[Topic] = set()

    # -- publishing -------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes) -> None:
        offset = 0
        if topic.lossless:
            stream = self._stream(topic)
            offset = stream.offset + 1
            payload = with_position(payload, offset, stream.epoch)
            stream.append(payload, self._clock())
        elif topic.snapshot:
            if topic not in self._wanted:
                return
            self._latest[topic] = payload
        if self._sink is not None:
            self._sink(topic, payload, offset)

    def _stream(self, topic: Topic) -> StreamHistory:
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = StreamHistory(
                secrets.token_hex(6), self.retention, self._clock()
            )
        return stream

    # -- demand -----------------------------------------------------------
    def demand(self, topic: Topic) -> None:
        self._wanted.add(topic)

    def drop(self, topic: Topic) -> None:
        self._wanted.discard(topic)
        self._latest.pop(topic, None)

    # -- reading ----------------------------------------------------------
    def read_now(self, topic: Topic, since: Position | None) -> Replay:
        if topic.snapshot:
            latest = self._latest.get(topic)
            return Replay(None, False, [Publication(0, latest)] if latest is not None else [])
        if not topic.lossless:
            return Replay(None)
        stream = self._stream(topic)
        if since is None:
            return Replay(stream.position)
        missed = stream.since(since)
        if missed is None:
            return Replay(stream.position, False)
        return Replay(stream.position, True, missed)

    async def read(self, topic: Topic, since: Position | None) -> Replay:
        return self.read_now(topic, since)

    # -- upkeep -----------------------------------------------------------
    def upkeep(self) -> None:
        """Trim old messages; forget streams nobody wants that went quiet for the TTL."""
        now = self._clock()
        ttl = self.retention.ttl
        for topic, stream in list(self._streams.items()):
            stream.trim(now)
            if topic not in self._wanted and now - stream.last_published > ttl:
                del self._streams[topic]

    # -- coordination and state -------------------------------------------------
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        return LocalCoordinator(feeds)

    def stats(self) -> BrokerStats:
        retained = sum(len(s) for s in self._streams.values())
        return BrokerStats(
            "memory",
            streams=len(self._streams),
            retained=retained,
            details={"retainedMessages": retained},
        )

"""The in-memory engine: one process, history in this process's memory.

Everything happens synchronously: a publication reaches the hub before
`publish` returns, and `read_now` answers at once, so a recovering subscriber
is attached in the same step as its replay is taken and nothing can fall in
between. A restart loses the history: every stream starts a new epoch. One node
alone: it feeds every stream its clients want (broker/coordination.py), each
wallet's user stream from where it had been delivered to while the stream's
history lasts (a client that let go of a stream and comes back with `since`
gets what happened meanwhile, not a replay with a hole in it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

from hlgateway.broker.base import Broker, BrokerStats, Publication, Replay, Retention, with_position
from hlgateway.broker.coordination import Coordinator, FeedControl, LocalCoordinator
from hlgateway.broker.history import StreamHistory
from hlgateway.broker.ledger import ItemLedger
from hlgateway.protocol.channels import USER_FILLS, USER_LEDGER, USER_ORDERS, Topic
from hlgateway.protocol.positions import Position

POSITIONED_CHANNELS = frozenset({USER_FILLS, USER_ORDERS, USER_LEDGER})
FORGET_POSITIONS_EVERY = 60.0  # seconds between sweeps of positions nobody feeds


def own_key(topic: Topic, wallet: str) -> tuple[str, str]:
    """Where one topic's own stream stopped for a wallet, kept beside the wallet's
    (channel, wallet) positions (and stored with them): a channel name followed by
    the topic's params, which no channel name is."""
    return (f"{topic.channel} {topic.params_json.decode()}", wallet)


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
        self._ledgers: dict[Topic, ItemLedger] = {}  # the item ids each stream published
        self._latest: dict[Topic, bytes] = {}
        self._wanted: set[Topic] = set()
        # (channel, wallet) -> (delivered up to, exchange ms; when noted, this clock)
        self._positions: dict[tuple[str, str], tuple[int, float]] = {}
        self._last_forget_positions = clock()

    # -- publishing -------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes, retained: bytes | None = None) -> None:
        offset = 0
        if topic.lossless:
            stream = self._stream(topic)
            offset = stream.offset + 1
            payload = with_position(payload, offset, stream.epoch)
            stream.append(payload, self._clock())
        elif topic.snapshot:
            if topic not in self._wanted:
                return
            self._latest[topic] = payload if retained is None else retained
        if self._sink is not None:
            self._sink(topic, payload, offset)

    def publish_items(
        self,
        topic: Topic,
        prefix: bytes,
        items: list[tuple[str, bytes]],
        suffix: bytes,
        keep: float,
    ) -> None:
        """Only the items the stream never published (a feed started again where the
        stream had been delivered to re-reads a little of what it gave)."""
        if not topic.lossless:
            super().publish_items(topic, prefix, items, suffix, keep)
            return
        ledger = self._ledgers.get(topic)
        if ledger is None:
            ledger = self._ledgers[topic] = ItemLedger()
        now = self._clock()
        fresh = [item for item_id, item in items if ledger.add(item_id, now + keep, now)]
        if fresh:
            self.publish(topic, prefix + b",".join(fresh) + suffix)

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
        if topic.channel in POSITIONED_CHANNELS:
            self._note_behind(topic)

    def _note_behind(self, topic: Topic) -> list[tuple[str, str]]:
        """The topic is let go: its stream has what each wallet's feed delivered so
        far. Kept as its own position, for when it is fed again while the wallet's
        feed went on for another topic meanwhile (`behind`); one already kept (it
        was let go before catching up) stays. Returns the keys noted."""
        noted = []
        now = self._clock()
        for wallet in topic.wallets:
            own = own_key(topic, wallet)
            known = self._positions.get((topic.channel, wallet))
            if known is not None and own not in self._positions:
                self._positions[own] = (known[0], now)
                noted.append(own)
        return noted

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

    # -- delivery positions -------------------------------------------------
    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:
        known = self._positions.get((channel, wallet))
        if known is None or known[0] < time_ms:
            self._positions[(channel, wallet)] = (time_ms, self._clock())

    def restarted(self, channel: str, wallet: str, time_ms: int) -> None:
        self._positions[(channel, wallet)] = (time_ms, self._clock())

    def starts(self, topic: Topic) -> Mapping[str, int]:
        if topic.channel not in POSITIONED_CHANNELS:
            return {}
        positions = self._positions
        return {
            wallet: positions[(topic.channel, wallet)][0]
            for wallet in topic.wallets
            if (topic.channel, wallet) in positions
        }

    def behind(self, topic: Topic) -> Mapping[str, int]:
        if topic.channel not in POSITIONED_CHANNELS:
            return {}
        positions = self._positions
        return {
            wallet: positions[own_key(topic, wallet)][0]
            for wallet in topic.wallets
            if own_key(topic, wallet) in positions
        }

    def caught_up(self, topic: Topic, wallet: str) -> None:
        self._positions.pop(own_key(topic, wallet), None)

    def _sweep_positions(self, now: float) -> list[tuple[str, str]]:
        """Forget the positions of wallet streams nobody wants that went quiet for the
        history window (what they would recover has left the history anyway)."""
        fed = {(t.channel, w) for t in self._wanted for w in t.wallets}
        fed |= {own_key(t, w) for t in self._wanted for w in t.wallets}  # catching up
        ttl = self.retention.ttl
        gone = [
            key
            for key, (_, noted) in self._positions.items()
            if key not in fed and now - noted > ttl
        ]
        for key in gone:
            del self._positions[key]
        return gone

    # -- upkeep -----------------------------------------------------------
    def upkeep(self) -> None:
        """Trim old messages; forget streams nobody wants that went quiet for the TTL."""
        now = self._clock()
        ttl = self.retention.ttl
        for topic, stream in list(self._streams.items()):
            stream.trim(now)
            if topic not in self._wanted and now - stream.last_published > ttl:
                del self._streams[topic]
                self._ledgers.pop(topic, None)
        if now - self._last_forget_positions >= FORGET_POSITIONS_EVERY:
            self._last_forget_positions = now
            self._sweep_positions(now)

    # -- coordination and state -------------------------------------------------
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        return LocalCoordinator(feeds, starts=self.starts, behind=self.behind)

    def stats(self) -> BrokerStats:
        retained = sum(len(s) for s in self._streams.values())
        return BrokerStats(
            "memory",
            streams=len(self._streams),
            retained=retained,
            details={"retainedMessages": retained},
        )

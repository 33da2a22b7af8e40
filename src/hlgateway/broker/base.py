"""The broker interface: where a publication goes, and what is kept of it.

The node (gateway.py) publishes each message once, as the bytes of a complete
`data` message; the engine behind this interface positions it, keeps it, and
hands it to the `Sink` of every node that wants its topic (this process only,
for the memory engine; every process sharing the Redis, for the Redis engine).

What an engine keeps depends on the topic's kind (protocol/channels.py):
- lossless streams (trades, user orders and fills, rooms) get an `offset` and
  an `epoch` spliced into every payload, and a bounded history that `read`
  serves to a client coming back with `since`;
- snapshot streams (prices, books, accounts, candles...) keep their latest
  payload, which `read` serves to every new subscriber (or, for an update that
  is not a whole snapshot, the whole one published beside it: `retained`);
- notices (`system`) are passed on and not kept.

The memory and Redis engines are two modules behind this interface
(broker/memory.py, broker/redis.py); the hub and the sessions do not know which
one runs. Besides the publications, an engine answers three questions the node
asks without knowing which engine runs (centrifuge's Broker, with its
coordination and stats):
- which node feeds each upstream stream: `coordinator` (broker/coordination.py;
  one node alone feeds everything, nodes on Redis hold leases);
- what was wanted when the gateway last stopped, to feed again at once, and
  where each wallet's user streams had been delivered to: `resume`, `delivered`
  (an engine that forgets everything at a restart answers nothing);
- its state for /health and /metrics: `stats`;
- what one node reads from the exchange for all of them (the market list):
  `shared`, so that N nodes or workers behind one IP do not spend N times the
  REST weight on the same answer.
"""

from __future__ import annotations

import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hlgateway.protocol.channels import Topic
from hlgateway.protocol.positions import Position

if TYPE_CHECKING:
    from hlgateway.broker.coordination import Coordinator, FeedControl


@dataclass(frozen=True, slots=True)
class Publication:
    """One kept message: its offset (0 for a snapshot) and its complete payload."""

    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history each lossless stream keeps.

    A message goes when it is both beyond the last `size` messages and older
    than `ttl` seconds, or beyond `max_size` (the hard bound on memory). A stream
    nobody wants and nobody published to for `ttl` seconds is forgotten whole
    (its epoch with it).
    """

    size: int = 1000
    ttl: float = 600.0
    max_size: int = 2_000


@dataclass(slots=True)
class Replay:
    """What `read` found for a subscriber joining a topic.

    `position` is the stream's head once `publications` are delivered (None for
    streams without positions). `recovered` says whether every message after
    `since` is in `publications` (always False without `since`); a partial
    replay is never given: when the engine cannot give all, it gives none.
    For a snapshot stream `publications` holds the latest value, if any.
    """

    position: Position | None
    recovered: bool = False
    publications: list[Publication] = field(default_factory=list)


# (topic, complete payload, offset or 0): the node's local delivery.
Sink = Callable[[Topic, bytes, int], None]


@dataclass(frozen=True, slots=True)
class BrokerStats:
    """An engine's state and its counts since start, for /health and /metrics.

    The counts an engine has no use for stay 0 (the memory engine has no
    connection to lose); `details` are the engine's own facts for /health
    (its URL, its open channels), never a secret.
    """

    engine: str
    degraded: bool = False  # the backing store is away: this node serves what it can alone
    streams: int = 0  # lossless streams known here
    retained: int = 0  # messages kept in history, when the engine counts them
    queued: int = 0  # publications not yet stored (waiting, or written and unanswered)
    published: int = 0  # publications stored
    received: int = 0  # publications received from other nodes for wanted topics
    gaps: int = 0  # offsets the delivery skipped, fetched from the history
    gaps_lost: int = 0  # skipped offsets the history no longer had
    refused: int = 0  # publications the store refused for good
    dropped_while_away: int = 0  # publications dropped over the bound while the store was away
    disconnects: int = 0  # connections to the store lost
    read_failures: int = 0  # reads that failed and answered live data only
    rewound: int = 0  # streams found behind what this node had seen (lost writes): new epoch
    new_epochs: int = 0  # times a delivered stream went on in a new epoch on this node
    recommitted: int = 0  # streams whose commits a failover lost (not their entries): made again
    write_failures: int = 0  # writes to the store that failed (retried)
    details: Mapping[str, Any] = field(default_factory=dict)

    def health(self) -> dict[str, Any]:
        """The /health view: the engine, its status, its facts and its non-zero counts."""
        counts = {
            "published": self.published,
            "received": self.received,
            "gaps": self.gaps,
            "gapsLost": self.gaps_lost,
            "publishRefused": self.refused,
            "droppedWhileAway": self.dropped_while_away,
            "disconnects": self.disconnects,
            "readFailures": self.read_failures,
            "rewound": self.rewound,
            "newEpochs": self.new_epochs,
            "recommitted": self.recommitted,
            "commitFailures": self.write_failures,
        }
        return {
            "engine": self.engine,
            "status": "degraded" if self.degraded else "ok",
            **self.details,
            "streams": self.streams,
            **{name: value for name, value in counts.items() if value},
        }


def node_name() -> str:
    """A node name unique in a fleet: host, process and a little randomness."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Shared:
    """A value one node reads from outside and the engine's other nodes take from it
    (the exchange's market list, upstream/pool.py). `lead()`: whether this node is
    the one to read it now (it may change: a reader that died is replaced); the
    reader `put`s each value it read, the others `get` the latest one (None: none
    recent, read it yourself). This base is a node alone: it always reads, and
    there is nobody to share with."""

    async def lead(self) -> bool:
        return True

    async def put(self, value: bytes) -> None:
        return None

    async def get(self) -> bytes | None:
        return None


class EngineStartError(RuntimeError):
    """The engine cannot start as configured (a state directory held by another
    process, a store of a newer schema); the message says why and what to do."""


def with_position(payload: bytes, offset: int, epoch: str) -> bytes:
    """Splice `"offset":N,"epoch":"E"` into a data message: bytes, not a re-encode.

    `payload` is one JSON object ending in `}`; epochs are generated by the
    engines and hold no character that needs escaping.
    """
    return b'%s,"offset":%d,"epoch":"%s"}' % (payload[:-1], offset, epoch.encode())


class Broker(ABC):
    """One engine: memory (one process) or Redis (many processes as one)."""

    def __init__(self, node: str | None = None) -> None:
        self._sink: Sink | None = None
        self._write_out: Callable[[], None] | None = None
        self.node = node or node_name()  # this node in /health and in upstream leases

    def bind(self, sink: Sink, flush: Callable[[], None] | None = None) -> None:
        """Where this node's publications are delivered (the gateway's hub); `flush`
        writes out what was delivered so far without waiting for the end of the loop
        turn (an engine that holds publications back a turn, until they are stored,
        calls it after handing over such a batch)."""
        self._sink = sink
        self._write_out = flush

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the backing service, if any."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect from the backing service, if any."""

    @abstractmethod
    def publish(self, topic: Topic, payload: bytes, retained: bytes | None = None) -> None:
        """Position (lossless), keep, and deliver a complete data message to every
        node that wants the topic. Never blocks; never re-encodes per node.

        `retained`, for a snapshot stream: what to keep for new subscribers instead
        of `payload`, when `payload` is an update that is not a whole snapshot (a
        `candles` update carries the current candle; a new subscriber gets the last
        500). Subscribers already there get `payload` only."""

    def publish_items(
        self,
        topic: Topic,
        prefix: bytes,
        items: list[tuple[str, bytes]],
        suffix: bytes,
        keep: float,
    ) -> None:
        """Publish `prefix + item,item,... + suffix` (a complete data message) with
        only the items whose id was never published on the topic before (within
        `keep` seconds, by any node), or nothing if none is new.

        The exactly-once ledger shared by every node (fills by id, order
        transitions, trades): an engine whose nodes each run their own ledgers
        (memory: one node) may publish all items, since the caller's ledger
        already removed what this node gave before.
        """
        self.publish(topic, prefix + b",".join(item for _, item in items) + suffix)

    @abstractmethod
    def demand(self, topic: Topic) -> None:
        """This node wants the topic's publications (its first local subscriber)."""

    @abstractmethod
    def drop(self, topic: Topic) -> None:
        """This node no longer wants the topic (its last subscriber left)."""

    def read_now(self, topic: Topic, since: Position | None) -> Replay | None:
        """`read` without waiting, when the engine can answer at once; else None."""
        return None

    @abstractmethod
    async def read(self, topic: Topic, since: Position | None) -> Replay:
        """What a new subscriber of the topic needs before live data.

        Contract: the caller attaches the subscriber to the hub in the same loop
        turn as this returns, and the returned replay covers every publication of
        the topic up to then (an engine that waits for a remote store collects
        what its sink received meanwhile, so nothing falls between the replay and
        live data, and nothing is given twice).
        """

    def upkeep(self) -> None:  # noqa: B027 - optional hook
        """Periodic housekeeping (trimming history), called about once a second."""

    # -- coordination --------------------------------------------------------
    @abstractmethod
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        """Who feeds the upstream streams this node's clients want (the node
        calls it once). `can_feed`: whether this node's upstream can serve now
        (an engine that shares streams between nodes leaves them to others
        while it cannot)."""

    def shared(self, name: str, ttl: float) -> Shared:
        """The value `name` shared by this engine's nodes; a reader not heard of for
        `ttl` seconds is replaced, and a value older than that is not served. An
        engine of one node: a `Shared` that always reads."""
        return Shared()

    async def resume(self) -> list[Topic]:
        """The topics wanted (subscribed or lingering) when the gateway last
        stopped, to feed again before any client returns; the node calls it once,
        after `start`. An engine that keeps nothing across a restart: none."""
        return []

    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:  # noqa: B027
        """A wallet's user stream (`channel`) has delivered every event up to
        `time_ms` (the exchange's time): where its feed starts again after a
        restart. An engine that keeps nothing across a restart ignores it."""

    def restarted(self, channel: str, wallet: str, time_ms: int) -> None:
        """A wallet's user stream (`channel`) starts (again) at `time_ms` on this
        node, perhaps before where it had been delivered to (a topic coming back
        from where it stopped): delivered up to there, and no further, from now on."""
        self.delivered(channel, wallet, time_ms)

    def starts(self, topic: Topic) -> Mapping[str, int]:
        """Where each wallet's feed of `topic` starts delivering from (exchange
        time, ms), for the wallets whose position the engine kept; the others
        start from now."""
        return {}

    def behind(self, topic: Topic) -> Mapping[str, int]:
        """Where `topic`'s own stream stopped (exchange time, ms) for the wallets
        whose user stream went on being fed for other topics after this one was
        let go (another topic of the same channel and wallet): what it missed is
        read back for it alone before its live data. Empty for an engine that
        keeps no such positions."""
        return {}

    def caught_up(self, topic: Topic, wallet: str) -> None:  # noqa: B027
        """`topic`'s stream has everything the wallet's feed delivered (its `behind`
        position, if any, is done with)."""

    # -- state ------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> BrokerStats:
        """The engine's state and counts, for /health and /metrics."""

    def health(self) -> dict[str, Any]:
        """The engine's state for /health."""
        return self.stats().health()

    @property
    def degraded(self) -> bool:
        return self.stats().degraded

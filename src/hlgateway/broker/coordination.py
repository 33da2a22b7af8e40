"""Coordination: which node feeds each upstream stream.

Hyperliquid's limits are per IP (links, subscriptions, tracked users), so a
gateway holds each upstream stream once, however many clients and nodes want
it. The node tells its engine's coordinator when a topic gets its first local
subscriber (`want`) and loses its last (`unwant`); the coordinator starts and
stops the topic's feed (upstream/feeds.py, through `FeedControl`) on the node
that is to feed it:

- an engine of one node (memory, and the durable engine) feeds every stream
  here, at once: `LocalCoordinator`, below. A refusal of the upstream (its
  budget spent) reaches the subscriber that asked, as a ProtocolError out of
  `want`;
- nodes sharing a Redis hold a lease per demanded stream, and the holder feeds
  it for all of them (broker/ownership.py).

Where a feed starts delivering a wallet's user streams from is the engine's
answer too (`Broker.starts`): now, for an engine that remembers nothing, or
where the stream had been delivered to before a restart or a handover; and
where a topic's own stream stopped when the wallet went on being fed for
another topic meanwhile (`Broker.behind`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hlgateway.broker.placement import NodeCapacity, Stream
from hlgateway.protocol.channels import Topic


class FeedControl(Protocol):
    """What a coordinator drives: the node's upstream feeds (upstream/feeds.py)."""

    def on_first(
        self,
        topic: Topic,
        since: Mapping[str, int] | None = None,
        *,
        placed: bool = False,
        behind: Mapping[str, int] | None = None,
    ) -> None:
        """Start feeding `topic`; each wallet's user streams deliver from
        `since[wallet]` (the exchange's time, ms), the others from now. Raises
        ProtocolError when the upstream refuses (its budget is spent). `placed`:
        the fleet put it here by every node's capacity (broker/placement.py), so
        a wallet polled beyond the accepted latency is served late, not refused.
        `behind`: where the topic's own stream stopped for wallets that went on
        being fed for other topics (`Broker.behind`)."""

    def on_last(self, topic: Topic) -> None:
        """Stop feeding `topic`."""

    def capacity(self) -> NodeCapacity:
        """What this node's upstream can feed (its address's budgets)."""

    def stream(self, topic: Topic, key: str) -> Stream:
        """What feeding `topic` costs a node, as placement counts it (`key`: its id)."""


@dataclass(frozen=True, slots=True)
class CoordinationStats:
    """Who feeds what, as this node sees it, for /health and /metrics."""

    mode: str  # "alone": this node feeds every stream; "leases": nodes share them
    feeding: int = 0  # topics this node feeds
    held: int = 0  # leases held (mode "leases")
    unconfirmed: int = 0  # held leases Redis has not confirmed lately
    demanded: int = 0  # topics some node wants (every node's demand, as last read)
    local_demand: int = 0  # topics this node's clients want
    gained: int = 0  # streams this node started feeding for the gateway, since start
    lost: int = 0  # streams it stopped feeding (released, lost, or refused)
    # The whole fleet as the last placement saw it (broker/placement.py): its
    # wallets on WebSockets and polled, and those it cannot serve in time; None
    # without a placement (one node alone, or no placer yet).
    fleet: Mapping[str, Any] | None = None

    def health(self) -> dict[str, Any]:
        if self.mode == "alone":
            return {"mode": "alone: this node feeds every stream", "feeding": self.feeding}
        return {
            "held": self.held,
            "unconfirmed": self.unconfirmed,
            "demanded": self.demanded,
            "localDemand": self.local_demand,
            "gained": self.gained,
            "lost": self.lost,
            "fleet": self.fleet,
        }


class Coordinator(ABC):
    @abstractmethod
    def want(self, topic: Topic) -> None:
        """This node's clients want `topic` (its first local subscriber, or a
        topic resumed at start). A coordinator that feeds it here at once lets
        the upstream's refusal (ProtocolError) through: nothing is kept then."""

    @abstractmethod
    def unwant(self, topic: Topic) -> None:
        """This node's clients no longer want `topic`."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Begin coordinating (the node calls it once its engine has started)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop feeding everything, and let other nodes take over at once."""

    @abstractmethod
    def stats(self) -> CoordinationStats: ...


class LocalCoordinator(Coordinator):
    """One node alone: it feeds every topic its clients want, here and now."""

    def __init__(
        self,
        feeds: FeedControl,
        starts: Callable[[Topic], Mapping[str, int]] = lambda _: {},
        on_stop: Callable[[], None] = lambda: None,
        behind: Callable[[Topic], Mapping[str, int]] = lambda _: {},
    ) -> None:
        self._feeds = feeds
        self._starts = starts  # the engine's: where each wallet's feed starts
        self._behind = behind  # the engine's: where a topic's own stream stopped
        self._on_stop = on_stop  # the engine's: what it does once feeding stops
        self._feeding: dict[Topic, None] = {}
        self._stopped = False

    @property
    def feeding(self) -> Collection[Topic]:
        """The topics fed here (as LeaseCoordinator.feeding)."""
        return self._feeding.keys()

    def want(self, topic: Topic) -> None:
        if topic in self._feeding or self._stopped:
            return
        # may refuse
        self._feeds.on_first(topic, self._starts(topic) or None, behind=self._behind(topic) or None)
        self._feeding[topic] = None

    def unwant(self, topic: Topic) -> None:
        if topic in self._feeding:
            del self._feeding[topic]
            self._feeds.on_last(topic)

    async def stop(self) -> None:
        self._stopped = True
        self._on_stop()
        feeding, self._feeding = self._feeding, {}
        for topic in feeding:
            self._feeds.on_last(topic)

    def stats(self) -> CoordinationStats:
        return CoordinationStats("alone", feeding=len(self._feeding))

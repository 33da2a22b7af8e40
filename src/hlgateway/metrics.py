"""`/metrics` in Prometheus' text format, with the standard client library.

Counting is per message and per topic, never per client: a data frame adds
its subscriber count to `messages_out` once. Gauges (connections, queue bytes)
are read when Prometheus scrapes, through `GatewayStats`: the few counts they
show, not the gateway itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hlgateway.websocket.frames import Frame

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OutboxCounts(Protocol):
    """Totals over every client's output queue."""

    @property
    def queued_bytes(self) -> int: ...
    @property
    def conflated(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def slow_consumers(self) -> int: ...


@dataclass(frozen=True)
class UpstreamCounts:
    """The upstream's state and its counts since start, read at each scrape."""

    degraded: bool = False  # a link that should be up is down, or no market list yet
    links_open: int = 0
    reconnects: int = 0
    fills_recovered: int = 0  # fills the live stream missed, brought back over REST
    wallet_recoveries: int = 0
    rest_failures: int = 0


@dataclass(frozen=True)
class BrokerCounts:
    """The shared broker's state and counts since start (all 0 with the memory engine)."""

    degraded: bool = False  # Redis is away: this node serves only what it can alone
    queued: int = 0  # publications not yet answered by Redis (waiting, or written)
    published: int = 0
    received: int = 0  # PUB/SUB messages for topics this node wants
    gaps: int = 0  # offsets PUB/SUB skipped, fetched from the history
    gaps_lost: int = 0  # skipped offsets the history no longer had
    refused: int = 0  # publications Redis refused for good
    dropped_while_away: int = 0  # publications dropped over the bound while Redis was away
    disconnects: int = 0
    leases_held: int = 0  # upstream streams this node feeds for the whole gateway
    leases_gained: int = 0
    leases_lost: int = 0


class GatewayStats(Protocol):
    """What the gauges read at each scrape (the Gateway provides it)."""

    @property
    def connection_count(self) -> int: ...
    @property
    def subscription_count(self) -> int: ...
    @property
    def topic_count(self) -> int: ...
    @property
    def upstream_subscription_count(self) -> int: ...
    @property
    def outbox_stats(self) -> OutboxCounts: ...
    @property
    def upstream_counts(self) -> UpstreamCounts: ...
    @property
    def broker_counts(self) -> BrokerCounts: ...


class _GatewayGauges(Collector):
    def __init__(self, source: GatewayStats) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        src = self._source
        stats = src.outbox_stats
        upstream = src.upstream_counts
        broker = src.broker_counts
        for name, doc, value in (
            ("hlgateway_connections", "Open client connections", src.connection_count),
            ("hlgateway_subscriptions", "Client subscriptions", src.subscription_count),
            ("hlgateway_topics", "Distinct topics with subscribers", src.topic_count),
            (
                "hlgateway_upstream_subscriptions",
                "Upstream subscriptions",
                src.upstream_subscription_count,
            ),
            ("hlgateway_queue_bytes", "Bytes waiting in client output queues", stats.queued_bytes),
            (
                "hlgateway_conflated",
                "Superseded snapshot frames dropped for lagging clients",
                stats.conflated,
            ),
            (
                "hlgateway_dropped_frames",
                "Frames dropped with a closed or slow client",
                stats.dropped,
            ),
            ("hlgateway_slow_consumer_closes", "Clients closed with 4008", stats.slow_consumers),
            (
                "hlgateway_upstream_degraded",
                "1 while an upstream link that should be up is down (or markets are not loaded)",
                int(upstream.degraded),
            ),
            (
                "hlgateway_upstream_links",
                "Upstream WebSocket links open",
                upstream.links_open,
            ),
            (
                "hlgateway_upstream_reconnects",
                "Upstream link reconnects since start",
                upstream.reconnects,
            ),
            (
                "hlgateway_fills_recovered",
                "Fills the live stream missed that were recovered over REST, since start",
                upstream.fills_recovered,
            ),
            (
                "hlgateway_wallet_recoveries",
                "Wallet gap recoveries over REST, since start",
                upstream.wallet_recoveries,
            ),
            (
                "hlgateway_rest_failures",
                "Failed REST calls to the upstream, since start",
                upstream.rest_failures,
            ),
            ("hlgateway_broker_degraded", "1 while Redis is away", int(broker.degraded)),
            (
                "hlgateway_broker_queued",
                "Publications not yet answered by Redis",
                broker.queued,
            ),
            ("hlgateway_broker_published", "Publications to Redis, since start", broker.published),
            (
                "hlgateway_broker_received",
                "Messages received from Redis for wanted topics, since start",
                broker.received,
            ),
            (
                "hlgateway_broker_gaps",
                "Offsets PUB/SUB skipped, fetched from the history, since start",
                broker.gaps,
            ),
            (
                "hlgateway_broker_gaps_lost",
                "Skipped offsets the history no longer had, since start",
                broker.gaps_lost,
            ),
            (
                "hlgateway_broker_publish_refused",
                "Publications Redis refused for good, since start",
                broker.refused,
            ),
            (
                "hlgateway_broker_dropped_while_away",
                "Publications dropped over the bound while Redis was away, since start",
                broker.dropped_while_away,
            ),
            (
                "hlgateway_broker_disconnects",
                "Connections to Redis lost, since start",
                broker.disconnects,
            ),
            (
                "hlgateway_leases_held",
                "Upstream streams this node feeds for every node",
                broker.leases_held,
            ),
            ("hlgateway_leases_gained", "Upstream leases taken, since start", broker.leases_gained),
            ("hlgateway_leases_lost", "Upstream leases lost, since start", broker.leases_lost),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self, source: GatewayStats) -> None:
        self.registry = CollectorRegistry()
        self.messages_out = Counter(
            "hlgateway_messages_out",
            "Data messages written to clients (one per subscriber)",
            ["channel"],
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "hlgateway_bytes_out",
            "Data message bytes written to clients (JSON, before compression)",
            ["channel"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hlgateway_delivery_latency_seconds",
            "From the upstream message to the last subscriber's socket write",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        # Order entry: each relayed post once, by how it ended (ok, err, or the refusal's code).
        self.posts = Counter(
            "hlgateway_posts",
            "Posts (signed orders) by outcome: ok, err, or the refusal's code",
            ["outcome"],
            registry=self.registry,
        )
        self.post_seconds = Histogram(
            "hlgateway_post_seconds",
            "From a post's arrival to its post_result (Hyperliquid's answer relayed)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
        self.registry.register(_GatewayGauges(source))

    def count(self, channel: str, subscribers: int, size: int) -> None:
        if subscribers:
            self.messages_out.labels(channel).inc(subscribers)
            self.bytes_out.labels(channel).inc(subscribers * size)

    def observe_delivery(self, frames: list[Frame]) -> None:
        now = time.monotonic()
        for frame in frames:
            self.latency.observe(now - frame.born)

    def render(self) -> bytes:
        return generate_latest(self.registry)

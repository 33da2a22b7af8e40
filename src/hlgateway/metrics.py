"""`/metrics` in Prometheus' text format, with the standard client library.

Counting is per message and per topic, never per client: a data frame adds
its subscriber count to `messages_out` once. Everything else is read when
Prometheus scrapes, through `GatewayStats` (the few counts shown, not the
gateway itself): levels as gauges, counts since start as counters (`_total`),
units in the names (`_bytes`, `_seconds`). `promtool check metrics` passes on
the output (tests/deploy/test_monitoring.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hlgateway.websocket.frames import Frame

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hlgateway.broker.base import BrokerStats
    from hlgateway.broker.coordination import CoordinationStats

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
    wallets_websocket: int = 0  # wallets on this node's upstream WebSocket user streams
    wallets_polled: int = 0  # wallets this node polls over REST
    poll_interval: float = 0.0  # seconds between two polls of each polled wallet
    poll_lag: float = 0.0  # how far the most overdue poll is behind that plan
    wallets_over_latency: int = 0  # polled wallets beyond the accepted poll interval
    rest_weight_used: float = 0.0  # REST weight spent in the last minute
    rest_weight_limit: float = 0.0  # per minute


class GatewayStats(Protocol):
    """What /metrics reads at each scrape (the Gateway provides it)."""

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
    def broker_stats(self) -> BrokerStats: ...
    @property
    def coordination_stats(self) -> CoordinationStats: ...


@dataclass(frozen=True, slots=True)
class _Reading:
    """One scrape's look at the gateway: each source read once."""

    gateway: GatewayStats
    outbox: OutboxCounts
    upstream: UpstreamCounts
    broker: BrokerStats
    leases: CoordinationStats

    @classmethod
    def of(cls, src: GatewayStats) -> _Reading:
        return cls(
            src,
            src.outbox_stats,
            src.upstream_counts,
            src.broker_stats,
            src.coordination_stats,
        )


Read = Callable[[_Reading], float]

# Levels: what is there now.
GAUGES: tuple[tuple[str, str, Read], ...] = (
    ("hlgateway_connections", "Open client connections", lambda r: r.gateway.connection_count),
    ("hlgateway_subscriptions", "Client subscriptions", lambda r: r.gateway.subscription_count),
    ("hlgateway_topics", "Distinct topics with subscribers", lambda r: r.gateway.topic_count),
    (
        "hlgateway_upstream_subscriptions",
        "Upstream subscriptions",
        lambda r: r.gateway.upstream_subscription_count,
    ),
    (
        "hlgateway_queue_bytes",
        "Bytes waiting in client output queues",
        lambda r: r.outbox.queued_bytes,
    ),
    (
        "hlgateway_upstream_degraded",
        "1 while an upstream link that should be up is down (or markets are not loaded)",
        lambda r: int(r.upstream.degraded),
    ),
    ("hlgateway_upstream_links", "Upstream WebSocket links open", lambda r: r.upstream.links_open),
    (
        "hlgateway_broker_degraded",
        "1 while the broker's store (Redis, or the state directory) cannot be written",
        lambda r: int(r.broker.degraded),
    ),
    (
        "hlgateway_broker_queued",
        "Lossless publications not yet stored (Redis, or the state directory)",
        lambda r: r.broker.queued,
    ),
    (
        "hlgateway_leases_held",
        "Upstream streams this node feeds for every node",
        lambda r: r.leases.held,
    ),
    (
        "hlgateway_upstream_poll_interval_seconds",
        "Seconds between two REST polls of each polled wallet (what the budget allows)",
        lambda r: r.upstream.poll_interval,
    ),
    (
        "hlgateway_upstream_poll_lag_seconds",
        "How far the most overdue wallet poll is behind the poll interval",
        lambda r: r.upstream.poll_lag,
    ),
    (
        "hlgateway_upstream_wallets_over_latency",
        "Polled wallets beyond HLGATEWAY_UPSTREAM_MAX_POLL_INTERVAL on this node",
        lambda r: r.upstream.wallets_over_latency,
    ),
    (
        "hlgateway_upstream_rest_weight_used",
        "REST weight spent in the last minute",
        lambda r: r.upstream.rest_weight_used,
    ),
    (
        "hlgateway_upstream_rest_weight_limit",
        "REST weight this node may spend per minute",
        lambda r: r.upstream.rest_weight_limit,
    ),
    (
        "hlgateway_fleet_wallets_over_latency",
        "Wallets the fleet can poll only beyond HLGATEWAY_UPSTREAM_MAX_POLL_INTERVAL (placement)",
        lambda r: _fleet(r, "overLatency"),
    ),
    (
        "hlgateway_fleet_unplaced_streams",
        "Demanded upstream streams no node of the fleet can take (placement)",
        lambda r: _fleet(r, "unplaced"),
    ),
)


def _fleet(reading: _Reading, key: str) -> float:
    """The whole fleet as the last placement saw it (every node the same; 0 without one)."""
    fleet = reading.leases.fleet or {}
    value = fleet.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


# Levels by a label: wallets by how they are served, on this node and fleet-wide.
LABELLED: tuple[tuple[str, str, str, dict[str, Read]], ...] = (
    (
        "hlgateway_upstream_wallets",
        "Wallets this node serves, by how",
        "mode",
        {
            "websocket": lambda r: r.upstream.wallets_websocket,
            "polled": lambda r: r.upstream.wallets_polled,
        },
    ),
    (
        "hlgateway_fleet_wallets",
        "Wallets the whole fleet serves, by how (placement)",
        "mode",
        {
            "websocket": lambda r: _fleet(r, "websocket"),
            "polled": lambda r: _fleet(r, "polled"),
        },
    ),
)

# Counts since the process started: counters (`_total`), so that rate() and
# increase() see a restart's reset as one.
COUNTERS: tuple[tuple[str, str, Read], ...] = (
    (
        "hlgateway_conflated_frames",
        "Superseded snapshot frames dropped for lagging clients",
        lambda r: r.outbox.conflated,
    ),
    (
        "hlgateway_dropped_frames",
        "Frames dropped with a closed or slow client",
        lambda r: r.outbox.dropped,
    ),
    (
        "hlgateway_slow_consumer_closes",
        "Clients closed with 4008",
        lambda r: r.outbox.slow_consumers,
    ),
    ("hlgateway_upstream_reconnects", "Upstream link reconnects", lambda r: r.upstream.reconnects),
    (
        "hlgateway_fills_recovered",
        "Fills the live stream missed that were recovered over REST",
        lambda r: r.upstream.fills_recovered,
    ),
    (
        "hlgateway_wallet_recoveries",
        "Wallet gap recoveries over REST",
        lambda r: r.upstream.wallet_recoveries,
    ),
    (
        "hlgateway_rest_failures",
        "Failed REST calls to the upstream",
        lambda r: r.upstream.rest_failures,
    ),
    (
        "hlgateway_broker_published",
        "Publications stored (Redis, or the state directory)",
        lambda r: r.broker.published,
    ),
    (
        "hlgateway_broker_received",
        "Messages received from Redis for wanted topics",
        lambda r: r.broker.received,
    ),
    (
        "hlgateway_broker_gaps",
        "Offsets PUB/SUB skipped, fetched from the history",
        lambda r: r.broker.gaps,
    ),
    (
        "hlgateway_broker_gaps_lost",
        "Skipped offsets the history no longer had",
        lambda r: r.broker.gaps_lost,
    ),
    (
        "hlgateway_broker_publish_refused",
        "Publications Redis refused for good",
        lambda r: r.broker.refused,
    ),
    (
        "hlgateway_broker_dropped_while_away",
        "Publications dropped over the bound while the store could not be written",
        lambda r: r.broker.dropped_while_away,
    ),
    (
        "hlgateway_broker_disconnects",
        "Connections to Redis lost",
        lambda r: r.broker.disconnects,
    ),
    (
        "hlgateway_broker_write_failures",
        "Writes to the state directory that failed (durable engine; retried)",
        lambda r: r.broker.write_failures,
    ),
    (
        "hlgateway_broker_read_failures",
        "Reads that failed and answered live data only",
        lambda r: r.broker.read_failures,
    ),
    (
        "hlgateway_broker_rewound",
        "Streams found behind what this node had seen (Redis lost writes): new epoch",
        lambda r: r.broker.rewound,
    ),
    (
        "hlgateway_broker_new_epochs",
        "Times a delivered stream went on in a new epoch on this node",
        lambda r: r.broker.new_epochs,
    ),
    (
        "hlgateway_broker_recommitted",
        "Streams whose commits Redis lost at a failover (not their entries): committed again",
        lambda r: r.broker.recommitted,
    ),
    ("hlgateway_leases_gained", "Upstream leases taken", lambda r: r.leases.gained),
    ("hlgateway_leases_lost", "Upstream leases lost", lambda r: r.leases.lost),
)


class _GatewayCollector(Collector):
    def __init__(self, source: GatewayStats) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        reading = _Reading.of(self._source)
        for name, doc, read in GAUGES:
            yield GaugeMetricFamily(name, doc, value=read(reading))
        for name, doc, read in COUNTERS:
            yield CounterMetricFamily(name, doc, value=read(reading))
        for name, doc, label, reads in LABELLED:
            family = GaugeMetricFamily(name, doc, labels=[label])
            for value, read in reads.items():
                family.add_metric([value], read(reading))
            yield family


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
            "hlgateway_messages_out_bytes",
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
        self.registry.register(_GatewayCollector(source))

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

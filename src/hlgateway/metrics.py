"""`/metrics` in Prometheus' text format, with the standard client library.

Counting is per message and per topic, never per client: a data frame adds
its subscriber count to `messages_out` once. Gauges (connections, queue bytes)
are read from the gateway when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hlgateway.websocket.frames import Frame

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hlgateway.gateway import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _GatewayGauges(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterable[Metric]:
        gw = self._gateway
        stats = gw.outbox_stats
        for name, doc, value in (
            ("hlgateway_connections", "Open client connections", len(gw.connections)),
            ("hlgateway_subscriptions", "Client subscriptions", gw.hub.subscription_count),
            ("hlgateway_topics", "Distinct topics with subscribers", gw.hub.topic_count),
            (
                "hlgateway_upstream_subscriptions",
                "Upstream subscriptions",
                gw.upstream.subscription_count,
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
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self, gateway: Gateway) -> None:
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
        self.registry.register(_GatewayGauges(gateway))

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

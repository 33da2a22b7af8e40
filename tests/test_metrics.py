"""/metrics reads the small GatewayStats interface: gauges are read at each scrape."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from hlgateway.metrics import BrokerCounts, Metrics, UpstreamCounts


@dataclass
class Outbox:
    queued_bytes: int = 0
    conflated: int = 0
    dropped: int = 0
    slow_consumers: int = 0


@dataclass
class Stats:
    connection_count: int = 0
    subscription_count: int = 0
    topic_count: int = 0
    upstream_subscription_count: int = 0
    outbox_stats: Outbox = field(default_factory=Outbox)
    upstream_counts: UpstreamCounts = field(default_factory=UpstreamCounts)
    broker_counts: BrokerCounts = field(default_factory=BrokerCounts)


def scrape(metrics: Metrics) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        sample.name + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_gauges_read_the_stats_at_each_scrape() -> None:
    stats = Stats(connection_count=3, subscription_count=7, topic_count=2)
    metrics = Metrics(stats)
    first = scrape(metrics)
    assert first["hlgateway_connections"] == 3
    assert first["hlgateway_subscriptions"] == 7
    assert first["hlgateway_topics"] == 2
    assert first["hlgateway_upstream_subscriptions"] == 0
    stats.connection_count = 5
    stats.upstream_subscription_count = 4
    stats.outbox_stats.queued_bytes = 1234
    stats.outbox_stats.slow_consumers = 1
    second = scrape(metrics)
    assert second["hlgateway_connections"] == 5
    assert second["hlgateway_upstream_subscriptions"] == 4
    assert second["hlgateway_queue_bytes"] == 1234
    assert second["hlgateway_slow_consumer_closes"] == 1
    assert second["hlgateway_dropped_frames"] == second["hlgateway_conflated"] == 0
    assert second["hlgateway_upstream_degraded"] == 0
    stats.upstream_counts = UpstreamCounts(
        degraded=True, links_open=2, reconnects=3, fills_recovered=4, rest_failures=5
    )
    third = scrape(metrics)
    assert third["hlgateway_upstream_degraded"] == 1
    assert third["hlgateway_upstream_links"] == 2
    assert third["hlgateway_upstream_reconnects"] == 3
    assert third["hlgateway_fills_recovered"] == 4
    assert third["hlgateway_rest_failures"] == 5
    assert third["hlgateway_wallet_recoveries"] == 0
    assert third["hlgateway_broker_degraded"] == third["hlgateway_leases_held"] == 0
    stats.broker_counts = BrokerCounts(
        degraded=True, queued=9, gaps_lost=2, refused=1, disconnects=3, leases_held=4
    )
    fourth = scrape(metrics)
    assert fourth["hlgateway_broker_degraded"] == 1
    assert fourth["hlgateway_broker_queued"] == 9
    assert fourth["hlgateway_broker_gaps_lost"] == 2
    assert fourth["hlgateway_broker_publish_refused"] == 1
    assert fourth["hlgateway_broker_disconnects"] == 3
    assert fourth["hlgateway_leases_held"] == 4
    assert fourth["hlgateway_broker_published"] == 0
    stats.upstream_counts = UpstreamCounts(
        wallets_websocket=10,
        wallets_polled=3,
        poll_interval=7.9,
        poll_lag=0.5,
        wallets_over_latency=1,
        rest_weight_used=900,
        rest_weight_limit=1200,
    )
    fifth = scrape(metrics)
    assert fifth["hlgateway_upstream_wallets[websocket]"] == 10
    assert fifth["hlgateway_upstream_wallets[polled]"] == 3
    assert fifth["hlgateway_upstream_poll_interval_seconds"] == 7.9
    assert fifth["hlgateway_upstream_poll_lag_seconds"] == 0.5
    assert fifth["hlgateway_upstream_wallets_over_latency"] == 1
    assert fifth["hlgateway_upstream_rest_weight_used"] == 900
    assert fifth["hlgateway_upstream_rest_weight_limit"] == 1200


def test_messages_count_once_per_subscriber() -> None:
    metrics = Metrics(Stats())
    metrics.count("trades", 3, 100)
    metrics.count("trades", 0, 100)  # nobody reached: nothing counted
    metrics.count("prices", 1, 10)
    samples = scrape(metrics)
    assert samples["hlgateway_messages_out_total[trades]"] == 3
    assert samples["hlgateway_bytes_out_total[trades]"] == 300
    assert samples["hlgateway_messages_out_total[prices]"] == 1

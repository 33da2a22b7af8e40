"""/metrics reads the small GatewayStats interface at each scrape: levels as gauges,
counts since start as counters, and the output passes `promtool check metrics`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from hlgateway.broker.base import BrokerStats
from hlgateway.broker.coordination import CoordinationStats
from hlgateway.metrics import COUNTERS, GAUGES, Metrics, UpstreamCounts
from tests.helpers import check_metrics


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
    broker_stats: BrokerStats = field(default_factory=lambda: BrokerStats("memory"))
    coordination_stats: CoordinationStats = field(
        default_factory=lambda: CoordinationStats("alone")
    )


def scrape(metrics: Metrics) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        sample.name + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def types(metrics: Metrics) -> dict[str, str]:
    """Each family's name (as exposed: a counter's without `_total`) and its type."""
    text = metrics.render().decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


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
    assert second["hlgateway_slow_consumer_closes_total"] == 1
    assert second["hlgateway_dropped_frames_total"] == 0
    assert second["hlgateway_conflated_frames_total"] == 0
    assert second["hlgateway_upstream_degraded"] == 0
    stats.upstream_counts = UpstreamCounts(
        degraded=True, links_open=2, reconnects=3, fills_recovered=4, rest_failures=5
    )
    third = scrape(metrics)
    assert third["hlgateway_upstream_degraded"] == 1
    assert third["hlgateway_upstream_links"] == 2
    assert third["hlgateway_upstream_reconnects_total"] == 3
    assert third["hlgateway_fills_recovered_total"] == 4
    assert third["hlgateway_rest_failures_total"] == 5
    assert third["hlgateway_wallet_recoveries_total"] == 0
    assert third["hlgateway_broker_degraded"] == third["hlgateway_leases_held"] == 0
    stats.broker_stats = BrokerStats(
        "redis", degraded=True, queued=9, gaps_lost=2, refused=1, disconnects=3, read_failures=6
    )
    stats.coordination_stats = CoordinationStats("leases", held=4, gained=7, lost=1)
    fourth = scrape(metrics)
    assert fourth["hlgateway_broker_degraded"] == 1
    assert fourth["hlgateway_broker_queued"] == 9
    assert fourth["hlgateway_broker_gaps_lost_total"] == 2
    assert fourth["hlgateway_broker_publish_refused_total"] == 1
    assert fourth["hlgateway_broker_disconnects_total"] == 3
    assert fourth["hlgateway_broker_read_failures_total"] == 6
    assert fourth["hlgateway_leases_held"] == 4
    assert fourth["hlgateway_leases_gained_total"] == 7
    assert fourth["hlgateway_leases_lost_total"] == 1
    assert fourth["hlgateway_broker_published_total"] == 0
    stats.upstream_counts = UpstreamCounts(
        wallets_websocket=10,
        wallets_polled=3,
        poll_interval=7.9,
        poll_lag=0.5,
        wallets_over_latency=1,
        rest_weight_used=900,
        rest_weight_limit=1200,
    )
    stats.coordination_stats = CoordinationStats(
        "leases", fleet={"websocket": 30, "polled": 10, "overLatency": 2, "unplaced": 1}
    )
    fifth = scrape(metrics)
    assert fifth["hlgateway_upstream_wallets[websocket]"] == 10
    assert fifth["hlgateway_upstream_wallets[polled]"] == 3
    assert fifth["hlgateway_upstream_poll_interval_seconds"] == 7.9
    assert fifth["hlgateway_upstream_poll_lag_seconds"] == 0.5
    assert fifth["hlgateway_upstream_wallets_over_latency"] == 1
    assert fifth["hlgateway_upstream_rest_weight_used"] == 900
    assert fifth["hlgateway_upstream_rest_weight_limit"] == 1200
    assert fifth["hlgateway_fleet_wallets[websocket]"] == 30
    assert fifth["hlgateway_fleet_wallets[polled]"] == 10
    assert fifth["hlgateway_fleet_wallets_over_latency"] == 2
    assert fifth["hlgateway_fleet_unplaced_streams"] == 1


# Every count "since start" the sources keep, and the counter it is exported as.
MONOTONIC = {
    ("outbox", "conflated"): "hlgateway_conflated_frames",
    ("outbox", "dropped"): "hlgateway_dropped_frames",
    ("outbox", "slow_consumers"): "hlgateway_slow_consumer_closes",
    ("upstream", "reconnects"): "hlgateway_upstream_reconnects",
    ("upstream", "fills_recovered"): "hlgateway_fills_recovered",
    ("upstream", "wallet_recoveries"): "hlgateway_wallet_recoveries",
    ("upstream", "rest_failures"): "hlgateway_rest_failures",
    ("broker", "published"): "hlgateway_broker_published",
    ("broker", "received"): "hlgateway_broker_received",
    ("broker", "gaps"): "hlgateway_broker_gaps",
    ("broker", "gaps_lost"): "hlgateway_broker_gaps_lost",
    ("broker", "refused"): "hlgateway_broker_publish_refused",
    ("broker", "dropped_while_away"): "hlgateway_broker_dropped_while_away",
    ("broker", "disconnects"): "hlgateway_broker_disconnects",
    ("broker", "read_failures"): "hlgateway_broker_read_failures",
    ("broker", "rewound"): "hlgateway_broker_rewound",
    ("broker", "new_epochs"): "hlgateway_broker_new_epochs",
    ("broker", "recommitted"): "hlgateway_broker_recommitted",
    ("broker", "write_failures"): "hlgateway_broker_write_failures",
    ("leases", "gained"): "hlgateway_leases_gained",
    ("leases", "lost"): "hlgateway_leases_lost",
}


def test_every_count_since_start_is_a_counter_and_every_level_a_gauge() -> None:
    metrics = Metrics(Stats())
    metrics.count("trades", 1, 10)
    typed = types(metrics)
    for name in MONOTONIC.values():
        assert typed[name] == "counter", name
    assert {name for name, _, _ in COUNTERS} == set(MONOTONIC.values())
    for name, _, _ in GAUGES:
        assert typed[name] == "gauge", name
    assert typed["hlgateway_messages_out"] == typed["hlgateway_messages_out_bytes"] == "counter"
    assert typed["hlgateway_delivery_latency_seconds"] == "histogram"
    # The counts the broker and the coordinator keep are all exported (a new one must be).
    since_start = {"published", "received", "gaps", "gaps_lost", "refused"}
    since_start |= {"dropped_while_away", "disconnects", "read_failures", "rewound", "new_epochs"}
    since_start |= {"write_failures", "recommitted"}
    levels = {"engine", "degraded", "streams", "retained", "queued", "details"}
    fields = {f.name for f in dataclasses.fields(BrokerStats)}
    assert fields == since_start | levels, fields - since_start - levels
    assert since_start == {f for (source, f) in MONOTONIC if source == "broker"}


def test_messages_count_once_per_subscriber() -> None:
    metrics = Metrics(Stats())
    metrics.count("trades", 3, 100)
    metrics.count("trades", 0, 100)  # nobody reached: nothing counted
    metrics.count("prices", 1, 10)
    samples = scrape(metrics)
    assert samples["hlgateway_messages_out_total[trades]"] == 3
    assert samples["hlgateway_messages_out_bytes_total[trades]"] == 300
    assert samples["hlgateway_messages_out_total[prices]"] == 1


def test_the_exposition_passes_promtool() -> None:
    stats = Stats(connection_count=2)
    stats.broker_stats = BrokerStats("redis", published=5, disconnects=1)
    metrics = Metrics(stats)
    metrics.count("orderbook", 2, 100)
    checked = check_metrics(metrics.render())
    assert checked.returncode == 0 and not checked.stdout + checked.stderr, checked


def test_promtool_would_catch_a_count_exported_as_a_counter_without_total() -> None:
    """The check can fail: a counter named without `_total` is refused."""
    bad = b"# HELP bad_count A count.\n# TYPE bad_count counter\nbad_count 1.0\n"
    checked = check_metrics(bad)
    assert checked.returncode != 0 and b"_total" in checked.stdout + checked.stderr

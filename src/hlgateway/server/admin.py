"""`GET /api/admin/overview`: what the dashboard's admin view shows, for admin tokens only.

Unlike /health (counts only, for anyone who can reach it), this names clients
by id, user id and IP, and lists the topics: it needs `Authorization: Bearer
<admin JWT>`. Rates are left to the reader: the counters here only grow, and
the dashboard divides the difference of two readings by the time between them.
"""

from __future__ import annotations

import time
from typing import Any

from hlgateway.gateway import Gateway
from hlgateway.server.accept.defences import Edge

MAX_LISTED = 500  # clients and topics listed; the totals are always exact


def _counter_by_label(counter: Any) -> dict[str, float]:
    """A labelled prometheus Counter's `_total` samples as {label value: count}."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[next(iter(sample.labels.values()), "")] = sample.value
    return out


def _latency(histogram: Any) -> dict[str, float]:
    count = total = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return {"count": count, "sumSeconds": total}


def overview(gateway: Gateway, edge: Edge) -> dict[str, Any]:
    hub = gateway.hub
    connections = list(gateway.connections.values())
    clients = [
        {
            "clientId": c.client_id,
            "user": c.session.principal.user_id,
            "role": c.session.principal.role,
            "ip": c.ip,
            "subscriptions": sum(1 for _ in hub.topics_of(c.outbox)),
        }
        for c in connections[:MAX_LISTED]
    ]
    counted = sorted(
        ((hub.subscriber_count(t), t) for t in hub.topics()),
        key=lambda pair: (-pair[0], pair[1].channel),
    )
    topics = [
        {"channel": t.channel, "params": t.params, "subscribers": n}
        for n, t in counted[:MAX_LISTED]
    ]
    stats = gateway.outbox_stats
    settings = gateway.settings
    metrics = gateway.metrics
    return {
        "timestamp": time.time_ns() // 1_000_000,
        "status": gateway.health()["status"],
        "totals": {
            "clients": len(connections),
            "subscriptions": hub.subscription_count,
            "topics": hub.topic_count,
        },
        "clients": clients,
        "topics": topics,
        "upstream": gateway.health()["upstream"],
        "counters": {
            "messagesOut": _counter_by_label(metrics.messages_out),
            "bytesOut": _counter_by_label(metrics.bytes_out),
            "delivery": _latency(metrics.latency),
            "queuedBytes": stats.queued_bytes,
            "conflated": stats.conflated,
            "droppedFrames": stats.dropped,
            "slowConsumerCloses": stats.slow_consumers,
        },
        "limits": {
            "maxSubscriptions": settings.max_subscriptions,
            "maxRooms": settings.max_rooms,
            "maxConnectionsPerIp": settings.max_connections_per_ip,
            "maxConnectionsPerUser": settings.max_connections_per_user,
            "newConnectionsPerMinute": settings.new_connections_per_minute,
            "messageRate": settings.message_rate,
            "outboxMaxBytes": settings.outbox_max_bytes,
            "refusedOrCut": edge.health(),
        },
    }

"""Which engine a node runs, from its settings: the one place that knows them all.

`--broker redis://...`: the Redis engine (every node on that Redis is one
gateway); without it, one process with the in-memory engine.
"""

from __future__ import annotations

from hlgateway.broker.base import Broker, Retention
from hlgateway.broker.memory import MemoryBroker
from hlgateway.broker.redis import RedisBroker
from hlgateway.config import Settings


def open_broker(settings: Settings) -> Broker:
    retention = Retention(settings.history_size, settings.history_ttl, settings.history_max)
    if settings.broker is not None:
        return RedisBroker(settings.broker, retention, node=settings.node_name)
    return MemoryBroker(retention, node=settings.node_name)

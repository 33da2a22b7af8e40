"""Which engine a node runs, from its settings: the one place that knows them all.

- `--broker redis://...`: the Redis engine (every node on that Redis is one gateway);
- otherwise one process, durable: its state in a state directory (`--state-dir`,
  by default one per listening address under the user's state directory);
- `--state-dir none`: one process, in memory only (tests, benchmarks).
"""

from __future__ import annotations

from hlgateway.broker.base import Broker, Retention
from hlgateway.broker.durable import DurableBroker
from hlgateway.broker.memory import MemoryBroker
from hlgateway.broker.redis import RedisBroker
from hlgateway.broker.statedir import state_dir_of
from hlgateway.config import Settings


def open_broker(settings: Settings) -> Broker:
    retention = Retention(settings.history_size, settings.history_ttl, settings.history_max)
    if settings.broker is not None:
        return RedisBroker(settings.broker, retention, node=settings.node_name)
    directory = state_dir_of(settings.state_dir, settings.host, settings.port)
    if directory is None:
        return MemoryBroker(retention, node=settings.node_name)
    return DurableBroker(
        directory,
        retention,
        node=settings.node_name,
        listen=f"{settings.host}:{settings.port}",
    )

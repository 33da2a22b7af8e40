"""Brokers: the engines behind fan-out and history (durable, memory; Redis for scale-out)."""

from hlgateway.broker.base import (
    Broker,
    EngineStartError,
    Position,
    Publication,
    Replay,
    Retention,
    Sink,
)
from hlgateway.broker.memory import MemoryBroker

__all__ = [
    "Broker",
    "EngineStartError",
    "MemoryBroker",
    "Position",
    "Publication",
    "Replay",
    "Retention",
    "Sink",
]

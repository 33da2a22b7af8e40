"""Brokers: the engines behind fan-out and history (durable, memory; Redis for scale-out)."""

from hlgateway.broker.base import (
    Broker,
    EngineStartError,
    Publication,
    Replay,
    Retention,
    Sink,
)
from hlgateway.broker.memory import MemoryBroker
from hlgateway.protocol.positions import Position

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

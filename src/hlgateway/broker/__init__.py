"""Brokers: the engines behind fan-out and history (memory; Redis for scale-out)."""

from hlgateway.broker.base import Broker, Position, Publication, Replay, Retention, Sink
from hlgateway.broker.memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Position", "Publication", "Replay", "Retention", "Sink"]

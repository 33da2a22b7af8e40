"""Fan-out behind a small interface: where a published frame goes.

The in-memory broker hands frames straight to this process's hub. A Redis
broker (scale-out) implements the same interface and hands them to every
gateway process's hub.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hlgateway.hub import Hub
from hlgateway.protocol.channels import Topic
from hlgateway.websocket.frames import Frame


class Broker(ABC):
    @abstractmethod
    def publish(self, topic: Topic, frame: Frame, *, snapshot: bool = False) -> int:
        """Send a frame to every subscriber of the topic; returns how many
        local subscribers were reached (remote ones are not counted)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the backing service, if any."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect from the backing service, if any."""


class MemoryBroker(Broker):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def publish(self, topic: Topic, frame: Frame, *, snapshot: bool = False) -> int:
        return self._hub.publish(topic, frame, snapshot=snapshot)

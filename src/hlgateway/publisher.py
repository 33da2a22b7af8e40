"""From data to payloads: encode once per topic, throttle, and hand to the broker.

The message prefix of each topic (type, channel, canonical params) is encoded
when the topic first publishes; each message then costs one encode of its data,
whatever the number of subscribers and nodes. The broker positions it (lossless
streams) and delivers it; the gateway's sink turns it into one Frame.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from hlgateway.broker import Broker
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import SYSTEM_TOPIC, Topic


@dataclass(slots=True)
class _Throttle:
    last_sent: float = float("-inf")
    pending: Any = None
    has_pending: bool = False
    timer: asyncio.TimerHandle | None = field(default=None)


class Publisher:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._heads: dict[Topic, bytes] = {}
        self._throttles: dict[Topic, _Throttle] = {}

    def publish(self, topic: Topic, data: Any) -> None:
        if topic.throttle_ms:
            self._throttled(topic, data)
        else:
            self._send(topic, data)

    def publish_update(self, topic: Topic, update: Any, whole: Any) -> None:
        """Publish `update` to the topic's subscribers, and keep `whole` for its new
        subscribers (a snapshot stream whose updates are not whole snapshots:
        candles). Not throttled: such topics take no throttle."""
        head = self._head(topic)
        self._broker.publish(
            topic, encoding.data_frame(head, update), encoding.data_frame(head, whole)
        )

    def publish_items(
        self,
        topic: Topic,
        fields: dict[str, Any],
        key: str,
        items: list[tuple[str, Any]],
        keep: float,
    ) -> None:
        """Publish `{**fields, key: [items...]}` with each item at most once per
        topic across every node (the broker's shared exactly-once ledger):
        `items` are (id, item) pairs. Each item is encoded once, here."""
        head = self._head(topic)
        opening = encoding.encode(fields)[:-1]
        prefix = b"".join((head, opening, b"," if fields else b"", encoding.encode(key), b":["))
        suffix = b']},"timestamp":%d}' % encoding.now_ms()
        encoded = [(item_id, encoding.encode(item)) for item_id, item in items]
        self._broker.publish_items(topic, prefix, encoded, suffix, keep)

    def publish_once(self, topic: Topic, data: Any, item_id: str, keep: float) -> None:
        """Publish one message at most once per topic across every node, by `item_id`."""
        head = self._head(topic)
        payload = encoding.data_frame(head, data)
        self._broker.publish_items(topic, b"", [(item_id, payload)], b"", keep)

    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:
        """A wallet's user stream has delivered every event up to `time_ms`
        (the broker keeps it, if it keeps state across a restart)."""
        self._broker.delivered(channel, wallet, time_ms)

    def restarted(self, channel: str, wallet: str, time_ms: int) -> None:
        """A wallet's user stream starts (again) at `time_ms`, perhaps before where it
        had been delivered to: its position goes back there."""
        self._broker.restarted(channel, wallet, time_ms)

    def caught_up(self, topic: Topic, wallet: str) -> None:
        """`topic` has every event of the wallet's stream delivered so far."""
        self._broker.caught_up(topic, wallet)

    def notice(self, event: str, message: str, **fields: Any) -> None:
        """A server notice on the `system` channel."""
        self._send(SYSTEM_TOPIC, {"event": event, "message": message, **fields})

    def forget(self, topic: Topic) -> None:
        """The topic has no subscribers left: drop its cached state."""
        self._heads.pop(topic, None)
        throttle = self._throttles.pop(topic, None)
        if throttle is not None and throttle.timer is not None:
            throttle.timer.cancel()

    def _head(self, topic: Topic) -> bytes:
        head = self._heads.get(topic)
        if head is None:
            head = self._heads[topic] = encoding.data_head(topic.channel, topic.params_json)
        return head

    def _send(self, topic: Topic, data: Any) -> None:
        self._broker.publish(topic, encoding.data_frame(self._head(topic), data))

    def _throttled(self, topic: Topic, data: Any) -> None:
        # At most one message per interval, always with the latest data: only
        # conflatable (snapshot) channels accept a throttle.
        state = self._throttles.get(topic)
        if state is None:
            state = self._throttles[topic] = _Throttle()
        now = time.monotonic()
        interval = topic.throttle_ms / 1000
        if now - state.last_sent >= interval and state.timer is None:
            state.last_sent = now
            self._send(topic, data)
            return
        state.pending, state.has_pending = data, True
        if state.timer is None:
            delay = max(0.0, state.last_sent + interval - now)
            state.timer = asyncio.get_running_loop().call_later(delay, self._flush, topic)

    def _flush(self, topic: Topic) -> None:
        state = self._throttles.get(topic)
        if state is None:
            return
        state.timer = None
        if state.has_pending:
            data, state.pending, state.has_pending = state.pending, None, False
            state.last_sent = time.monotonic()
            self._send(topic, data)

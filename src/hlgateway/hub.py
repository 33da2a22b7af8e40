"""Who is subscribed to what: the one registry of topics and their subscribers.

Sans I/O. Reference counted: the first subscriber of a topic calls the
listener's `on_first` (which starts its upstream feed) and the last one to go
calls `on_last`. Both directions of the mapping live here and change together,
so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from hlgateway.protocol.channels import Topic
from hlgateway.websocket.frames import Frame


class Subscriber(Protocol):
    """The receiving end of a topic: a connection's outbox, in production."""

    def deliver(self, frame: Frame) -> None: ...


class TopicListener(Protocol):
    def on_first(self, topic: Topic) -> None:
        """May raise ProtocolError to refuse the topic (nothing is kept then)."""

    def on_last(self, topic: Topic) -> None: ...


class Hub:
    def __init__(self, listener: TopicListener | None = None) -> None:
        self._listener = listener
        # dict as an insertion-ordered set: delivery order is subscription order.
        self._subscribers: dict[Topic, dict[Subscriber, None]] = {}
        self._topics: dict[Subscriber, dict[Topic, None]] = {}
        self._latest: dict[Topic, Frame] = {}

    def set_listener(self, listener: TopicListener) -> None:
        self._listener = listener

    # -- membership -------------------------------------------------------
    def subscribe(self, topic: Topic, subscriber: Subscriber) -> bool:
        """Add; True if it is new for this subscriber. Raises what on_first raises."""
        members = self._subscribers.get(topic)
        if members is not None and subscriber in members:
            return False
        if members is None:
            if self._listener is not None:
                self._listener.on_first(topic)
            members = self._subscribers[topic] = {}
        members[subscriber] = None
        self._topics.setdefault(subscriber, {})[topic] = None
        return True

    def unsubscribe(self, topic: Topic, subscriber: Subscriber) -> bool:
        members = self._subscribers.get(topic)
        if members is None or subscriber not in members:
            return False
        del members[subscriber]
        mine = self._topics[subscriber]
        del mine[topic]
        if not mine:
            del self._topics[subscriber]
        if not members:
            self._drop(topic)
        return True

    def remove(self, subscriber: Subscriber) -> list[Topic]:
        """Drop a subscriber from everything (disconnect); returns its topics."""
        topics = list(self._topics.pop(subscriber, ()))
        for topic in topics:
            members = self._subscribers[topic]
            del members[subscriber]
            if not members:
                self._drop(topic)
        return topics

    def clear(self) -> None:
        """Drop every topic (shutdown), telling the listener about each."""
        for subscriber in list(self._topics):
            self.remove(subscriber)

    def _drop(self, topic: Topic) -> None:
        del self._subscribers[topic]
        self._latest.pop(topic, None)
        if self._listener is not None:
            self._listener.on_last(topic)

    # -- delivery ---------------------------------------------------------
    def publish(self, topic: Topic, frame: Frame, *, snapshot: bool = False) -> int:
        """Give the same frame bytes to every subscriber of the topic."""
        members = self._subscribers.get(topic)
        if not members:
            return 0
        if snapshot:
            self._latest[topic] = frame
        for subscriber in list(members):
            subscriber.deliver(frame)
        return len(members)

    def latest(self, topic: Topic) -> Frame | None:
        return self._latest.get(topic)

    # -- queries ----------------------------------------------------------
    def topics_of(self, subscriber: Subscriber) -> Iterable[Topic]:
        return tuple(self._topics.get(subscriber, ()))

    def has(self, topic: Topic) -> bool:
        return topic in self._subscribers

    def topics(self) -> Iterable[Topic]:
        return tuple(self._subscribers)

    def subscriber_count(self, topic: Topic) -> int:
        return len(self._subscribers.get(topic, ()))

    @property
    def topic_count(self) -> int:
        return len(self._subscribers)

    @property
    def subscription_count(self) -> int:
        return sum(len(topics) for topics in self._topics.values())

"""Who is subscribed to what: the one registry of topics and their subscribers.

Sans I/O. Reference counted: the first subscriber of a topic calls the
listener's `on_first` (which starts its upstream feed) and the last one to go
calls `on_last`. Both directions of the mapping live here and change together,
so they cannot disagree.

A lossless topic outlives a subscriber that disconnected by `linger` seconds:
its feed keeps running and its history keeps filling, so a client that drops
and comes back within the history window (`since`) misses nothing. A topic
whose last subscriber unsubscribed on purpose ends at once, unless another one
disconnected from it within the window. `expire` ends the lingering topics
whose time is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from hlgateway.protocol.channels import Topic
from hlgateway.server.delivery import publish
from hlgateway.websocket.frames import Frame


class Subscriber(Protocol):
    """The receiving end of a topic: a connection's outbox, in production."""

    def deliver(self, frame: Frame) -> None: ...

    def replay(self, frames: list[Frame]) -> None:
        """Frames missed while away, in order, ahead of what is delivered next."""


class TopicListener(Protocol):
    def on_first(self, topic: Topic) -> None:
        """May raise ProtocolError to refuse the topic (nothing is kept then)."""

    def on_last(self, topic: Topic) -> None: ...


class Hub:
    def __init__(
        self,
        listener: TopicListener | None = None,
        *,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self._linger = linger
        self._clock = clock
        # dict as an insertion-ordered set: delivery order is subscription order.
        self._subscribers: dict[Topic, dict[Subscriber, None]] = {}
        self._topics: dict[Subscriber, dict[Topic, None]] = {}
        # Lossless topics with no subscriber left, kept until this deadline.
        self._lingering: dict[Topic, float] = {}
        # When a subscriber last disconnected from a lossless topic (it may come back).
        self._departed: dict[Topic, float] = {}

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
        elif not members:
            del self._lingering[topic]
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
            self._vacated(topic)
        return True

    def remove(self, subscriber: Subscriber) -> list[Topic]:
        """Drop a subscriber from everything (disconnect); returns its topics."""
        topics = list(self._topics.pop(subscriber, ()))
        for topic in topics:
            members = self._subscribers[topic]
            del members[subscriber]
            if self._linger > 0 and topic.lossless:
                self._departed[topic] = self._clock()
            if not members:
                self._vacated(topic)
        return topics

    def resume(self, topic: Topic) -> None:
        """Feed a topic nobody is subscribed to, for the linger window, as if its
        subscribers had just disconnected: at a restart, before they come back
        with `since`. Raises what on_first raises (nothing is kept then)."""
        if topic in self._subscribers:
            return
        if self._listener is not None:
            self._listener.on_first(topic)
        self._subscribers[topic] = {}
        self._lingering[topic] = self._clock() + self._linger

    def clear(self) -> None:
        """Drop every topic (shutdown), telling the listener about each."""
        self._linger = 0.0  # nobody comes back to a node that is shutting down
        for subscriber in list(self._topics):
            self.remove(subscriber)
        for topic in list(self._lingering):
            del self._lingering[topic]
            self._drop(topic)

    def expire(self) -> int:
        """End the lingering topics whose time is up; returns how many."""
        if not self._lingering:
            return 0
        now = self._clock()
        due = [topic for topic, deadline in self._lingering.items() if deadline <= now]
        for topic in due:
            del self._lingering[topic]
            self._drop(topic)
        return len(due)

    def _vacated(self, topic: Topic) -> None:
        departed = self._departed.get(topic)
        if departed is not None and self._linger > 0:
            deadline = departed + self._linger
            if deadline > self._clock():
                self._lingering[topic] = deadline
                return
        self._drop(topic)

    def _drop(self, topic: Topic) -> None:
        self._departed.pop(topic, None)
        del self._subscribers[topic]
        if self._listener is not None:
            self._listener.on_last(topic)

    # -- delivery ---------------------------------------------------------
    def publish(self, topic: Topic, frame: Frame) -> int:
        """Give the same frame bytes to every subscriber of the topic."""
        members = self._subscribers.get(topic)
        if not members:
            return 0
        return publish(members, frame)

    # -- queries ----------------------------------------------------------
    def topics_of(self, subscriber: Subscriber) -> Iterable[Topic]:
        return tuple(self._topics.get(subscriber, ()))

    def has(self, topic: Topic) -> bool:
        """Whether the topic is live (subscribed, or lingering)."""
        return topic in self._subscribers

    def topics(self) -> Iterable[Topic]:
        """Topics with subscribers (lingering ones are not listed)."""
        return tuple(t for t, members in self._subscribers.items() if members)

    def subscriber_count(self, topic: Topic) -> int:
        return len(self._subscribers.get(topic, ()))

    @property
    def topic_count(self) -> int:
        """Topics with subscribers."""
        return len(self._subscribers) - len(self._lingering)

    @property
    def lingering_count(self) -> int:
        return len(self._lingering)

    @property
    def subscription_count(self) -> int:
        return sum(len(topics) for topics in self._topics.values())

"""The hub without sockets: reference counting and identical bytes for every subscriber."""

from __future__ import annotations

import pytest

from hlgateway.auth import Principal
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Catalog, Topic, room_topic
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import Markets
from hlgateway.websocket.frames import Frame
from tests.helpers import Inbox


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def on_first(self, topic: Topic) -> None:
        name = topic.params.get("room", topic.channel)
        if name in self.refuse:
            raise ProtocolError(ErrorCode.UPSTREAM_UNAVAILABLE, "full")
        self.events.append(("first", name))

    def on_last(self, topic: Topic) -> None:
        self.events.append(("last", topic.params.get("room", topic.channel)))


ANYONE = Principal("u")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def hub(recorder: Recorder) -> Hub:
    return Hub(recorder)


def test_first_subscriber_starts_and_last_stops(hub: Hub, recorder: Recorder) -> None:
    a, b = Inbox(), Inbox()
    t = room_topic("x")
    assert hub.subscribe(t, a)
    assert hub.subscribe(t, b)
    assert not hub.subscribe(t, a)  # idempotent
    assert recorder.events == [("first", "x")]
    assert hub.unsubscribe(t, a)
    assert recorder.events == [("first", "x")]
    assert hub.unsubscribe(t, b)
    assert recorder.events == [("first", "x"), ("last", "x")]
    assert not hub.unsubscribe(t, b)
    assert hub.topic_count == 0 and hub.subscription_count == 0


def test_disconnect_releases_every_topic(hub: Hub, recorder: Recorder) -> None:
    a, b = Inbox(), Inbox()
    hub.subscribe(room_topic("x"), a)
    hub.subscribe(room_topic("y"), a)
    hub.subscribe(room_topic("y"), b)
    assert sorted(t.params["room"] for t in hub.remove(a)) == ["x", "y"]
    assert ("last", "x") in recorder.events and ("last", "y") not in recorder.events
    assert hub.subscription_count == 1
    hub.clear()
    assert ("last", "y") in recorder.events and hub.topic_count == 0


def test_same_bytes_object_goes_to_every_subscriber(hub: Hub) -> None:
    inboxes = [Inbox() for _ in range(5)]
    t = room_topic("x")
    for inbox in inboxes:
        hub.subscribe(t, inbox)
    frame = Frame(b'{"type":"data"}')
    assert hub.publish(t, frame) == 5
    assert all(inbox.frames == [frame] and inbox.frames[0] is frame for inbox in inboxes)
    assert hub.publish(room_topic("nobody"), frame) == 0


def test_lossless_topic_lingers_after_its_last_subscriber(recorder: Recorder) -> None:
    now = [100.0]
    hub = Hub(recorder, linger=60.0, clock=lambda: now[0])
    a, b = Inbox(), Inbox()
    room = room_topic("x")
    hub.subscribe(room, a)
    hub.remove(a)  # disconnected: it may come back
    # Still live (history keeps filling), but listed nowhere as subscribed.
    assert hub.has(room) and hub.topic_count == 0 and hub.lingering_count == 1
    assert ("last", "x") not in recorder.events
    now[0] += 59.0
    assert hub.expire() == 0
    hub.subscribe(room, b)  # back in time: no second on_first
    assert recorder.events.count(("first", "x")) == 1 and hub.lingering_count == 0
    hub.remove(b)
    now[0] += 60.0
    assert hub.expire() == 1
    assert ("last", "x") in recorder.events and not hub.has(room)


def test_unsubscribing_on_purpose_ends_the_topic_unless_someone_dropped(
    recorder: Recorder,
) -> None:
    now = [0.0]
    hub = Hub(recorder, linger=60.0, clock=lambda: now[0])
    a, b = Inbox(), Inbox()
    hub.subscribe(room_topic("x"), a)
    hub.unsubscribe(room_topic("x"), a)
    assert ("last", "x") in recorder.events and hub.lingering_count == 0
    hub.subscribe(room_topic("y"), a)
    hub.subscribe(room_topic("y"), b)
    hub.remove(a)  # dropped at t=0 ...
    now[0] = 30.0
    hub.unsubscribe(room_topic("y"), b)  # ... so the topic waits for it until t=60
    assert hub.lingering_count == 1
    now[0] = 60.0
    assert hub.expire() == 1 and ("last", "y") in recorder.events


def test_snapshot_topics_do_not_linger(recorder: Recorder) -> None:
    hub = Hub(recorder, linger=60.0, clock=lambda: 0.0)
    topic = Catalog(Markets(["BTC"])).resolve("orderbook", {"symbol": "BTC"}, ANYONE)
    a = Inbox()
    hub.subscribe(topic, a)
    hub.remove(a)
    assert not hub.has(topic) and hub.lingering_count == 0


def test_clear_ends_lingering_topics(recorder: Recorder) -> None:
    hub = Hub(recorder, linger=60.0, clock=lambda: 0.0)
    a = Inbox()
    hub.subscribe(room_topic("x"), a)
    hub.remove(a)
    hub.clear()
    assert ("last", "x") in recorder.events and hub.lingering_count == 0


def test_refused_topic_leaves_no_trace(hub: Hub, recorder: Recorder) -> None:
    recorder.refuse.add("x")
    with pytest.raises(ProtocolError):
        hub.subscribe(room_topic("x"), Inbox())
    assert hub.topic_count == 0 and hub.subscription_count == 0


def test_a_resumed_topic_is_fed_and_lingers_until_its_subscribers_return(
    recorder: Recorder,
) -> None:
    """At a restart, a topic wanted before is fed at once, as if its subscribers
    had just disconnected: kept for the linger window, kept on once one returns."""
    now = [0.0]
    hub = Hub(recorder, linger=60.0, clock=lambda: now[0])
    room, other = room_topic("x"), room_topic("y")
    hub.resume(room)
    hub.resume(other)
    hub.resume(room)  # already there: nothing more
    assert recorder.events == [("first", "x"), ("first", "y")]
    assert hub.has(room) and hub.lingering_count == 2 and hub.topic_count == 0
    a = Inbox()
    now[0] = 30.0
    assert hub.subscribe(room, a)
    assert recorder.events.count(("first", "x")) == 1 and hub.lingering_count == 1
    now[0] = 60.0
    assert hub.expire() == 1  # nobody came back for y within the window
    assert recorder.events[-1] == ("last", "y") and hub.has(room)


def test_a_resumed_topic_that_is_refused_leaves_no_trace(recorder: Recorder) -> None:
    hub = Hub(recorder, linger=60.0)
    recorder.refuse.add("x")
    with pytest.raises(ProtocolError):
        hub.resume(room_topic("x"))
    assert not hub.has(room_topic("x")) and hub.lingering_count == 0

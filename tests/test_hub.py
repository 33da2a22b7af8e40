"""The hub without sockets: reference counting and identical bytes for every subscriber."""

from __future__ import annotations

import pytest

from hlgateway.hub import Hub
from hlgateway.protocol.channels import Topic, room_topic
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.websocket.frames import Frame
from tests.helpers import Inbox


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def on_first(self, topic: Topic) -> None:
        name = topic.params["room"]
        if name in self.refuse:
            raise ProtocolError(ErrorCode.UPSTREAM_UNAVAILABLE, "full")
        self.events.append(("first", name))

    def on_last(self, topic: Topic) -> None:
        self.events.append(("last", topic.params["room"]))


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


def test_latest_snapshot_is_kept_only_while_subscribed(hub: Hub) -> None:
    a = Inbox()
    t = room_topic("x")
    hub.subscribe(t, a)
    newer = Frame(b"2")
    hub.publish(t, Frame(b"1"), snapshot=True)
    hub.publish(t, newer, snapshot=True)
    assert hub.latest(t) is newer
    hub.unsubscribe(t, a)
    assert hub.latest(t) is None


def test_refused_topic_leaves_no_trace(hub: Hub, recorder: Recorder) -> None:
    recorder.refuse.add("x")
    with pytest.raises(ProtocolError):
        hub.subscribe(room_topic("x"), Inbox())
    assert hub.topic_count == 0 and hub.subscription_count == 0

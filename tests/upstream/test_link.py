"""The upstream link's decisions without a socket: an injected clock and a fake
transport drive the pong deadline, the data-age watchdog and resubscribing."""

from __future__ import annotations

import json
import random
from typing import Any

from hlgateway.backoff import Backoff
from hlgateway.upstream import wire
from hlgateway.upstream.link import Link, LinkState
from hlgateway.upstream.pool import LinkTiming

BOOK = {"type": "l2Book", "coin": "BTC"}
MIDS = {"type": "allMids"}
TRADES = {"type": "trades", "coin": "BTC"}
FILLS = {"type": "userFills", "user": "0x" + "ab" * 20}
PONG = '{"channel":"pong"}'
BOOK_FRAME = (
    '{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":'
    '[[{"px":"100.0","sz":"1","n":1}],[{"px":"101.0","sz":"1","n":1}]]}}'
)
MIDS_FRAME = '{"channel":"allMids","data":{"mids":{"BTC":"100.5"}}}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Records what the link sends; `abort` marks the connection cut."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.aborted = 0
        self.closed = False

    def send(self, text: str, *, counted: bool = False) -> None:
        self.sent.append(json.loads(text))

    def abort(self) -> bool:
        self.aborted += 1
        self.closed = True
        return True

    def take(self) -> list[dict[str, Any]]:
        sent, self.sent = self.sent, []
        return sent


class Harness:
    def __init__(self, **timing: float) -> None:
        self.clock = Clock()
        self.events: list[wire.Event] = []
        self.states: list[LinkState] = []
        self.wall = 1_700_000_000_000
        self.link = Link(
            0,
            "ws://unused.invalid/ws",
            lambda _link, event: self.events.append(event),
            lambda _link, state: self.states.append(state),
            ping_interval=timing.get("ping_interval", 30.0),
            pong_timeout=timing.get("pong_timeout", 10.0),
            stale_after=timing.get("stale_after", 15.0),
            clock=self.clock,
            wall_ms=lambda: self.wall,
        )

    def connect(self) -> FakeTransport:
        transport = FakeTransport()
        self.link.connected(transport)
        return transport

    def at(self, now: float) -> Harness:
        self.clock.now = 1000.0 + now
        return self


def subscribes(sent: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["method"], m["subscription"]) for m in sent if "subscription" in m]


async def test_a_connection_resubscribes_everything_wanted() -> None:
    h = Harness()
    h.link.add(BOOK)  # not connected: nothing to send, the next connection replays it
    h.link.add(TRADES)
    transport = h.connect()
    assert subscribes(transport.take()) == [("subscribe", BOOK), ("subscribe", TRADES)]
    assert h.link.state is LinkState.CONNECTED and h.states == [LinkState.CONNECTED]
    h.link.remove(TRADES)
    h.link.add(MIDS)
    assert subscribes(transport.take()) == [("unsubscribe", TRADES), ("subscribe", MIDS)]


async def test_pong_deadline_runs_from_the_oldest_unanswered_ping() -> None:
    h = Harness(pong_timeout=10.0)
    transport = h.connect()
    h.at(0).link.ping()
    h.at(5).link.ping()  # a second ping does not move the deadline
    assert [m["method"] for m in transport.take()] == ["ping", "ping"]
    assert not h.at(10).link.check()  # exactly at the deadline: still in time
    assert transport.aborted == 0
    assert h.at(10.01).link.check()
    assert transport.aborted == 1 and h.link.pong_timeouts == 1


async def test_an_answered_ping_clears_the_deadline() -> None:
    h = Harness(pong_timeout=10.0)
    transport = h.connect()
    h.at(0).link.ping()
    h.at(9).link.received(PONG)
    assert not h.at(500).link.check()  # no ping outstanding: nothing to miss
    h.at(600).link.ping()
    assert not h.at(609).link.check()
    assert h.at(610.5).link.check()  # the new deadline runs from the new ping
    assert transport.aborted == 1 and h.link.pong_timeouts == 1
    assert h.events == []  # pongs are the link's own business


async def test_a_new_connection_forgets_the_old_ping() -> None:
    h = Harness(pong_timeout=10.0)
    h.connect()
    h.at(0).link.ping()
    h.link.disconnected()
    transport = h.at(20).connect()
    assert not h.at(25).link.check()
    assert transport.aborted == 0


async def test_a_silent_busy_stream_is_resubscribed_then_the_link_recycled() -> None:
    h = Harness(stale_after=15.0)
    h.link.add(BOOK)
    transport = h.at(0).connect()
    transport.take()
    h.at(1).link.received(BOOK_FRAME)
    assert not h.at(16).link.check()  # 15 s since the last frame: not yet stale
    assert transport.take() == []
    assert not h.at(16.5).link.check()  # stale: resubscribe, not recycle
    assert subscribes(transport.take()) == [("unsubscribe", BOOK), ("subscribe", BOOK)]
    assert h.link.stale_resubscribes == 1 and transport.aborted == 0
    # The resubscribe restarted the stream's clock: still quiet, but within the limit.
    assert not h.at(31.5).link.check()
    assert transport.take() == [] and transport.aborted == 0
    assert h.at(31.6).link.check()  # silent for stale_after after the resubscribe
    assert transport.aborted == 1 and h.link.stale_recycles == 1


async def test_a_snapshot_after_the_resubscribe_is_no_cure() -> None:
    h = Harness(stale_after=15.0)
    h.link.add(BOOK)
    transport = h.at(0).connect()
    assert not h.at(15.5).link.check()
    assert h.link.stale_resubscribes == 1
    h.at(16).link.received(BOOK_FRAME)  # the answer to the subscribe, then silence again
    assert not h.at(31).link.check()
    assert h.at(31.1).link.check()  # stuck feed: the link goes
    assert h.link.stale_recycles == 1 and transport.aborted == 1


async def test_a_stream_that_keeps_flowing_is_cured_and_never_recycled() -> None:
    h = Harness(stale_after=15.0)
    h.link.add(MIDS)
    transport = h.at(0).connect()
    assert not h.at(15.5).link.check()
    assert h.link.stale_resubscribes == 1
    # Flowing again: a frame every 5 s for a long while; checked each second.
    for t in range(16, 120):
        if t % 5 == 0:
            h.at(t).link.received(MIDS_FRAME)
        assert not h.at(t).link.check()
    assert transport.aborted == 0 and h.link.stale_recycles == 0
    assert h.link.stale_resubscribes == 1
    # Cured (flowing for over 3 x stale_after): a new silence starts over with a resubscribe.
    transport.take()
    assert not h.at(135.5).link.check()
    assert h.link.stale_resubscribes == 2 and transport.aborted == 0
    assert subscribes(transport.take()) == [("unsubscribe", MIDS), ("subscribe", MIDS)]


async def test_quiet_streams_that_are_not_busy_are_never_stale() -> None:
    h = Harness(stale_after=15.0)
    h.link.add(TRADES)
    h.link.add(FILLS)
    transport = h.at(0).connect()
    transport.take()
    assert not h.at(10_000).link.check()
    assert transport.take() == [] and transport.aborted == 0
    assert h.link.stale_resubscribes == 0


async def test_stream_ages_and_the_gap_come_from_the_clocks() -> None:
    h = Harness()
    h.link.add(BOOK)
    h.link.add(FILLS)
    h.at(0).connect()
    assert h.link.stream_ages() == {"l2Book:btc": None, "userFills#1": None}
    h.wall = 1_700_000_000_500
    h.at(2).link.received(BOOK_FRAME)
    assert h.at(4.5).link.stream_ages()["l2Book:btc"] == 2.5
    assert h.link.last_message_ms == 1_700_000_000_500
    assert [type(e) for e in h.events] == [wire.Book]
    h.link.disconnected()
    assert h.link.gap_from_ms == 1_700_000_000_500  # user streams recover from here


async def test_nothing_is_sent_on_a_closed_transport() -> None:
    h = Harness()
    transport = h.connect()
    transport.closed = True
    h.link.add(BOOK)
    h.link.ping()
    h.link.recycle("test")
    assert transport.sent == [] and transport.aborted == 0


async def test_garbage_is_counted_and_skipped() -> None:
    h = Harness()
    h.connect()
    h.link.received("not json {")
    h.link.received('{"channel":"l2Book","data":"garbage"}')
    h.link.received(MIDS_FRAME)
    assert h.link.garbage_frames == 2
    assert [type(e) for e in h.events] == [wire.Mids]


def test_reconnect_delays_stay_under_the_configured_maximum() -> None:
    backoff = Backoff.full_jitter(1.0, 0.3)
    rng = random.Random(7)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 200)]
    assert all(0 <= d <= 0.3 for d in delays)
    assert max(delays) > 0.25  # full jitter: the whole range is used
    assert Backoff.full_jitter(1.0, 30.0).base_delay(6) == 30.0  # 1, 2, 4, 8, 16, 30


def test_every_upstream_retry_honours_the_configured_maximum() -> None:
    timing = LinkTiming(backoff_max=0.3)
    for backoff in (timing.backoff, timing.rest_backoff):
        assert backoff.max_delay == 0.3 and backoff.jitter == 1.0
        assert all(backoff.base_delay(n) <= 0.3 for n in range(1, 50))
    # The REST refresh used to cap at a hard-coded 30 s whatever the setting.
    assert LinkTiming(backoff_max=60.0).rest_backoff.base_delay(10) == 60.0
    assert LinkTiming().rest_backoff.base_delay(1) == 2.0

"""The outbox on a fake transport and a fake clock: bounds, conflation, 4008, the write
deadline and the closing steps, each proven from state, without sockets or sleeps."""

from __future__ import annotations

from collections.abc import Callable

from hlgateway.server.outbox import FlushScheduler, Outbox, OutboxStats
from hlgateway.websocket.closing import Closing, State
from hlgateway.websocket.control import close_frame
from hlgateway.websocket.frames import Frame


class FakeTransport:
    """What the outbox uses of an asyncio transport, recording what it is asked."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0  # what the kernel has not taken yet (set by the test)
        self.eof = False
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.eof and not self.closing
        self.written.append(bytes(data))

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    @property
    def closing(self) -> bool:
        return self.closed or self.aborted

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    @property
    def data(self) -> bytes:
        return b"".join(self.written)


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The loop's clock and timers: time moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object], /) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order (including ones they set)."""
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.pending if t.when <= end), key=lambda t: t.when)
            if not due:
                break
            timer = due[0]
            timer.cancelled = True
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = end


class ManualScheduler(FlushScheduler):
    """Flushes when the test says (the real one flushes once per loop turn)."""

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[Outbox] = []

    def mark(self, outbox: Outbox) -> None:
        self.marked.append(outbox)

    def run(self) -> None:
        marked, self.marked = self.marked, []
        for outbox in dict.fromkeys(marked):
            outbox.flush()


class Rig:
    def __init__(
        self,
        *,
        max_bytes: int = 1000,
        buffer_limit: int = 500,
        write_timeout: float = 30.0,
        wbits: int = 0,
    ) -> None:
        self.transport = FakeTransport()
        self.clock = FakeClock()
        self.scheduler = ManualScheduler()
        self.stats = OutboxStats()
        self.outbox = Outbox(
            self.transport,  # type: ignore[arg-type]
            self.scheduler,
            self.stats,
            max_bytes=max_bytes,
            buffer_limit=buffer_limit,
            write_timeout=write_timeout,
            deflate_wbits=wbits,
            closing=Closing(close_timeout=5.0, linger_time=2.0, linger_bytes=10_000),
            clock=self.clock,
        )


def frame(text: str, key: str | None = None) -> Frame:
    return Frame(text.encode(), conflate_key=key)


# -- delivery -----------------------------------------------------------------------------


def test_frames_of_one_turn_go_out_in_one_write_built_once() -> None:
    rig = Rig()
    shared = frame("a" * 10)
    rig.outbox.deliver(shared)
    rig.outbox.deliver(frame("b" * 20))
    assert rig.outbox.queued_bytes == 30 and rig.stats.queued_bytes == 30
    rig.scheduler.run()
    assert rig.transport.written == [shared.raw + frame("b" * 20).raw]
    assert rig.outbox.queued_bytes == 0 and rig.stats.queued_bytes == 0
    # The frame's bytes are built once and shared: another client gets the same object.
    assert shared.raw is shared.raw


def test_a_deflate_client_gets_the_compressed_frame() -> None:
    rig = Rig(max_bytes=100_000, wbits=15)
    big = Frame(b'{"data":"' + b"x" * 4000 + b'"}')
    rig.outbox.deliver(big)
    rig.scheduler.run()
    assert rig.transport.written == [big.for_deflate(15)]
    assert len(rig.transport.data) < 200


def test_a_post_answer_goes_ahead_of_the_data_queued_for_its_client() -> None:
    rig = Rig(max_bytes=1000, buffer_limit=500)
    rig.transport.buffered = 600  # the client lags: its data waits in the outbox
    data = [frame(f"book{i}" + "." * 45, key="orderbook:BTC") for i in range(3)]
    for f in data:
        rig.outbox.deliver(f)
    rig.scheduler.run()
    assert rig.transport.written == []  # blocked: nothing of the data went out
    answer = frame('{"type":"post_result","id":"p1"}')
    rig.outbox.write_first(answer)
    # Written at once, behind only what the transport held; the data keeps its queue,
    # its byte count and its order, and follows once the client reads.
    assert rig.transport.written == [answer.raw]
    assert rig.outbox.queued_bytes == sum(len(f.payload) for f in data)
    rig.transport.buffered = 0
    rig.outbox.flush()
    assert rig.transport.data == answer.raw + b"".join(f.raw for f in data)
    assert rig.outbox.queued_bytes == 0


def test_a_closing_client_is_written_no_answer() -> None:
    rig = Rig()
    rig.outbox.close(1000, "bye")
    rig.outbox.write_first(frame('{"type":"post_result","id":"p1"}'))
    rig.scheduler.run()
    rig.outbox.flush()
    assert rig.transport.data == close_frame(1000, "bye")


def test_a_deflate_client_gets_its_answer_compressed_as_any_frame() -> None:
    rig = Rig(max_bytes=100_000, wbits=15)
    big = Frame(b'{"type":"post_result","response":"' + b"x" * 4000 + b'"}')
    rig.outbox.write_first(big)
    assert rig.transport.written == [big.for_deflate(15)]


# -- bounds and conflation ----------------------------------------------------------------


def test_over_the_bound_only_the_newest_snapshot_of_each_topic_is_kept() -> None:
    rig = Rig(max_bytes=250)
    rig.transport.buffered = 10_000  # the client does not read: frames wait
    book = [frame(f"book{i}" + "." * 45, key="orderbook:BTC") for i in range(3)]
    price = [frame(f"price{i}" + "." * 44, key="prices") for i in range(2)]
    fill = frame("fill" + "." * 46)  # lossless
    for f in (book[0], price[0], fill, book[1], price[1]):
        rig.outbox.deliver(f)
    assert rig.outbox.queued_bytes == 250 and rig.stats.conflated == 0
    rig.outbox.deliver(book[2])  # 300 > 250: older snapshots go
    assert rig.stats.conflated == 3  # book0, book1, price0
    assert rig.outbox.queued_bytes == 150
    rig.transport.buffered = 0
    rig.outbox.flush()
    # Lossless frames keep their place; each topic's newest snapshot keeps its own.
    assert rig.transport.data == fill.raw + price[1].raw + book[2].raw
    assert not rig.outbox.overflowed


def test_lossless_frames_over_the_bound_close_with_4008() -> None:
    rig = Rig(max_bytes=100, write_timeout=30.0)
    rig.transport.buffered = 10_000
    for i in range(3):
        rig.outbox.deliver(frame(f"fill{i}" + "." * 35))
    assert rig.outbox.overflowed and rig.stats.slow_consumers == 1
    assert rig.stats.dropped == 3 and rig.outbox.queued_bytes == 0
    assert rig.stats.queued_bytes == 0
    # The close goes out at once, behind only what the transport already holds.
    assert rig.transport.written == [close_frame(4008, "Slow consumer")]
    closing = rig.outbox.closing
    assert closing.sent and not closing.hanging_up
    # A slow reader gets longer than the usual close timeout to read up to it.
    assert closing.deadline == rig.clock.now + 10.0
    rig.outbox.deliver(frame("late"))  # nothing more is accepted
    assert rig.outbox.queued_bytes == 0


def test_a_client_that_stops_reading_is_closed_after_the_write_deadline() -> None:
    rig = Rig(max_bytes=100_000, buffer_limit=500, write_timeout=3.0)
    rig.transport.buffered = 600  # above the limit: blocked
    rig.outbox.deliver(frame("tick"))
    rig.scheduler.run()
    assert rig.transport.written == [] and rig.outbox.queued_bytes == 4
    rig.clock.advance(2.9)  # retried every 20 ms, still blocked, still within the deadline
    assert rig.transport.written == [] and not rig.outbox.overflowed
    rig.clock.advance(0.2)
    assert rig.outbox.overflowed and rig.stats.slow_consumers == 1
    assert rig.transport.written == [close_frame(4008, "Slow consumer")]


def test_a_blocked_client_that_drains_in_time_is_kept() -> None:
    rig = Rig(max_bytes=100_000, write_timeout=3.0)
    rig.transport.buffered = 600
    rig.outbox.deliver(frame("tick"))
    rig.scheduler.run()
    rig.clock.advance(2.0)
    rig.transport.buffered = 0  # it read
    rig.clock.advance(0.05)
    assert rig.transport.written == [frame("tick").raw]
    rig.transport.buffered = 600  # blocked again: the deadline starts afresh
    rig.outbox.deliver(frame("tock"))
    rig.scheduler.run()
    rig.clock.advance(2.9)
    assert not rig.outbox.overflowed and rig.outbox.closing.open
    assert rig.clock.pending  # still retrying


# -- closing --------------------------------------------------------------------------------


def test_our_close_follows_the_queued_frames_then_awaits_the_client() -> None:
    rig = Rig()
    rig.outbox.deliver(frame("shutdown"))
    rig.outbox.close(1001, "Server shutting down")
    rig.outbox.deliver(frame("too late"))
    rig.scheduler.run()
    assert rig.transport.data == frame("shutdown").raw + close_frame(1001, "Server shutting down")
    assert not rig.transport.eof and not rig.transport.closed  # awaiting the client's close
    assert rig.clock.pending  # the close timeout
    rig.outbox.close_received(1001, "")
    assert rig.transport.closed  # the handshake is complete: the server closes first
    assert not rig.clock.pending


def test_a_client_that_never_answers_is_hung_up_on_then_dropped() -> None:
    rig = Rig()
    rig.outbox.close(4001, "Token expired")
    rig.scheduler.run()
    rig.clock.advance(4.9)
    assert not rig.transport.eof
    rig.clock.advance(0.1)  # the close timeout: half-close and linger
    assert rig.transport.eof and not rig.transport.aborted
    rig.clock.advance(2.0)  # the linger time: dropped
    assert rig.transport.aborted


def test_the_clients_close_is_echoed_then_we_hang_up() -> None:
    rig = Rig()
    rig.outbox.close_received(1000, "bye")
    rig.scheduler.run()
    assert rig.transport.written == [close_frame(1000)]
    assert rig.transport.closed and rig.outbox.closing.client_first


def test_a_violation_is_answered_and_hung_up_on_without_waiting() -> None:
    rig = Rig()
    rig.outbox.fail(1009, "message too big")
    rig.scheduler.run()
    assert rig.transport.written == [close_frame(1009, "message too big")]
    assert rig.transport.eof and not rig.transport.closed
    # The client finishes sending and closes: the socket ends cleanly.
    rig.outbox.perform(rig.outbox.closing.discard(4000))
    assert not rig.transport.closed
    rig.outbox.perform(rig.outbox.closing.client_eof())
    assert rig.transport.closed and not rig.transport.aborted
    assert not rig.clock.pending  # the linger timer is gone


def test_lingering_is_bounded_in_bytes() -> None:
    rig = Rig()
    rig.outbox.fail(1009, "message too big")
    rig.scheduler.run()
    rig.outbox.perform(rig.outbox.closing.discard(10_000))
    assert not rig.transport.aborted
    rig.outbox.perform(rig.outbox.closing.discard(1))
    assert rig.transport.aborted


def test_cancel_releases_everything() -> None:
    rig = Rig()
    rig.transport.buffered = 10_000
    rig.outbox.deliver(frame("x" * 50))
    rig.scheduler.run()  # blocked: a retry timer
    rig.outbox.cancel()
    assert not rig.clock.pending
    assert rig.outbox.queued_bytes == 0 and rig.stats.queued_bytes == 0
    assert rig.outbox.closing.state is State.CLOSED


def test_a_replay_is_paced_and_our_close_follows_it() -> None:
    rig = Rig(max_bytes=1000, buffer_limit=100)
    history = [frame(f"fill{i:02d}" + "." * 34) for i in range(10)]  # 42-byte frames
    rig.outbox.deliver(frame("live-before"))
    rig.outbox.replay(history)
    rig.outbox.deliver(frame("live-after"))
    rig.outbox.close(1000, "done")
    rig.scheduler.run()
    # One turn writes about a buffer's worth; the rest waits for the next retry.
    assert 0 < len(rig.transport.data) < 200
    assert not rig.outbox.closing.sent
    rig.clock.advance(1.0)  # retries every 20 ms: the kernel takes everything here
    expected = frame("live-before").raw + b"".join(f.raw for f in history)
    expected += frame("live-after").raw + close_frame(1000, "done")
    assert rig.transport.data == expected
    assert rig.outbox.closing.sent

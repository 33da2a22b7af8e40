"""A connection's pending output: frames built once, written straight to the
transport, coalesced, bounded, conflated.

- Delivery never blocks the publisher and never encodes: the hub hands every
  subscriber the same `Frame`, and the outbox queues it.
- Coalescing: all frames due to one client in one loop turn go out in one
  `transport.write` (a loopback write costs ~5 us, more than building a frame).
  One scheduler per loop flushes every outbox that has something, once a turn.
- Slices: a broadcast's writes go out `FLUSH_SLICE` outboxes per loop turn, not
  all in one: between slices the loop reads its sockets and runs what waits (a
  post read from a client, sent upstream, its answer read back). Writing 1,000
  clients at once held the loop ~11 ms (25 ms wall on a loaded 2-core machine),
  and a post that came meanwhile waited for all of it (docs/benchmarks.md).
  While a post is in flight the slices are smaller (`URGENT_SLICE`): its
  upstream send and its answer each wake a task, queued behind the next slice.
- Backpressure: while the transport's own buffer is above `buffer_limit`, frames
  wait in the queue. The queue is bounded in bytes: when it overflows, frames of
  conflatable topics (prices, orderbook, account snapshots) that a newer frame
  of the same topic supersedes are dropped; if lossless frames alone still
  exceed the bound, the client is a slow consumer and is closed with 4008 (it
  reconnects and recovers) rather than grow memory or lose data silently.
- A write deadline catches a client that stops reading altogether.
- Replays (a client recovering with `since`) queue in order like live frames
  but are written at the client's pace: a few buffers' worth per turn, held in
  the broker's history rather than counted in the byte bound. Live frames that
  arrive meanwhile queue behind them under the usual bound, so a client too
  slow to catch up ends in 4008 and resumes from where it got to.
- Closing: the connection's `Closing` state decides; the outbox writes the
  close frame behind what is queued and performs each step (await the client's
  close, hang up and linger, close) with timers on the injected loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from hlgateway.protocol.errors import CloseCode
from hlgateway.server.delivery import OutboxCore, direct_fd, flush_all, register
from hlgateway.websocket.closing import Closing, Step
from hlgateway.websocket.control import close_frame
from hlgateway.websocket.frames import Frame

log = logging.getLogger(__name__)

RETRY_BLOCKED = 0.02  # seconds between write attempts while the transport is full


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the outbox needs of the event loop: its clock and timers (a seam for tests)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Timer: ...


class OutboxStats:
    """Counters shared by every outbox of a gateway (read by /metrics)."""

    __slots__ = ("conflated", "dropped", "queued_bytes", "slow_consumers")

    def __init__(self) -> None:
        self.conflated = 0
        self.dropped = 0
        self.slow_consumers = 0
        self.queued_bytes = 0


class _Replay:
    """A replay's frames, written a part at a time ahead of what follows it."""

    __slots__ = ("frames", "next")
    conflate_key = None  # lossless: never conflated
    payload = b""  # counts nothing in the byte bound: its bytes are in the history

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.next = 0


FLUSH_SLICE = 32  # outboxes written per loop turn: ~0.35 ms at ~11 us a loopback write
# ... while a post is in flight (`FlushScheduler.urgent`): ~45 us. The post's
# steps that wake a task (its send on the upstream link, its answer read back)
# wait behind the slice already queued; more turns a broadcast only then.
URGENT_SLICE = 4


class FlushScheduler:
    """Flushes every outbox that received frames, a slice of them per loop turn.

    A pass takes what was marked when it begins and writes it out in marking
    order, `slice_size` outboxes a turn, handing the loop back between slices.
    What is marked meanwhile waits for the next pass. A client's frames stay in
    its own outbox until written, so slicing changes when they go out, never
    their order, the byte bound or the counts.

    `on_flushed` gets the data frames published before a pass began, once the
    pass has written them (the upstream-to-socket latency): noted once per
    message by the publisher, not once per subscriber.

    `urgent`, when set, says whether a post is in flight: each slice begun
    meanwhile is `urgent_slice` outboxes, so that what the post waits for in
    the loop's ready queue is a few writes, not a full slice.
    """

    def __init__(
        self,
        on_flushed: Callable[[list[Frame]], None] | None = None,
        *,
        slice_size: int = FLUSH_SLICE,
        urgent_slice: int = URGENT_SLICE,
        call_soon: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        # The outboxes marked for the next pass, in the order they were marked.
        # The C delivery loop adds to it directly once mark() has scheduled.
        self.dirty: dict[Outbox, None] = {}
        self._scheduled = False
        self._on_flushed = on_flushed
        self._published: list[Frame] = []
        self._slice = max(1, slice_size)
        self._urgent_slice = max(1, min(urgent_slice, self._slice))
        self.urgent: Callable[[], bool] | None = None  # the gateway's: a post is in flight
        self._call_soon = call_soon  # a seam for tests; else the running loop's
        self._pass: list[Outbox] = []  # the pass under way, and how far it got
        self._next = 0
        self._pass_frames: list[Frame] = []  # published before it began

    @property
    def writing(self) -> bool:
        """A pass is under way (some of its outboxes are not written yet)."""
        return self._next < len(self._pass)

    def published(self, frame: Frame) -> None:
        if self._on_flushed is not None:
            self._published.append(frame)

    def mark(self, outbox: Outbox) -> None:
        self.dirty[outbox] = None
        if not self._scheduled:
            self._schedule()

    def flush_now(self) -> None:
        """Write the next slice now, rather than at the end of this loop turn: for a
        batch that was held back a turn already (the durable engine delivers each
        publication once its commit is done), so that it pays no second turn."""
        if self.writing or self.dirty or self._published:
            self._write_slice()
            if (self.writing or self.dirty) and not self._scheduled:
                self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        call_soon = self._call_soon or asyncio.get_running_loop().call_soon
        call_soon(self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        try:
            self._write_slice()
        finally:  # even past an error: the rest of the pass is still due
            if self.writing or self.dirty:
                self._schedule()  # the next slice, or the next pass, after what waits now

    def _write_slice(self) -> None:
        if not self.writing:  # a new pass: everything marked so far
            self._pass, self.dirty = list(self.dirty), {}
            self._next = 0
            self._pass_frames, self._published = self._published, []
        start = self._next
        urgent = self.urgent
        size = self._urgent_slice if urgent is not None and urgent() else self._slice
        self._next = end = start + size
        try:
            flush_all(self._pass[start:end])
        finally:
            if end >= len(self._pass):
                self._pass, self._next = [], 0
                frames, self._pass_frames = self._pass_frames, []
                if frames and self._on_flushed is not None:
                    self._on_flushed(frames)


class Outbox(OutboxCore):
    # Besides OutboxCore's fields (server/delivery.py): those the loops need.
    __slots__ = (
        "_buffer_limit",
        "_clock",
        "_deadline",
        "_write_timeout",
        "overflowed",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        scheduler: FlushScheduler,
        stats: OutboxStats,
        *,
        max_bytes: int,
        buffer_limit: int = 256 * 1024,
        write_timeout: float = 30.0,
        deflate_wbits: int = 0,
        closing: Closing | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._transport = transport
        self._fd = direct_fd(transport)
        self._scheduler = scheduler
        self._stats = stats
        self._max_bytes = max_bytes
        self._buffer_limit = buffer_limit
        self._write_timeout = write_timeout
        self._wbits = deflate_wbits  # 0: this client did not negotiate permessage-deflate
        self.closing = Closing() if closing is None else closing
        self._clock: Clock = asyncio.get_running_loop() if clock is None else clock
        # Nothing, one frame, or a list once a second frame waits: a client that
        # keeps up allocates nothing per message (no garbage for the cycle
        # collector at 10k deliveries a tick), and an idle one holds nothing.
        self._frames = None  # items of a list: Frame | _Replay
        self._bytes = 0
        self._replays = 0  # replays queued: flush paces the writes while any is
        self._blocked_since = None
        self._retry = None
        self._deadline: Timer | None = None
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    # -- input --------------------------------------------------------------
    def deliver(self, frame: Frame) -> None:
        if not self.closing.open:
            return
        queued = self._frames
        if queued is None:
            self._frames = frame
        elif isinstance(queued, list):
            queued.append(frame)
        else:
            self._frames = [queued, frame]
        size = len(frame.payload)
        self._bytes += size
        self._stats.queued_bytes += size
        if self._bytes > self._max_bytes:
            self._conflate()
        self._scheduler.mark(self)

    def replay(self, frames: list[Frame]) -> None:
        """Queue a replay: after what is queued, before what comes next."""
        if not self.closing.open or not frames:
            return
        queued = self._frames
        if queued is None:
            self._frames = [_Replay(frames)]
        elif isinstance(queued, list):
            queued.append(_Replay(frames))
        else:
            self._frames = [queued, _Replay(frames)]
        self._replays += 1
        self._scheduler.mark(self)

    def write_first(self, frame: Frame) -> None:
        """Write `frame` now, ahead of the frames queued here: a reply that must not
        wait behind market data (a post's answer). It goes behind only what the
        transport already holds (at most the buffer limit, whole frames), and is not
        counted in the byte bound: it is not queued, and a client's posts are rated."""
        if not self.closing.open or self._transport.is_closing():
            return  # as deliver(): a closing client takes nothing more
        wbits = self._wbits
        self._transport.write(frame.for_deflate(wbits) if wbits else frame.raw)

    def close(self, code: int | None, reason: str = "") -> None:
        """Close after what is queued, then await the client's answer; nothing more is accepted."""
        self.perform(self.closing.close(code, reason))

    def fail(self, code: int, reason: str) -> None:
        """The client broke the protocol: close after what is queued, then hang up."""
        self.perform(self.closing.fail(code, reason, self._clock.time()))

    def close_received(self, code: int | None, reason: str) -> None:
        """The client's close frame: echo it, or end the handshake we began."""
        self.perform(self.closing.receive_close(code, reason, self._clock.time()))

    def perform(self, step: Step) -> None:
        """Carry out a step of the closing state."""
        if step is Step.NOTHING:
            return
        transport = self._transport
        if step is Step.SEND_CLOSE:
            self._scheduler.mark(self)  # the close goes out behind what is queued
        elif step is Step.AWAIT_CLOSE:
            self._arm_deadline()
        elif step is Step.HANG_UP:
            # FIN after the close frame, then read on (the connection discards):
            # closing now with unread bytes would reset the connection, and the
            # reset can destroy the close frame before the client reads it.
            if not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
            self._arm_deadline()
        elif step is Step.CLOSE_NOW:
            self._cancel_deadline()
            transport.close()
        else:  # Step.ABORT
            self._cancel_deadline()
            transport.abort()

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        deadline = self.closing.deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.time())
            self._deadline = self._clock.call_later(delay, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        self.perform(self.closing.timed_out(self._clock.time()))

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- bounds -------------------------------------------------------------
    def _conflate(self) -> None:
        """Over the bound: keep lossless frames, and only the newest of each snapshot topic."""
        newest: set[object] = set()
        kept: list[Frame | _Replay] = []
        dropped = 0
        for frame in reversed(self._queued()):
            key = frame.conflate_key
            if key is not None:
                if key in newest:
                    dropped += len(frame.payload)
                    self._stats.conflated += 1
                    continue
                newest.add(key)
            kept.append(frame)
        kept.reverse()
        self._frames = kept
        self._set_bytes(self._bytes - dropped)
        if self._bytes > self._max_bytes:
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        self.overflowed = True
        self._stats.slow_consumers += 1
        self._stats.dropped += len(self._queued())
        log.info("slow consumer: %d bytes queued; closing with 4008", self._bytes)
        self._frames = None
        self._replays = 0
        self._set_bytes(0)
        self.closing.close(CloseCode.SLOW_CONSUMER, "Slow consumer")
        if self.closing.close_pending:
            # The close frame waits behind what the kernel and transport already
            # hold: give a client that is only slow the time to read up to it.
            self._write_close(wait=max(2.0, min(10.0, self._write_timeout)))

    def _set_bytes(self, value: int) -> None:
        self._stats.queued_bytes += value - self._bytes
        self._bytes = value

    # -- output -------------------------------------------------------------
    def flush(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        transport = self._transport
        if transport.is_closing():
            self._discard()
            return
        if self._replays:
            self._flush_paced()
            return
        queued = self._frames
        if queued is not None:
            if transport.get_write_buffer_size() > self._buffer_limit:
                self._blocked()
                return
            self._blocked_since = None
            self._frames = None
            wbits = self._wbits
            # No replay is queued on this path: every item is a Frame.
            if not isinstance(queued, list):
                transport.write(queued.for_deflate(wbits) if wbits else queued.raw)
            elif wbits:
                transport.write(b"".join([f.for_deflate(wbits) for f in queued]))  # type: ignore[union-attr]
            else:
                transport.write(b"".join([f.raw for f in queued]))  # type: ignore[union-attr]
            self._set_bytes(0)
        closing = self.closing
        if not closing.open and closing.close_pending:  # `open` first: a plain attribute
            self._write_close()

    def _flush_paced(self) -> None:
        """Write in order up to the transport's limit; a replay may stop part-way."""
        transport = self._transport
        room = self._buffer_limit - transport.get_write_buffer_size()
        if room <= 0:
            self._blocked()
            return
        self._blocked_since = None
        items = self._queued()
        wbits = self._wbits
        chunks: list[bytes] = []
        written = live = taken = 0
        for item in items:
            if written >= room:
                break
            if isinstance(item, _Replay):
                frames = item.frames
                while item.next < len(frames) and written < room:
                    frame = frames[item.next]
                    item.next += 1
                    chunk = frame.for_deflate(wbits) if wbits else frame.raw
                    chunks.append(chunk)
                    written += len(chunk)
                if item.next < len(frames):
                    break
                self._replays -= 1
            else:
                chunk = item.for_deflate(wbits) if wbits else item.raw
                chunks.append(chunk)
                written += len(chunk)
                live += len(item.payload)
            taken += 1
        rest = items[taken:]
        self._frames = rest or None
        self._set_bytes(self._bytes - live)
        if chunks:
            transport.write(b"".join(chunks))
        if rest:
            self._retry = self._clock.call_later(RETRY_BLOCKED, self.flush)
        elif self.closing.close_pending:
            self._write_close()

    def _blocked(self) -> None:
        now = self._clock.time()
        if self._blocked_since is None:
            self._blocked_since = now
        elif now - self._blocked_since > self._write_timeout:
            log.info("client stopped reading for %.0fs; closing with 4008", self._write_timeout)
            self._slow_consumer()
            return
        self._retry = self._clock.call_later(RETRY_BLOCKED, self.flush)

    def _queued(self) -> list[Frame | _Replay]:
        queued = self._frames
        if queued is None:
            return []
        return queued if isinstance(queued, list) else [queued]

    def _discard(self) -> None:
        self._stats.dropped += len(self._queued())
        self._frames = None
        self._replays = 0
        self._set_bytes(0)

    def _write_close(self, wait: float | None = None) -> None:
        closing = self.closing
        transport = self._transport
        if not transport.is_closing():
            transport.write(close_frame(closing.frame_code, closing.frame_reason))
        self.perform(closing.close_written(self._clock.time(), wait))

    def cancel(self) -> None:
        """The connection is gone: release everything."""
        self.closing.lost()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._cancel_deadline()
        self._discard()


# The C delivery loops take the common case of exactly these classes (not subclasses).
register(Outbox, FlushScheduler)

"""A connection's pending output: frames built once, written straight to the
transport, coalesced, bounded, conflated.

- Delivery never blocks the publisher and never encodes: the hub hands every
  subscriber the same `Frame`, and the outbox queues it.
- Coalescing: all frames due to one client in one loop turn go out in one
  `transport.write` (a loopback write costs ~5 us, more than building a frame).
  One scheduler per loop flushes every outbox that has something, once a turn.
- Backpressure: while the transport's own buffer is above `buffer_limit`, frames
  wait in the queue. The queue is bounded in bytes: when it overflows, frames of
  conflatable topics (prices, orderbook, account snapshots) that a newer frame
  of the same topic supersedes are dropped; if lossless frames alone still
  exceed the bound, the client is a slow consumer and is closed with 4008 (it
  reconnects and recovers) rather than grow memory or lose data silently.
- A write deadline catches a client that stops reading altogether.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hlgateway.protocol.errors import CloseCode
from hlgateway.websocket.control import close_frame
from hlgateway.websocket.frames import Frame

log = logging.getLogger(__name__)

RETRY_BLOCKED = 0.02  # seconds between write attempts while the transport is full


class OutboxStats:
    """Counters shared by every outbox of a gateway (read by /metrics)."""

    __slots__ = ("conflated", "dropped", "queued_bytes", "slow_consumers")

    def __init__(self) -> None:
        self.conflated = 0
        self.dropped = 0
        self.slow_consumers = 0
        self.queued_bytes = 0


class FlushScheduler:
    """Flushes every outbox that received frames, once per loop turn.

    `on_flushed` gets the data frames published since the previous turn, once
    they have been written (the upstream-to-socket latency): noted once per
    message by the publisher, not once per subscriber.
    """

    def __init__(self, on_flushed: Callable[[list[Frame]], None] | None = None) -> None:
        self._dirty: dict[Outbox, None] = {}
        self._scheduled = False
        self._on_flushed = on_flushed
        self._published: list[Frame] = []

    def published(self, frame: Frame) -> None:
        if self._on_flushed is not None:
            self._published.append(frame)

    def mark(self, outbox: Outbox) -> None:
        self._dirty[outbox] = None
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, {}
        for outbox in dirty:
            outbox.flush()
        if self._published:
            frames, self._published = self._published, []
            if self._on_flushed is not None:
                self._on_flushed(frames)


class Outbox:
    __slots__ = (
        "_abort_timer",
        "_blocked_since",
        "_buffer_limit",
        "_bytes",
        "_close",
        "_close_sent",
        "_frames",
        "_hang_up",
        "_max_bytes",
        "_retry",
        "_scheduler",
        "_stats",
        "_transport",
        "_wbits",
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
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        self._stats = stats
        self._max_bytes = max_bytes
        self._buffer_limit = buffer_limit
        self._write_timeout = write_timeout
        self._wbits = deflate_wbits  # 0: this client did not negotiate permessage-deflate
        # Nothing, one frame, or a list once a second frame waits: a client that
        # keeps up allocates nothing per message (no garbage for the cycle
        # collector at 10k deliveries a tick), and an idle one holds nothing.
        self._frames: Frame | list[Frame] | None = None
        self._bytes = 0
        self._blocked_since: float | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._close: tuple[int | None, str] | None = None
        self._hang_up = False  # after our close frame: the client closed first, end at once
        self._close_sent = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def closing(self) -> bool:
        """A close has been asked for (sent or waiting behind queued frames)."""
        return self._close is not None

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    # -- input --------------------------------------------------------------
    def deliver(self, frame: Frame) -> None:
        if self._close is not None:
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

    def close(self, code: int | None, reason: str = "", *, hang_up: bool = False) -> None:
        """Send a close frame after what is queued; nothing more is accepted.

        `hang_up`: end the TCP connection once it is written (this is the reply
        to the client's close, or the connection failed). Otherwise wait for the
        client's reply, and cut the connection if it does not come.
        """
        if hang_up:
            self._hang_up = True  # also when our own close is already waiting to go out
        if self._close is None:
            self._close = (code, reason)
            self._scheduler.mark(self)

    # -- bounds -------------------------------------------------------------
    def _conflate(self) -> None:
        """Over the bound: keep lossless frames, and only the newest of each snapshot topic."""
        newest: set[object] = set()
        kept: list[Frame] = []
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
        self._set_bytes(0)
        self._close = (CloseCode.SLOW_CONSUMER, "Slow consumer")
        # The close frame waits behind what the kernel and transport already hold:
        # give a client that is only slow the time to read up to it.
        self._send_close(abort_after=max(2.0, min(10.0, self._write_timeout)))

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
        queued = self._frames
        if queued is not None:
            if transport.get_write_buffer_size() > self._buffer_limit:
                self._blocked()
                return
            self._blocked_since = None
            self._frames = None
            wbits = self._wbits
            if not isinstance(queued, list):
                transport.write(queued.for_deflate(wbits) if wbits else queued.raw)
            elif wbits:
                transport.write(b"".join([f.for_deflate(wbits) for f in queued]))
            else:
                transport.write(b"".join([f.raw for f in queued]))
            self._set_bytes(0)
        if self._close is not None and not self._close_sent:
            self._send_close()

    def _blocked(self) -> None:
        now = time.monotonic()
        if self._blocked_since is None:
            self._blocked_since = now
        elif now - self._blocked_since > self._write_timeout:
            log.info("client stopped reading for %.0fs; closing with 4008", self._write_timeout)
            self._slow_consumer()
            return
        self._retry = asyncio.get_running_loop().call_later(RETRY_BLOCKED, self.flush)

    def _queued(self) -> list[Frame]:
        queued = self._frames
        if queued is None:
            return []
        return queued if isinstance(queued, list) else [queued]

    def _discard(self) -> None:
        self._stats.dropped += len(self._queued())
        self._frames = None
        self._set_bytes(0)

    def _send_close(self, abort_after: float = 5.0) -> None:
        assert self._close is not None
        code, reason = self._close
        self._close_sent = True
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(close_frame(code, reason))
        if self._hang_up:
            transport.close()  # flushes what is buffered, then FIN
        else:
            # The client answers with its own close frame (the connection then
            # hangs up); one that never answers is cut after a grace period.
            self._abort_timer = asyncio.get_running_loop().call_later(abort_after, transport.abort)

    def cancel(self) -> None:
        """The connection is gone: release everything."""
        if self._retry is not None:
            self._retry.cancel()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        self._discard()

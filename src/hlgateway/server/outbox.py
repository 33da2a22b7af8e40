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
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from hlgateway.protocol.errors import CloseCode
from hlgateway.protocol.frames import Frame

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
    """Flushes every outbox that received frames, once per loop turn."""

    def __init__(self, on_flushed: Callable[[list[Frame]], None] | None = None) -> None:
        self._dirty: dict[Outbox, None] = {}
        self._scheduled = False
        self._on_flushed = on_flushed

    def mark(self, outbox: Outbox) -> None:
        self._dirty[outbox] = None
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, {}
        written: dict[int, Frame] = {}
        for outbox in dirty:
            outbox.flush(written)
        if self._on_flushed is not None and written:
            self._on_flushed(list(written.values()))


class Outbox:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        scheduler: FlushScheduler,
        stats: OutboxStats,
        *,
        max_bytes: int,
        buffer_limit: int = 256 * 1024,
        write_timeout: float = 30.0,
        deflate_wbits: int = 0,
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._scheduler = scheduler
        self._stats = stats
        self._max_bytes = max_bytes
        self._buffer_limit = buffer_limit
        self._write_timeout = write_timeout
        self._wbits = deflate_wbits  # 0: this client did not negotiate permessage-deflate
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._blocked_since: float | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._close: tuple[int, str] | None = None
        self._closing_task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()  # set when the close has been sent (or the link is gone)
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    # -- input --------------------------------------------------------------
    def deliver(self, frame: Frame) -> None:
        if self._close is not None:
            return
        self._frames.append(frame)
        self._bytes += len(frame.payload)
        self._stats.queued_bytes += len(frame.payload)
        if self._bytes > self._max_bytes:
            self._conflate()
        self._scheduler.mark(self)

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has been written; nothing more is accepted."""
        if self._close is None:
            self._close = (code, reason)
            self._scheduler.mark(self)

    # -- bounds -------------------------------------------------------------
    def _conflate(self) -> None:
        """Over the bound: keep lossless frames, and only the newest of each snapshot topic."""
        newest: set[object] = set()
        kept: deque[Frame] = deque()
        dropped = 0
        for frame in reversed(self._frames):
            key = frame.conflate_key
            if key is not None:
                if key in newest:
                    dropped += len(frame.payload)
                    self._stats.conflated += 1
                    continue
                newest.add(key)
            kept.appendleft(frame)
        self._frames = kept
        self._set_bytes(self._bytes - dropped)
        if self._bytes > self._max_bytes:
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        self.overflowed = True
        self._stats.slow_consumers += 1
        self._stats.dropped += len(self._frames)
        log.info("slow consumer: %d bytes queued; closing with 4008", self._bytes)
        self._frames.clear()
        self._set_bytes(0)
        self._close = (CloseCode.SLOW_CONSUMER, "Slow consumer")
        # The close frame waits behind what the kernel and transport already hold:
        # give a client that is only slow the time to read up to it.
        self._finish(abort_after=max(2.0, min(10.0, self._write_timeout)))

    def _set_bytes(self, value: int) -> None:
        self._stats.queued_bytes += value - self._bytes
        self._bytes = value

    # -- output -------------------------------------------------------------
    def flush(self, written: dict[int, Frame] | None = None) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        transport = self._transport
        if transport.is_closing():
            self._discard()
            return
        if self._frames:
            if transport.get_write_buffer_size() > self._buffer_limit:
                self._blocked()
                return
            self._blocked_since = None
            frames, self._frames = self._frames, deque()
            wbits = self._wbits
            if wbits:
                data = b"".join([f.for_deflate(wbits) for f in frames])
            else:
                data = b"".join([f.raw for f in frames])
            self._set_bytes(0)
            transport.write(data)
            if written is not None:
                for frame in frames:
                    written[id(frame)] = frame
        if self._close is not None and self._closing_task is None:
            self._finish()

    def _blocked(self) -> None:
        now = time.monotonic()
        if self._blocked_since is None:
            self._blocked_since = now
        elif now - self._blocked_since > self._write_timeout:
            log.info("client stopped reading for %.0fs; closing with 4008", self._write_timeout)
            self._slow_consumer()
            return
        self._retry = asyncio.get_running_loop().call_later(RETRY_BLOCKED, self.flush)

    def _discard(self) -> None:
        self._stats.dropped += len(self._frames)
        self._frames.clear()
        self._set_bytes(0)
        self.done.set()

    def _finish(self, abort_after: float = 5.0) -> None:
        assert self._close is not None
        code, reason = self._close
        self._closing_task = asyncio.get_running_loop().create_task(
            self._close_ws(code, reason, abort_after)
        )

    async def _close_ws(self, code: int, reason: str, abort_after: float) -> None:
        # aiohttp writes the close frame after everything we wrote (same transport)
        # and waits for the client's answer; a client that stopped reading never
        # answers, so the connection is cut after a grace period.
        try:
            async with asyncio.timeout(abort_after):
                await self._ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            self._transport.abort()
        finally:
            self.done.set()

    def cancel(self) -> None:
        """The connection is gone: release everything."""
        if self._retry is not None:
            self._retry.cancel()
        self._discard()
        if self._closing_task is not None and not self._closing_task.done():
            self._closing_task.cancel()


async def wait_closed(outbox: Outbox, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await outbox.done.wait()

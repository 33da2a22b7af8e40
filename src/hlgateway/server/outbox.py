"""A connection's pending output: bounded in bytes, written by one task.

Delivery never blocks the publisher: frames are queued and a writer task sends
them with backpressure. A client whose queue outgrows its bound is a slow
consumer: it is closed with 4008 so it reconnects and recovers, instead of
growing memory or delaying anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import WSMsgType, web

from hlgateway.protocol.errors import CloseCode

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, ws: web.WebSocketResponse, max_bytes: int) -> None:
        self._ws = ws
        self._max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def deliver(self, frame: bytes) -> None:
        if self._close is not None:
            return
        if self._bytes + len(frame) > self._max_bytes:
            self.overflowed = True
            self._frames.clear()
            self._bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "Slow consumer")
            return
        self._frames.append(frame)
        self._bytes += len(frame)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has been written (nothing more is accepted)."""
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    async def run(self) -> None:
        ws = self._ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._frames:
                    frame = self._frames.popleft()
                    self._bytes -= len(frame)
                    await ws.send_frame(frame, WSMsgType.TEXT)
                if self._close is not None:
                    code, reason = self._close
                    await ws.close(code=code, message=reason.encode())
                    return
        except (ConnectionError, RuntimeError) as exc:
            log.debug("write failed: %r", exc)
            with contextlib.suppress(Exception):
                await ws.close(code=CloseCode.GOING_AWAY)

"""The per-client delivery loops: a broadcast's frame into every subscriber's
outbox (`publish`), and every marked outbox onto its socket (`flush_all`).

These two loops are where a broadcast to 10k clients spends its time: one pass
per client each, every tick. This module is their definition, in Python; the C
module `_delivery` (built from `_delivery.c` by the install, with the system
compiler) implements the same loops with the common case taken in C: an open
outbox with nothing queued receives the frame, and an outbox holding one frame
on an idle plain-TCP transport sends it with one `send(2)`, the very write the
transport's `write()` would make first. Every other case (a queue, a replay, a
blocked or closing connection, TLS, another subscriber type) calls the same
Python methods as here, so ordering, the slow-consumer bound and the byte
counts do not depend on which implementation runs.

`HLGATEWAY_SPEEDUPS=0` in the environment keeps the Python loops even when the
C module is built (the tests run both); `SPEEDUPS` says which ones are in use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from hlgateway.server.outbox import FlushScheduler, OutboxStats, Timer, _Replay
    from hlgateway.websocket.closing import Closing
    from hlgateway.websocket.frames import Frame

__all__ = [
    "SPEEDUPS",
    "OutboxCore",
    "counters",
    "direct_fd",
    "flush_all",
    "publish",
    "register",
]

# Plain TCP transports whose write() sends at once when nothing is buffered, so
# that a direct send(2) in that state is the same write. Not TLS (the socket
# carries records), not pipes, not test fakes.
DIRECT_TRANSPORTS = frozenset(
    {
        "uvloop.loop.TCPTransport",
        "asyncio.selector_events._SelectorSocketTransport",
    }
)


class Deliverable(Protocol):
    def deliver(self, frame: Frame) -> None: ...


class Flushable(Protocol):
    def flush(self) -> None: ...


class OutboxCore:
    """The fields of an Outbox that the loops read and write (in C: C fields)."""

    __slots__ = (
        "_blocked_since",
        "_bytes",
        "_fd",
        "_frames",
        "_max_bytes",
        "_replays",
        "_retry",
        "_scheduler",
        "_stats",
        "_transport",
        "_wbits",
        "closing",
    )
    _frames: Frame | list[Frame | _Replay] | None  # nothing, one frame, or the queue
    _bytes: int  # payload bytes queued
    _max_bytes: int
    _replays: int
    _wbits: int  # permessage-deflate window (0: none)
    _fd: int  # the socket, when the C loop may write to it directly (-1: never)
    _retry: Timer | None
    _blocked_since: float | None
    _transport: asyncio.Transport
    _scheduler: FlushScheduler
    _stats: OutboxStats
    closing: Closing


def publish(members: dict[Any, None], frame: Frame) -> int:
    """Give `frame` to every subscriber (in subscription order); returns how many."""
    for subscriber in list(members):  # a copy: a subscriber may leave meanwhile
        subscriber.deliver(frame)
    return len(members)


def flush_all(outboxes: Iterable[Flushable]) -> None:
    """Flush every outbox marked during this loop turn, in the order they were marked."""
    for outbox in outboxes:
        outbox.flush()


def register(outbox_type: type, scheduler_type: type) -> None:
    """The classes whose common case the C loops may take (nothing to do in Python)."""


def counters() -> dict[str, int]:
    """What the C loops queued and wrote themselves, and handed back to Python (here: none)."""
    return {"delivered": 0, "written": 0, "handed_back": 0}


def direct_fd(transport: object) -> int:
    """The socket's descriptor when the C loop may write to it itself, else -1."""
    kind = type(transport)
    if f"{kind.__module__}.{kind.__qualname__}" not in DIRECT_TRANSPORTS:
        return -1
    sock = transport.get_extra_info("socket")  # type: ignore[attr-defined]
    if sock is None:
        return -1
    try:
        fd: int = sock.fileno()
    except (OSError, ValueError):
        return -1
    return fd


def _speedups_wanted() -> bool:
    return os.environ.get("HLGATEWAY_SPEEDUPS", "1").strip().lower() not in ("0", "no", "false")


SPEEDUPS = False
if not TYPE_CHECKING and _speedups_wanted():
    try:
        from hlgateway.server._delivery import (  # the C loops (see _delivery.c)
            OutboxCore,
            counters,
            flush_all,
            publish,
            register,
        )
    except ImportError:  # not built (no compiler at install time): the loops above
        pass
    else:
        SPEEDUPS = True

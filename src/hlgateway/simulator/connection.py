"""One client link of the simulator: its subscriptions, outbound queue and chaos state.

Frames are queued here and written by the link's own writer task (see
``websocket``), so a slow client never stalls the clock or other clients; a
client whose backlog passes ``max_pending`` is marked ``overflowed`` and dropped.
Stalls and silences are loop times until which pushes are withheld.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from aiohttp import web

from hlgateway.simulator.counters import Counters
from hlgateway.simulator.limits import ClientBudget
from hlgateway.simulator.subscriptions import Subscription

CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's close reply


class Connection:
    """One client link: its subscriptions, outbound queue and chaos state."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        budget: ClientBudget,
        max_pending: int,
        clock: Callable[[], float],
        counters: Counters,
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.transport = transport
        self.budget = budget
        self.remote = budget.ip
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.port: int | None = int(peer[1]) if isinstance(peer, tuple) and len(peer) > 1 else None
        self.subs: dict[str, Subscription] = {}
        self.last_sent = clock()
        self.bbo_sent: dict[str, str] = {}  # sub key -> last best levels sent
        # (user, dex) -> last clearinghouseState sent
        self.state_sent: dict[tuple[str, str], str] = {}
        self.stalls: dict[str, float] = {}  # sub key -> loop time its stall ends
        self.silent_until = 0.0  # loop time until which nothing at all is sent
        self.detached = False
        self.wake = asyncio.Event()
        self.overflowed = False
        self._out: deque[str | bytes] = deque()
        self._max_pending = max_pending
        self._clock = clock
        self._counters = counters

    def silent(self, now: float) -> bool:
        return now < self.silent_until

    def send(self, frame: str | bytes) -> bool:
        """Queue a frame (dropped while the link is silenced); say whether it was queued."""
        if self.overflowed or self.detached:
            return False
        if self.silent_until and self.silent(self._clock()):
            self._counters.withheld_frames += 1
            return False
        if len(self._out) >= self._max_pending:
            # Too far behind to ever catch up: drop the client like a real server would.
            self.overflowed = True
            self._out.clear()
        else:
            self._out.append(frame)
        self.wake.set()
        return True

    def stalled(self, sub: Subscription, now: float) -> bool:
        until = self.stalls.get(sub.key)
        if until is None:
            return False
        if now < until:
            return True
        del self.stalls[sub.key]
        return False

    def withhold(self, sub: Subscription) -> bool:
        """True (and counted) if ``sub``'s data must not be pushed right now."""
        if self.stalls and self.stalled(sub, self._clock()):
            self._counters.withheld_frames += 1
            return True
        return False

    def push(self, sub: Subscription, text: str) -> None:
        """Send a data frame of ``sub`` unless that stream is stalled."""
        if not self.withhold(sub):
            self.send(text)

    def pop_pending(self) -> str | bytes | None:
        return self._out.popleft() if self._out else None

    def users(self) -> set[str]:
        return {sub.user for sub in self.subs.values() if sub.user is not None}

    def subs_of(self, kind: str) -> Iterable[Subscription]:
        return [sub for sub in self.subs.values() if sub.kind == kind]

    def abort(self) -> None:
        """Cut the TCP link without a close frame (clients see 1006)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

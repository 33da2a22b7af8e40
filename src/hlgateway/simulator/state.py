"""The simulator's live state, shared by its sides.

The model (``SimWorld``), the open links and the per-IP budgets they share,
wallet tracking, the counters, the refusal and restart marks set by the chaos
controls, and the clock: loop time, and loop time mapped onto the model's
epoch milliseconds. The WebSocket side, ``/info``, the chaos controls and the
clock's fan-out all read and change this one object; none holds state of its own
about links.
"""

from __future__ import annotations

import asyncio

from hlgateway.ratelimit import SlidingWindow
from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.connection import Connection
from hlgateway.simulator.counters import Counters
from hlgateway.simulator.limits import ClientBudget, RestBudget
from hlgateway.simulator.tracking import Tracking
from hlgateway.simulator.world import SimWorld


class SimState:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.connections: dict[int, Connection] = {}
        self.budgets: dict[str, ClientBudget] = {}
        # REST weight per client IP; kept for the whole run (its totals are reported).
        self.rest_budgets: dict[str, RestBudget] = {}
        self.next_conn_id = 1
        self.refuse_until = 0.0  # loop time until which upgrades get 503
        self.generation = 0  # bumped by restart(): handshakes in flight across it are cut
        self.tracking = Tracking(config, lambda: self.world, self.now)
        self._world: SimWorld | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoch_ms = 0
        self._t0 = 0.0

    def begin(
        self,
        loop: asyncio.AbstractEventLoop,
        world: SimWorld,
        epoch_ms: int,
        t0: float | None = None,
    ) -> None:
        """Start the clock: loop time ``t0`` (default: now) is ``epoch_ms`` on the model clock."""
        self._loop = loop
        self._world = world
        self._epoch_ms = epoch_ms
        self._t0 = loop.time() if t0 is None else t0

    @property
    def world(self) -> SimWorld:
        if self._world is None:
            raise RuntimeError("simulator not started")
        return self._world

    # -- the clock -----------------------------------------------------------
    def now(self) -> float:
        if self._loop is None:
            raise RuntimeError("simulator not started")
        return self._loop.time()

    def model_now_ms(self) -> int:
        return self.loop_to_ms(self.now())

    def action_now_ms(self) -> int:
        """When an /exchange action happens: now, never before the model's last tick."""
        return max(self.model_now_ms(), self.world.now_ms)

    def loop_to_ms(self, loop_time: float) -> int:
        """A loop time on the model clock (epoch ms; the wall clock unless start_ms is set)."""
        return self._epoch_ms + int((loop_time - self._t0) * 1000)

    # -- links and their budgets ----------------------------------------------
    def budget(self, ip: str) -> ClientBudget:
        budget = self.budgets.get(ip)
        if budget is None:
            cfg = self.config
            budget = ClientBudget(
                ip,
                new_connections=SlidingWindow(cfg.max_new_connections_per_minute),
                messages=SlidingWindow(cfg.max_messages_per_minute),
            )
            self.budgets[ip] = budget
        return budget

    def rest_budget(self, ip: str) -> RestBudget:
        budget = self.rest_budgets.get(ip)
        if budget is None:
            budget = self.rest_budgets[ip] = RestBudget(self.config.rest_weight_per_minute)
        return budget

    def rest_usage(self) -> dict[str, dict[str, int]]:
        """REST weight per client IP: the last minute's, the total, requests refused."""
        now = self.now()
        return {
            ip: {"lastMinute": b.used(now), "total": b.total, "refused": b.refused}
            for ip, b in self.rest_budgets.items()
        }

    def forget_budgets(self, now: float) -> None:
        for ip, budget in list(self.budgets.items()):
            if budget.idle(now):
                del self.budgets[ip]

    def siblings(self, conn: Connection) -> list[Connection]:
        """Every open link of ``conn``'s client IP (``conn`` included)."""
        return [self.connections[i] for i in conn.budget.links if i in self.connections]

    def cut(self, conn: Connection) -> None:
        """Abort ``conn`` and forget it at once, so ``links()`` is current on return."""
        conn.abort()
        self.detach(conn)

    def detach(self, conn: Connection) -> None:
        if conn.detached:
            return
        conn.detached = True
        self.connections.pop(conn.id, None)
        conn.budget.links.discard(conn.id)
        for sub in conn.subs.values():
            self.tracking.release(sub)
        conn.subs.clear()
        conn.stalls.clear()

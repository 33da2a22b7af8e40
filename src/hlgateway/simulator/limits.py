"""Hyperliquid's per-IP budgets, sans-I/O: the caller passes the time.

One ``ClientBudget`` per client IP holds what is shared by all of that IP's
connections: how many are open, the sliding 60 s windows of accepted upgrades
and of client messages. Subscription and user counts are derived from the
IP's live connections by the server, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hlgateway.ratelimit import SlidingWindow


@dataclass
class ClientBudget:
    """Everything one client IP shares across its connections."""

    ip: str
    new_connections: SlidingWindow
    messages: SlidingWindow
    links: set[int] = field(default_factory=set)  # ids of its open (or opening) links

    def idle(self, now: float) -> bool:
        """Nothing open and nothing left in either window: safe to forget."""
        return (
            not self.links
            and self.new_connections.count(now) == 0
            and self.messages.count(now) == 0
        )

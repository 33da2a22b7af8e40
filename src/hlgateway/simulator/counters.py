"""What ``Simulator.stats`` reports: plain counts since start."""

from __future__ import annotations

from typing import Any


class Counters:
    """Every field a plain count, bumped by whichever side saw the event."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused_max_connections = 0
        self.refused_new_connection_rate = 0
        self.refused_unavailable = 0
        self.dropped_control = 0
        self.dropped_idle = 0
        self.dropped_slow_client = 0
        self.restarts = 0
        self.refusals = 0
        self.stalled_subscriptions = 0
        self.silenced_links = 0
        self.withheld_frames = 0
        self.garbage_frames = 0
        self.limit_subscriptions = 0
        self.limit_users = 0
        self.limit_messages = 0
        self.actions_ok = 0  # /exchange answers with status ok
        self.actions_err = 0  # ... with status err
        self.actions_malformed = 0  # ... refused before reading (HTTP 4xx)

    def count_action(self, http_status: int, body: Any) -> None:
        if http_status != 200:
            self.actions_malformed += 1
        elif isinstance(body, dict) and body.get("status") == "ok":
            self.actions_ok += 1
        else:
            self.actions_err += 1

    def report(self, open_links: int, tracked_users: int) -> dict[str, Any]:
        """The counters as ``/control/stats`` answers them."""
        return {
            "connections": {
                "accepted": self.accepted,
                "open": open_links,
                "refused": {
                    "maxConnections": self.refused_max_connections,
                    "newConnectionRate": self.refused_new_connection_rate,
                    "unavailable": self.refused_unavailable,
                },
            },
            "drops": {
                "control": self.dropped_control,
                "idle": self.dropped_idle,
                "slowClient": self.dropped_slow_client,
            },
            "restarts": self.restarts,
            "refusals": self.refusals,
            "stalls": {
                "subscriptions": self.stalled_subscriptions,
                "silencedLinks": self.silenced_links,
                "withheldFrames": self.withheld_frames,
            },
            "garbage": self.garbage_frames,
            "limitErrors": {
                "subscriptions": self.limit_subscriptions,
                "users": self.limit_users,
                "messages": self.limit_messages,
            },
            "actions": {
                "ok": self.actions_ok,
                "err": self.actions_err,
                "malformed": self.actions_malformed,
            },
            "trackedUsers": tracked_users,
        }

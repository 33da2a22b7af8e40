"""The simulator's chaos controls: what a flaky Hyperliquid does to its links.

Drop links (1006), stall subscriptions or silence whole links, send garbage
frames, refuse upgrades (503) and restart (all of it at once). Each is a
``Simulator`` method and a ``/control/*`` endpoint (see ``control``); all are
synchronous and run on the simulator's event loop. Times are loop times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hlgateway.simulator.connection import Connection
from hlgateway.simulator.state import SimState

# Frames that are not valid Hyperliquid frames, sent in this order (cycling) by
# ``Simulator.garbage``: non-JSON text, JSON of the wrong shape for its channel, a
# binary frame, an unknown channel, a JSON array, JSON without a channel.
GARBAGE_FRAMES: tuple[str | bytes, ...] = (
    "garbage: this is not JSON {",
    '{"channel":"l2Book","data":"garbage"}',
    b"\x00\x01garbage\xff",
    '{"channel":"noSuchChannel","data":{"garbage":true}}',
    "[1,2,3]",
    '{"data":{"coin":"BTC"}}',
)
MAX_CONTROL_COUNT = 10_000  # most garbage frames one request may send


def _matches(normalized: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    """Subset match of a control request's fields on a normalised subscription.

    0x addresses compare case-insensitively; everything else (coin names are
    case-sensitive on Hyperliquid) compares exactly, and a bool never equals a number.
    """
    for key, want in match.items():
        if key not in normalized:
            return False
        have = normalized[key]
        if isinstance(want, str) and isinstance(have, str) and want[:2].lower() == "0x":
            if have.lower() != want.lower():
                return False
        elif have != want or isinstance(have, bool) != isinstance(want, bool):
            return False
    return True


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}")
    return seconds


def _check_link(link: int | None) -> None:
    if link is not None and (isinstance(link, bool) or not isinstance(link, int)):
        raise ValueError("link must be an integer link id")


class Chaos:
    def __init__(self, state: SimState) -> None:
        self._state = state

    def links(self) -> list[dict[str, Any]]:
        """Every open link: ``{id, remote, port, subscriptions, stalled, silent}``."""
        now = self._state.now()
        return [
            {
                "id": conn.id,
                "remote": conn.remote,
                "port": conn.port,
                "subscriptions": [sub.normalized() for sub in conn.subs.values()],
                "stalled": [
                    sub.normalized() for sub in conn.subs.values() if conn.stalled(sub, now)
                ],
                "silent": conn.silent(now),
            }
            for conn in self._state.connections.values()
        ]

    def _targets(self, link: int | None) -> list[Connection]:
        _check_link(link)
        if link is None:
            return list(self._state.connections.values())
        conn = self._state.connections.get(link)
        return [] if conn is None else [conn]

    def drop(self, link: int | None = None) -> int:
        """Abort one link (or all) without a close frame (clients see 1006).

        An unknown link id (e.g. one that already went away) drops nothing: 0.
        """
        conns = self._targets(link)
        for conn in conns:
            self._state.cut(conn)
        self._state.counters.dropped_control += len(conns)
        return len(conns)

    def stall_report(
        self,
        match: Mapping[str, Any],
        seconds: float,
        link: int | None = None,
        *,
        silence_pongs: bool = False,
    ) -> dict[str, int]:
        """``stall`` answering ``{"stalled": subscriptions, "links": links affected}``."""
        if not isinstance(match, Mapping):
            raise ValueError("match must be an object of subscription fields")
        seconds = _check_seconds("seconds", seconds, allow_zero=False)
        until = self._state.now() + seconds
        stalled = silenced = touched = 0
        for conn in self._targets(link):
            before = stalled
            if silence_pongs:
                conn.silent_until = max(conn.silent_until, until)
                silenced += 1
            for sub in conn.subs.values():
                if _matches(sub.normalized(), match):
                    conn.stalls[sub.key] = max(conn.stalls.get(sub.key, 0.0), until)
                    stalled += 1
            touched += silence_pongs or stalled > before
        self._state.counters.stalled_subscriptions += stalled
        self._state.counters.silenced_links += silenced
        return {"stalled": stalled, "links": touched}

    def garbage(self, count: int, link: int | None = None) -> int:
        """Send ``count`` invalid frames (``GARBAGE_FRAMES``, cycling) to each target link.

        Returns the number of frames queued (a silenced link takes none).
        """
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError("count must be an integer")
        if not 0 <= count <= MAX_CONTROL_COUNT:
            raise ValueError(f"count must be between 0 and {MAX_CONTROL_COUNT}")
        sent = 0
        for conn in self._targets(link):
            for i in range(count):
                sent += conn.send(GARBAGE_FRAMES[i % len(GARBAGE_FRAMES)])
        self._state.counters.garbage_frames += sent
        return sent

    def refuse(self, seconds: float) -> int:
        """Answer new upgrades with HTTP 503 for ``seconds`` (0 ends a refusal now).

        Existing links are untouched. Returns when refusing ends, in model-clock ms.
        """
        seconds = _check_seconds("seconds", seconds, allow_zero=True)
        self._state.refuse_until = self._state.now() + seconds
        self._state.counters.refusals += 1
        return self._state.loop_to_ms(self._state.refuse_until)

    def restart(self, down: float = 1.0) -> dict[str, int]:
        """An API server restart: abort every link, refuse upgrades for ``down`` s.

        The world (market, accounts, histories, tracking) carries on meanwhile.
        Returns ``{"dropped": n, "until": ms}``.
        """
        down = _check_seconds("down", down, allow_zero=True)
        self._state.generation += 1
        self._state.refuse_until = self._state.now() + down
        conns = list(self._state.connections.values())
        for conn in conns:
            self._state.cut(conn)
        self._state.counters.dropped_control += len(conns)
        self._state.counters.restarts += 1
        return {"dropped": len(conns), "until": self._state.loop_to_ms(self._state.refuse_until)}

"""The scenarios of the fan-out benchmark, full and quick."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["window", "rate", "idle"]
# Compression and slow consumers are about what the gateway and the seed's server
# do with them; the floor does neither.
NOT_FLOOR = ("gateway", "node")

MIB = 1024 * 1024
SUBSCRIBE = (
    '{{"type":"subscribe","channel":"orderbook","params":{{"depth":{depth},"symbol":"BTC"}}}}'
)
# A lossless stream (offsets, history): the pump's `--channel trades`, one trade a tick.
SUBSCRIBE_TRADES = '{"type":"subscribe","channel":"trades","params":{"symbol":"BTC"}}'


@dataclass(frozen=True)
class Scenario:
    # saturation | saturation-deflate | saturation-deflate-d20 | rate-1 | rate-10 | idle |
    # limit | box | storm | storm-calm | slow
    key: str
    title: str
    clients: int
    mode: Mode
    rate: float = 0.0  # rate mode: ticks per second
    window: int = 32  # window mode: ticks in flight
    depth: int = 1  # orderbook depth the clients subscribe to (1: ~200-byte messages)
    deflate: bool = False  # clients offer permessage-deflate; the Node reference runs --compress
    warmup: float = 2.0
    duration: float = 5.0  # measured seconds (all phases)
    slow: int = 0  # connections that stop reading `slow_after` seconds into the measurement
    slow_after: float = 0.0
    slow_rcvbuf: int = 0  # SO_RCVBUF of the slow connections (0: the kernel's default)
    outbox_max_bytes: int = 64 * MIB  # the gateway's HLGATEWAY_OUTBOX_MAX_BYTES
    settle: float = 3.0  # idle (and hold_rss): seconds held before RSS is read
    repeats: int = 1
    hold_rss: bool = False  # also read the RSS per connection before the first tick
    processes: int = 0  # server processes (0: as many as the open-file limit needs)
    servers: tuple[str, ...] = ()  # the servers that run it (empty: all of them)
    channel: str = "orderbook"  # or "trades" (a lossless stream), with the pump's --channel
    # rate mode at <= 1 tick/s: the ticks already flow while the clients connect (False:
    # every client connects and subscribes first, then the ticks start).
    ticks_while_connecting: bool = True

    @property
    def id(self) -> str:
        return f"{self.key}@{self.clients}"

    def runs_on(self, server: str) -> bool:
        return not self.servers or server in self.servers

    @property
    def subscribe(self) -> str:
        if self.channel == "trades":
            return SUBSCRIBE_TRADES
        return SUBSCRIBE.format(depth=self.depth)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}


def plan(quick: bool, fd_limit: int) -> list[Scenario]:
    """The full run (~35 min) or the quick one (~4 min).

    `fd_limit` is the hard RLIMIT_NOFILE: one process cannot hold more sockets than
    that, so the "20k" idle scenario holds as many as fit (20,000 where allowed);
    50k and 100k clients are served by several processes of each server, and
    `limit` offers one process 1,000 more clients than it may hold.
    """
    big = min(20_000, fd_limit - 100)
    repeats = 1 if quick else 3
    sat_secs = 3.0 if quick else 5.0
    out: list[Scenario] = []
    for n in (1000, 5000) if quick else (1000, 5000, 10_000):
        out.append(
            Scenario(
                "saturation",
                "Saturation (closed loop, 32 ticks in flight)",
                n,
                "window",
                duration=sat_secs,
                repeats=repeats,
            )
        )
    for n in (1000,) if quick else (1000, 5000):
        out.append(
            Scenario(
                "saturation-deflate",
                "Saturation, permessage-deflate offered by every client",
                n,
                "window",
                deflate=True,
                duration=sat_secs,
                repeats=repeats,
                servers=NOT_FLOOR,
            )
        )
    if not quick:
        out.append(
            Scenario(
                "saturation-deflate-d20",
                "Saturation, permessage-deflate, 20-level books (~830-byte messages)",
                1000,
                "window",
                depth=20,
                deflate=True,
                duration=sat_secs,
                repeats=repeats,
                servers=NOT_FLOOR,
            )
        )
    for n in (1000, 10_000) if quick else (1000, 5000, 10_000, 50_000, 100_000):
        out.append(
            Scenario(
                "rate-1",
                "Fixed rate: 1 tick/s",
                n,
                "rate",
                rate=1.0,
                duration=8.0 if quick else 20.0,
                outbox_max_bytes=4 * MIB,
                hold_rss=True,
            )
        )
    if not quick:
        for n in (1000, 5000):
            out.append(
                Scenario(
                    "rate-10",
                    "Fixed rate: 10 ticks/s",
                    n,
                    "rate",
                    rate=10.0,
                    duration=10.0,
                    outbox_max_bytes=4 * MIB,
                )
            )
    for n in (10_000,) if quick else (10_000, big):
        out.append(
            Scenario(
                "idle",
                "Idle connections (subscribed, no ticks): RSS per connection",
                n,
                "idle",
                warmup=0.0,
                duration=0.0,
                outbox_max_bytes=4 * MIB,
            )
        )
    if not quick:
        # Issue 24's box: 100,000 connections held first, then 1 tick/s to all of them (in
        # rate-1@100000 the ticks to those already connected slow every later handshake down).
        out.append(
            Scenario(
                "box",
                "100,000 connections made and subscribed first, then 1 tick/s to all",
                100_000,
                "rate",
                rate=1.0,
                duration=20.0,
                outbox_max_bytes=4 * MIB,
                hold_rss=True,
                ticks_while_connecting=False,
            )
        )
        out.append(
            Scenario(
                "limit",
                "One process offered 1,000 more clients than it may hold open files, 1 tick/s",
                fd_limit + 1000,
                "rate",
                rate=1.0,
                duration=10.0,
                outbox_max_bytes=4 * MIB,
                hold_rss=True,
                processes=1,
            )
        )
    if not quick:
        out += storm(big)
    out.append(
        Scenario(
            "slow",
            "Slow consumers: 10% of clients stop reading",
            300,
            "rate",
            rate=50.0,
            depth=20,
            duration=12.0 if quick else 25.0,
            slow=30,
            slow_after=4.0 if quick else 5.0,
            slow_rcvbuf=4096,
            outbox_max_bytes=128 * 1024,
            servers=NOT_FLOOR,
        )
    )
    return out


# `--only storm` runs both: the storm and its calm twin, side by side in one run.
ALIASES = {"storm": ("storm", "storm-calm")}


def storm(big: int) -> list[Scenario]:
    """A reconnect storm: every client connects at once while 1 tick/s already goes to
    those that are back (`storm`), beside the same clients with no ticks while they
    connect (`storm-calm`). The headline is the accept rate (clients / seconds until
    all are subscribed, at most 200 handshakes in flight); the ticks after are short.

    `big`: one process at its open files; 100k: several processes, as in `box`.
    """
    out: list[Scenario] = []
    # One process at its open files less its 512 reserve (the gateway answers 503 beyond).
    for n in (big - 900, 100_000):
        for key, flowing in (("storm", True), ("storm-calm", False)):
            out.append(
                Scenario(
                    key,
                    "Reconnect storm: all clients at once, "
                    + ("1 tick/s to those back" if flowing else "no ticks while they connect"),
                    n,
                    "rate",
                    rate=1.0,
                    warmup=1.0,
                    duration=5.0,
                    outbox_max_bytes=4 * MIB,
                    servers=("gateway", "floor"),
                    ticks_while_connecting=flowing,
                )
            )
    return out

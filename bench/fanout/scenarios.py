"""The scenarios of the fan-out benchmark, full and quick."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["window", "rate", "idle"]

MIB = 1024 * 1024
SUBSCRIBE = (
    '{{"type":"subscribe","channel":"orderbook","params":{{"depth":{depth},"symbol":"BTC"}}}}'
)
# A lossless stream (offsets, history): the pump's `--channel trades`, one trade a tick.
SUBSCRIBE_TRADES = '{"type":"subscribe","channel":"trades","params":{"symbol":"BTC"}}'


@dataclass(frozen=True)
class Scenario:
    # saturation | saturation-deflate | saturation-deflate-d20 | rate-1 | rate-10 | idle | slow
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
    settle: float = 3.0  # idle: seconds held before RSS is read
    repeats: int = 1
    channel: str = "orderbook"  # or "trades" (a lossless stream), with the pump's --channel

    @property
    def id(self) -> str:
        return f"{self.key}@{self.clients}"

    @property
    def subscribe(self) -> str:
        if self.channel == "trades":
            return SUBSCRIBE_TRADES
        return SUBSCRIBE.format(depth=self.depth)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}


def plan(quick: bool, fd_limit: int) -> list[Scenario]:
    """The full run (~15 min) or the quick one (~3 min).

    `fd_limit` is the hard RLIMIT_NOFILE: one process cannot hold more sockets than
    that, so the "20k" idle scenario holds as many as fit (20,000 where allowed).
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
            )
        )
    for n in (1000, 10_000) if quick else (1000, 5000, 10_000):
        out.append(
            Scenario(
                "rate-1",
                "Fixed rate: 1 tick/s",
                n,
                "rate",
                rate=1.0,
                duration=8.0 if quick else 20.0,
                outbox_max_bytes=4 * MIB,
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
        )
    )
    return out

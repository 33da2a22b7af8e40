"""Redis Sentinel failovers under load, against the simulator's ledger.

One run: a Sentinel group of our own (bench/sentinel/group.py: a primary, a
replica, three sentinels), two `hlgateway serve --broker redis+sentinel://...`
processes, the simulator trading three wallets fast, and clients:

- `raw` clients written from docs/protocol.md (user_fills, user_orders and
  user_ledger of the three wallets), which leave again and again and
  come back to either node with `since` (as bench/recovery's, but leaving by
  themselves: the gateways are not cut here, Redis is);
- one Python SDK client (`GatewayClient`) that stays on node B throughout: the
  live path across each failover.

Then failovers, one after another, of the kinds of group.py in turn (the primary
killed; `SENTINEL FAILOVER`; the primary killed while its replica lags, so the
new primary lacks the last writes), each once the group settled from the last.
At the end every client must have every fill, order transition and ledger event
(funding, transfers, liquidations) of the simulator's ledger in the window
exactly once, fills in order; and no client may
have been handed a wrong replay:
- `conflicts`: an (epoch, offset) of a stream given with two different contents
  (to one client or two: one offset names one message, whoever asks);
- `broken replays`: after `recovered: true`, a message whose offset does not
  follow the last one (a replay that skipped, or started beyond the head).
`recovered: false` answers are counted (the client was told to reload: with
`min_replicas` 0 a failover that lost writes gives them; with the default 1 it
must not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench.ledger import Expected, LedgerCheck
from bench.recovery.harness import CHANNELS, USER, Received
from bench.recovery.sdk import PythonClient
from bench.sentinel.group import KINDS, SentinelGroup
from hlgateway.auth import issue_token
from hlgateway.simulator import SimConfig, Simulator
from tests.helpers import SECRET, GatewayProcess, eventually, free_port
from tests.scaleout.support import health

WALLETS = ["0x" + "e1" * 20, "0x" + "e2" * 20, "0x" + "e3" * 20]


def gateway(name: str, upstream: str, broker: str, logs: Path) -> GatewayProcess:
    """One `hlgateway serve` process on the Sentinel group."""
    return GatewayProcess(
        free_port(),
        *("--upstream", upstream, "--broker", broker),
        log_file=logs / f"{name}.log",
        HLGATEWAY_NODE_NAME=name,
        HLGATEWAY_LOG_LEVEL="INFO",
        # The raw clients come back far more often than a person would.
        HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE="0",
    )


def _items(msg: dict[str, Any]) -> list[str]:
    """The ids of the fills, order transitions or ledger events a message carries."""
    data = msg["data"]
    if msg["channel"] == "user_fills":
        return [f"{f['wallet']}:{f['id']}" for f in data["fills"]]
    if msg["channel"] == "user_ledger":
        return [f"{e['wallet']}:{e['id']}" for e in data["events"]]
    order = data["order"]
    return [f"{order['wallet']}:{order['id']}:{order['status']}:{order['remaining']}"]


class Witness:
    """Every (stream, epoch, offset) any client was given, and what it named; and
    every item (a fill, a transition, a ledger event), at which positions."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, int], bytes] = {}
        self._where: dict[tuple[str, str], set[tuple[str, int]]] = {}
        self.conflicts = 0
        self.examples: list[str] = []

    def see(self, msg: dict[str, Any]) -> None:
        key = (msg["channel"], msg["epoch"], msg["offset"])
        content = msgspec.json.encode(msg["data"])
        known = self._seen.setdefault(key, content)
        if known != content:
            self.conflicts += 1
            if len(self.examples) < 3:
                self.examples.append(f"{key}: {known[:80]!r} then {content[:80]!r}")
        for item in _items(msg):
            self._where.setdefault((msg["channel"], item), set()).add(key[1:])

    def republished(self) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """Items given at two positions or more: published twice in the streams."""
        return {k: sorted(v) for k, v in self._where.items() if len(v) > 1}


@dataclass
class Replays:
    """One client's replays: answers, and whether what followed `recovered: true` fit."""

    recovered: int = 0
    not_recovered: int = 0
    broken: int = 0  # a message of the same epoch that does not follow the last offset
    new_epochs: int = 0  # live data went on in a new epoch (history lost: reload)
    examples: list[str] = field(default_factory=list)  # `recovered: false` answers


class Leaving:
    """A client written from docs/protocol.md: connects to a random node, subscribes
    with the positions it holds, stays `stay` seconds, leaves, stays away `away`
    seconds, and again, until `calm` is set (then it stays)."""

    def __init__(self, seed: int, stay: tuple[float, float], away: tuple[float, float]) -> None:
        self._rng = random.Random(seed)
        self._stay = stay
        self._away = away
        self.replays = Replays()
        self.calm = asyncio.Event()

    async def run(self, urls: list[str], token: str, received: Received, witness: Witness) -> None:
        positions: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            while True:
                url = self._rng.choice(urls)
                with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                    await self._connection(session, url, token, received, witness, positions)
                if not self.calm.is_set():
                    await asyncio.sleep(self._rng.uniform(*self._away))

    async def _connection(
        self,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        received: Received,
        witness: Witness,
        positions: dict[str, dict[str, Any]],
    ) -> None:
        # The offset each channel's next message must have, once a reply said where.
        expect: dict[str, tuple[str, int] | None] = {c: None for c in CHANNELS}
        async with session.ws_connect(f"{url}?token={token}", heartbeat=2.0) as ws:
            received.connections += 1
            for channel in CHANNELS:
                request: dict[str, Any] = {
                    "type": "subscribe",
                    "channel": channel,
                    "params": {"userId": USER},
                }
                if channel in positions:
                    request["since"] = positions[channel]
                await ws.send_str(msgspec.json.encode(request).decode())
            leave = asyncio.get_running_loop().time() + self._rng.uniform(*self._stay)
            while True:
                remaining = leave - asyncio.get_running_loop().time()
                if remaining <= 0 and not self.calm.is_set():
                    return  # leave; the next connection comes back with `since`
                try:
                    frame = await ws.receive(timeout=max(remaining, 0.05))
                except TimeoutError:
                    continue
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    return
                msg = msgspec.json.decode(frame.data)
                kind, channel = msg.get("type"), msg.get("channel")
                if kind == "subscribed" and channel in CHANNELS:
                    received.subscribed(msg)
                    asked = positions.get(channel)
                    if msg.get("recovered"):
                        self.replays.recovered += 1
                        assert asked is not None
                        expect[channel] = (asked["epoch"], asked["offset"] + 1)
                    else:
                        if asked is not None:
                            self.replays.not_recovered += 1
                            if len(self.replays.examples) < 5:
                                self.replays.examples.append(
                                    f"{channel} since {asked['offset']}/{asked['epoch']}: "
                                    f"head {msg['offset']}/{msg['epoch']} at {url}"
                                )
                        # Live from the head: what comes next is the head's successor.
                        positions[channel] = {"offset": msg["offset"], "epoch": msg["epoch"]}
                        expect[channel] = (msg["epoch"], msg["offset"] + 1)
                elif kind == "data" and channel in CHANNELS:
                    witness.see(msg)
                    received.data(msg)
                    wanted = expect[channel]
                    if wanted is not None and wanted[0] != msg["epoch"]:
                        # The stream's history was lost and it went on in a new
                        # epoch: the protocol's way of saying so (reload).
                        self.replays.new_epochs += 1
                    elif wanted is not None and msg["offset"] != wanted[1]:
                        self.replays.broken += 1
                    expect[channel] = (msg["epoch"], msg["offset"] + 1)
                    positions[channel] = {"offset": msg["offset"], "epoch": msg["epoch"]}


class Live(Received):
    """The SDK client's deliveries, with each fill's delay (receipt minus exchange time)
    and the receipt times (the pauses around each failover)."""

    def __init__(self, witness: Witness) -> None:
        super().__init__()
        self._witness = witness
        self.fill_delays_ms: list[float] = []
        self.receipts: list[float] = []

    def data(self, msg: dict[str, Any]) -> None:
        super().data(msg)
        if msg["channel"] not in CHANNELS:
            return
        self._witness.see(msg)
        now = time.time()
        self.receipts.append(time.monotonic())
        if msg["channel"] == "user_fills":
            self.fill_delays_ms += [now * 1000 - f["timestamp"] for f in msg["data"]["fills"]]


@dataclass
class FailoverRecord:
    kind: str
    switched_s: float  # until the sentinels named the new primary
    settled_s: float  # until the group was whole again (old primary a replica, in sync)
    pause_s: float  # the live client's longest wait for a message around it


@dataclass
class SentinelReport:
    min_replicas: int = 1
    failovers: list[FailoverRecord] = field(default_factory=list)
    seconds: float = 0.0
    clients: int = 0
    ledgers: list[LedgerCheck] = field(default_factory=list)
    conflicts: int = 0
    conflict_examples: list[str] = field(default_factory=list)
    not_recovered_examples: list[str] = field(default_factory=list)
    republished: int = 0  # items found at two positions of the streams (published twice)
    republished_examples: list[str] = field(default_factory=list)
    broken_replays: int = 0
    new_epochs: int = 0
    recovered: int = 0
    not_recovered: int = 0
    reconnects: int = 0
    epochs: int = 0
    fill_delay_ms: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fills_lost(self) -> int:
        return sum(c.fills_lost for c in self.ledgers)

    @property
    def wrong_replays(self) -> int:
        return self.conflicts + self.broken_replays

    def ok(self) -> bool:
        return (
            all(c.ok() for c in self.ledgers)
            and self.wrong_replays == 0
            and (self.min_replicas == 0 or self.not_recovered == 0)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fills_lost": self.fills_lost, "wrong_replays": self.wrong_replays}


async def run_failovers(
    failovers: int = 10,
    *,
    min_replicas: int = 1,
    kinds: tuple[str, ...] = KINDS,
    clients: int = 4,
    calm: float = 5.0,
    seed: int = 17,
    progress: Callable[[str], None] | None = None,
) -> SentinelReport:
    """`failovers` failovers of `kinds` in turn under load; `calm` seconds of plain
    flow after the group settled from each."""
    report = SentinelReport(min_replicas=min_replicas, clients=clients + 1)
    say = progress or (lambda _: None)
    sim = Simulator(
        SimConfig(
            seed=seed,
            order_interval=0.2,
            max_fill_gap=0.8,
            idle_timeout=600,
            funding_interval=2.0,
            transfer_interval=1.0,
            liquidation_interval=6.0,
        )
    )
    await sim.start("127.0.0.1", 0)
    logs = Path(tempfile.mkdtemp(prefix="hlgw-bench-sentinel-"))
    group = SentinelGroup()
    nodes: list[GatewayProcess] = []
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    try:
        await group.start()
        url = group.url(min_replicas=min_replicas)
        nodes = [gateway(name, sim.ws_url, url, logs) for name in ("a", "b")]
        await asyncio.gather(*(node.start() for node in nodes))
        say(f"group and nodes up (logs in {logs})")
        token = issue_token(SECRET, USER, wallets=WALLETS, ttl_seconds=24 * 3600)
        witness = Witness()
        leaving = [Leaving(seed + n, stay=(0.5, 4.0), away=(0.1, 3.0)) for n in range(clients)]
        received = [Received() for _ in leaving]
        live = Live(witness)
        loop = asyncio.get_running_loop()
        urls = [node.ws for node in nodes]
        for client, got in zip(leaving, received, strict=True):
            tasks.append(loop.create_task(client.run(urls, token, got, witness)))
        sdk = PythonClient(away=0.5)
        tasks.append(loop.create_task(sdk.run(nodes[1].ws, token, live)))
        everyone = [*received, live]
        await eventually(lambda: all(all(r.offsets[c] for c in CHANNELS) for r in everyone), 60)
        window_start = int(time.time() * 1000) + 1000

        for n in range(failovers):
            kind = kinds[n % len(kinds)]
            say(f"failover {n + 1}/{failovers}: {kind}")
            begin = time.monotonic()
            before = len(live.receipts)
            await group.failover(kind)
            settled = time.monotonic() - begin  # failover() returns once the group settled
            await asyncio.sleep(calm)
            times = [begin, *live.receipts[before:], time.monotonic()]
            pause = max(b - a for a, b in itertools.pairwise(times))
            report.failovers.append(
                FailoverRecord(kind, round(group.switched, 2), round(settled, 2), round(pause, 2))
            )

        for client in leaving:
            client.calm.set()
        cutoff = int(time.time() * 1000) - 500
        expected = Expected(sim, WALLETS, window_start, cutoff)
        # Late is not lost: a loaded machine may still be delivering (bounded); what is
        # still missing then is counted below.
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: all(expected.received_by(r.got) for r in everyone), 90)
        report.seconds = round(time.monotonic() - started, 1)
        report.ledgers = [LedgerCheck.of(expected, r.got) for r in everyone]
        report.conflicts, report.conflict_examples = witness.conflicts, witness.examples
        twice = witness.republished()
        report.republished = len(twice)
        report.republished_examples = [f"{k}: {v}" for k, v in list(twice.items())[:5]]
        for client in leaving:
            report.broken_replays += client.replays.broken
            report.new_epochs += client.replays.new_epochs
            report.not_recovered_examples += client.replays.examples
            report.recovered += client.replays.recovered
            report.not_recovered += client.replays.not_recovered
        report.reconnects = sum(r.connections for r in everyone)
        report.epochs = len(set().union(*(r.epochs for r in everyone)))
        if live.fill_delays_ms:
            delays = sorted(live.fill_delays_ms)
            report.fill_delay_ms = {
                "p50": round(statistics.median(delays), 1),
                "p99": round(delays[int(len(delays) * 0.99) - 1], 1),
                "max": round(delays[-1], 1),
            }
        for name, node in zip("ab", nodes, strict=True):
            broker = (await health(node))["broker"]
            keys = ("failovers", "rewound", "newEpochs", "replicaWaits", "unreplicated")
            report.nodes[name] = {k: broker.get(k, 0) for k in keys} | {
                "disconnects": broker.get("disconnects", 0),
                "published": broker.get("published", 0),
            }
        if report.ok():
            shutil.rmtree(logs, ignore_errors=True)  # else kept, to read what went wrong
        return report
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for node in nodes:
            await node.terminate()
        await group.stop()
        await sim.stop()

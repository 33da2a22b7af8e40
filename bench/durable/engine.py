"""The durable engine beside the memory engine, in one process, on the node's own path.

Each publication goes the way a fill goes in the gateway: the Publisher encodes
it once (`publish_items`, the exactly-once ledger's path), the engine positions
and keeps it, and the node's sink builds its WebSocket frame and hands it to
the hub's subscriber (one per stream, as user streams have). Only the socket
write is left out (it is the same for both engines): so the ratio of the two
engines' CPU is the most the durable engine can add per publication.

- `cost`: CPU seconds (the process's, all threads: the checkpointer too) per
  publication at saturation, `per_turn` publications per loop turn;
- `latency`: what the durable engine adds between `publish` and the
  subscriber's frame (the memory engine delivers within `publish`), at a rate,
  over long enough for the checkpoints to run beside it;
- `size`: bytes on disk per retained message, beside the payload;
- `startup`: the engine's start (open, load) with many busy streams retained,
  and the process's memory after it.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hlgateway.auth import Principal
from hlgateway.broker import Broker, MemoryBroker, Retention
from hlgateway.broker.durable import DurableBroker
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Catalog, Topic
from hlgateway.protocol.markets import Markets
from hlgateway.publisher import Publisher
from hlgateway.upstream import wire
from hlgateway.websocket.frames import Frame

RETENTION = Retention(size=1000, ttl=600, max_size=2000)


def fill(n: int, wallet: str) -> wire.Fill:
    """A real-sized fill (the one bench.history measures): ~470 B as a message."""
    return wire.Fill(
        id=1_000_000 + n,
        orderId=2_000_000 + n,
        symbol="BTC",
        side="buy",
        price=97_123.5,
        size=0.0123,
        fee=0.3521,
        closedPnl=-12.25,
        timestamp=1_764_000_000_000 + n,
        wallet=wallet,
        direction="Open Long",
        hash="0x" + "ab" * 32,
    )


def user_topics(count: int) -> list[tuple[Topic, str]]:
    catalog = Catalog(Markets(["BTC"]))
    out = []
    for n in range(count):
        wallet = f"0x{n:040x}"
        principal = Principal(f"user{n}", wallets=frozenset({wallet}))
        out.append((catalog.resolve("user_fills", {"userId": f"user{n}"}, principal), wallet))
    return out


class Subscriber:
    """The hub's end of one client: takes the frame's bytes, as an outbox would."""

    __slots__ = ("bytes", "count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.last = 0.0

    def deliver(self, frame: Frame) -> None:
        self.count += 1
        self.bytes += len(frame.raw)
        self.last = time.perf_counter()

    def replay(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.deliver(frame)


class Node:
    """An engine wired as gateway.py wires it: publisher -> engine -> sink -> hub."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.hub = Hub()
        self.publisher = Publisher(broker)
        broker.bind(self._deliver)
        self.delivered = 0
        self.awaited = 0  # `arrived` is set once this many were delivered
        self.arrived = asyncio.Event()

    def _deliver(self, topic: Topic, payload: bytes, offset: int) -> None:
        self.delivered += 1
        self.hub.publish(topic, Frame(payload, 0, topic if topic.snapshot else None))
        if self.delivered >= self.awaited:
            self.arrived.set()

    async def delivered_all(self, count: int) -> None:
        self.awaited = count
        if self.delivered < count:
            self.arrived.clear()
            await self.arrived.wait()

    async def attach(self, topics: list[tuple[Topic, str]]) -> list[Subscriber]:
        subscribers = []
        for topic, _ in topics:
            await self.broker.read(topic, None)
            subscriber = Subscriber()
            self.hub.subscribe(topic, subscriber)
            self.broker.demand(topic)
            subscribers.append(subscriber)
        return subscribers


async def engine(kind: str, directory: Path) -> Broker:
    broker = MemoryBroker(RETENTION) if kind == "memory" else DurableBroker(directory, RETENTION)
    await broker.start()
    return broker


async def cost(kind: str, count: int, per_turn: int, streams: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="hlgw-bench-durable-"))
    try:
        broker = await engine(kind, directory)
        node = Node(broker)
        topics = user_topics(streams)
        await node.attach(topics)
        items = [(topic, wallet, fill(n, wallet)) for n, (topic, wallet) in enumerate(topics)]
        gc.collect()
        gc.disable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(count):
            topic, wallet, one = items[n % streams]
            node.publisher.publish_items(topic, {}, "fills", [(f"{wallet}:{n}", one)], 86_400.0)
            node.publisher.delivered("user_fills", wallet, one.timestamp)
            if n % per_turn == per_turn - 1:
                await asyncio.sleep(0)
        await node.delivered_all(count)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.enable()
        await broker.stop()
        return {
            "engine": kind,
            "publications": count,
            "per_turn": per_turn,
            "streams": streams,
            "cpu_us_per_publication": round(cpu / count * 1e6, 2),
            "publications_per_s": round(count / wall),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def latency(rate: float, seconds: float, streams: int) -> dict[str, Any]:
    """The durable engine's delay from `publish` to the subscriber's frame (the memory
    engine's is nil: it delivers within `publish`), at `rate` publications/s."""
    directory = Path(tempfile.mkdtemp(prefix="hlgw-bench-durable-"))
    try:
        broker = DurableBroker(directory, RETENTION)
        await broker.start()
        node = Node(broker)
        topics = user_topics(streams)
        subscribers = await node.attach(topics)
        delays: list[float] = []
        interval = 1.0 / rate
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            due = start + n * interval
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            index = n % streams
            topic, wallet = topics[index]
            subscriber = subscribers[index]
            sent = time.perf_counter()
            node.publisher.publish_items(
                topic, {}, "fills", [(f"{wallet}:{n}", fill(n, wallet))], 86_400.0
            )
            await node.delivered_all(n + 1)
            delays.append(subscriber.last - sent)
            n += 1
        store = broker._store
        checkpointer = store._checkpointer if store is not None else None
        checkpoints = checkpointer.passes if checkpointer is not None else 0
        await broker.stop()
        delays.sort()
        return {
            "rate_per_s": rate,
            "publications": len(delays),
            "seconds": seconds,
            "checkpoints_during": checkpoints,
            "added_p50_ms": round(statistics.median(delays) * 1000, 3),
            "added_p99_ms": round(delays[int(len(delays) * 0.99)] * 1000, 3),
            "added_max_ms": round(delays[-1] * 1000, 3),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def fill_store(directory: Path, streams: int, messages: int) -> int:
    """A stopped gateway's state: `streams` busy user_fills streams of `messages` each,
    their ledgers and positions, all wanted. Returns the payload bytes retained."""
    retention = Retention(size=messages, ttl=600, max_size=messages)
    broker = DurableBroker(directory, retention)
    await broker.start()
    node = Node(broker)
    topics = user_topics(streams)
    await node.attach(topics)
    for m in range(messages):
        for topic, wallet in topics:
            one = fill(m, wallet)
            node.publisher.publish_items(topic, {}, "fills", [(f"{wallet}:{m}", one)], 86_400.0)
            node.publisher.delivered("user_fills", wallet, one.timestamp)
        await asyncio.sleep(0)
    sample = broker.read_now(topics[0][0], None)
    assert sample is not None and sample.position is not None
    assert sample.position.offset == messages
    every = broker.read_now(topics[0][0], type(sample.position)(0, sample.position.epoch))
    assert every is not None
    payload = sum(len(p.payload) for p in every.publications)
    await broker.stop()  # the checkpoint: everything in state.db
    return payload * streams


async def size_and_startup(streams: int, messages: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="hlgw-bench-durable-"))
    try:
        t0 = time.perf_counter()
        payload = await fill_store(directory, streams, messages)
        filled = time.perf_counter() - t0
        db = directory / "state.db"
        on_disk = db.stat().st_size
        retained = streams * messages
        gc.collect()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        retention = Retention(size=messages, ttl=600, max_size=messages)
        broker = DurableBroker(directory, retention)
        t1 = time.perf_counter()
        await broker.start()
        started = time.perf_counter() - t1
        resumed = len(await broker.resume())
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await broker.stop()
        serving = await process_start(directory)
        return {
            "streams": streams,
            "messages_per_stream": messages,
            "retained_messages": retained,
            "payload_bytes_per_message": round(payload / retained),
            "state_db_bytes": on_disk,
            "disk_bytes_per_message": round(on_disk / retained),
            "fill_seconds": round(filled, 1),
            "startup_seconds": round(started, 2),
            "resumed_topics": resumed,
            "max_rss_growth_mib": round((rss1 - rss0) / 1024, 1),
            "process_serving_seconds": round(serving, 2),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def process_start(directory: Path) -> float:
    """Seconds from `hlgateway serve` on that state directory to its serving (/health
    answered with the market list loaded), on the simulator; every stream's topic is
    resumed (its wallets fed again) on the way."""
    from hlgateway.simulator import SimConfig, Simulator
    from tests.helpers import GatewayProcess, free_port

    sim = Simulator(SimConfig(seed=5, track_rest_queries=True))
    await sim.start("127.0.0.1", 0)
    proc = GatewayProcess(free_port(), "--upstream", sim.ws_url, state_dir=directory)
    try:
        began = time.perf_counter()
        await proc.start()
        return time.perf_counter() - began
    finally:
        await proc.kill()
        await sim.stop()

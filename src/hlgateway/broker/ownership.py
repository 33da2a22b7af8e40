"""Which node feeds each upstream stream, when nodes share a Redis (scale-out):
the Redis engine's coordinator (broker/coordination.py).

Hyperliquid's limits are per IP (links, subscriptions, tracked users): a fleet
must hold each upstream stream once, not once per node. Every node writes the
topics its clients want into a demand set in Redis (a sorted set scored by
expiry: a node that dies stops refreshing, and its demand goes within
DEMAND_TTL). Every node reads the whole set and competes for a lease per
demanded topic (broker/leases.py decides when; this module runs the commands,
over broker/redis_shard.py, with the scripts of broker/lua/); the holder runs
the topic's feed (upstream/feeds.py, through FeedControl) and publishes through
the broker to every node. When the holder dies its leases expire and the other
nodes take them over; the new holder's user streams start from the topic's
first demand (kept in Redis), and the broker's shared ledger drops whatever the
previous holder already published, so fills and order transitions stay exactly
once across the handover.

Which node competes for which lease is the fleet's placement (broker/placement.py):
every node publishes what its upstream can feed (its address's WebSocket wallet
slots, subscriptions and REST budget) every second; one node, the holder of the
placer lease, plans from every node's capacity, the demand and the lease holders,
and writes the plan; every node competes only for the leases planned for it, and
gives back a lease planned elsewhere (a move: the handover above, at most a few a
second fleet-wide). A subscription asking for wallets the whole fleet cannot take
(every WebSocket slot taken, every REST budget spent within the accepted latency)
is refused with the reason. Without a plan (no placer yet, or it died) every node
competes for every lease, as before placement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from hlgateway.broker import scripts
from hlgateway.broker.coordination import CoordinationStats, Coordinator, FeedControl
from hlgateway.broker.leases import Command, Event, Lease, LeaseTiming
from hlgateway.broker.placement import NodeCapacity, Placer, Stream, admission
from hlgateway.broker.redis import PREFIX, WANTED_KEY, RedisBroker, behind_key, position_key
from hlgateway.broker.redis_shard import UNAVAILABLE, evalsha
from hlgateway.broker.topics import decode_topic, encode_topic, topic_id
from hlgateway.protocol.channels import (
    MARKET_CHANNELS,
    USER_CHANNELS,
    USER_FILLS,
    USER_LEDGER,
    USER_ORDERS,
    Topic,
)
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.upstream.clock import start_from

log = logging.getLogger(__name__)

DEMAND_KEY = f"{PREFIX}:demand"
DEMAND_TTL = 15.0  # seconds a node's demand outlives its last refresh
DEMAND_REFRESH = 3.0
SCAN_EVERY = 0.5  # how often the global demand is read
TICK = 0.25
REFUSED_PAUSE = 30.0  # a topic this node's upstream refused is left to others this long

# Placement (broker/placement.py).
NODES_KEY = f"{PREFIX}:nodes"  # sorted set: live nodes, scored by expiry (ms)
CAPACITY_KEY = f"{PREFIX}:nodes:capacity"  # hash: node -> what its upstream can feed
PLACER_KEY = f"{PREFIX}:placer"  # the lease of the node that plans
PLAN_KEY = f"{PREFIX}:placement"  # the plan, written by the placer
CAPACITY_REFRESH = 1.0  # each node's capacity is written this often ...
NODE_TTL = 3.0  # ... and a node not heard of for this long is gone (before its leases)
PLAN_EVERY = 0.5
PLAN_TTL = 3.0  # a plan not refreshed this long is gone: every node competes again
PLAN_GRACE = 3.0  # a newly demanded topic waits this long for the plan to place it
ADMIT_PENDING = 10_000  # ms: an admitted topic no plan placed by then is not waited for

FED_CHANNELS = MARKET_CHANNELS | USER_CHANNELS
POSITIONED = (USER_FILLS, USER_ORDERS, USER_LEDGER)  # streams with a delivery position


class FleetPlan(msgspec.Struct, frozen=True):
    """The placement as the placer writes it and every node reads it."""

    by: str  # the placer
    at: int  # wall-clock ms
    assign: dict[str, str]  # topic id -> node
    nodes: dict[str, dict[str, float]]  # per node: websocket, polled, pollInterval, ...
    over_latency: int = 0  # wallets polled beyond the accepted latency, fleet-wide
    unplaced: int = 0  # demanded topics no node can take
    moves: int = 0  # moves planned by the last round


_encode = msgspec.json.Encoder().encode
_decode_plan = msgspec.json.Decoder(FleetPlan).decode
_decode_capacity = msgspec.json.Decoder(NodeCapacity).decode


def lease_key(topic: Topic) -> str:
    return f"{PREFIX}:{{{topic_id(topic)}}}:lease"


def start_key(topic: Topic) -> str:
    return f"{PREFIX}:{{{topic_id(topic)}}}:start"


class LeaseCoordinator(Coordinator):
    def __init__(
        self,
        broker: RedisBroker,
        feeds: FeedControl,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        can_feed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._broker = broker
        # False while this node's own upstream cannot serve (market list not
        # loaded, links down for long): it then holds no lease, so that a node
        # cut off from Hyperliquid never sits on a stream others could feed.
        self._can_feed = can_feed
        self._feeds = feeds
        self.timing = timing or LeaseTiming()
        self._clock = clock
        self._local: dict[Topic, None] = {}
        self._unwanted: set[Topic] = set()  # lossless topics let go of here: off the wanted set
        self._stopped = False
        self._fresh: set[Topic] = set()  # local demand not yet written
        self._demanded: set[Topic] = set()  # every node's, as last read
        self._leases: dict[Topic, Lease] = {}
        self.feeding: set[Topic] = set()
        self._refused: dict[Topic, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_refresh = float("-inf")
        self._last_scan = float("-inf")
        self._last_capacity = float("-inf")
        self._wrote_able: bool | None = None
        self._last_plan = float("-inf")
        self.gained = 0
        self.lost = 0
        # Placement: the plan as last read (or made), the topics it has not placed
        # yet (since when), wallets admitted here that the plan does not count yet.
        self._ids: dict[Topic, str] = {}
        self._streams: dict[Topic, Stream] = {}
        self.plan: FleetPlan | None = None
        self._unplanned: dict[Topic, float] = {}
        # topic id -> its new wallets, when admitted (wall ms), until a plan places it
        self._admitted: dict[str, tuple[frozenset[str], int]] = {}
        self._placer = Placer()
        self._placer_lease = Lease(PLACER_KEY, self.timing)

    # -- local demand (the hub's first and last subscriber) ---------------------
    def want(self, topic: Topic) -> None:
        """Refuses (ProtocolError) only wallets the whole fleet cannot take; a
        node whose own upstream cannot feed a topic leaves its lease to others."""
        if topic.channel not in FED_CHANNELS:
            return
        if topic.wallets and topic not in self._local:
            self._admit(topic)
        self._local[topic] = None
        self._fresh.add(topic)
        self._wake.set()

    def _admit(self, topic: Topic) -> None:
        plan = self.plan
        if plan is None:
            return  # no placement yet: each node refuses what it alone cannot take
        # Topics admitted here that the plan does not place yet (the placer reads the
        # demand up to a scan late): their wallets take room the plan does not show.
        wall_ms = time.time_ns() // 1_000_000
        self._admitted = {
            tid: (wallets, at)
            for tid, (wallets, at) in self._admitted.items()
            if tid not in plan.assign and wall_ms - at < ADMIT_PENDING
        }
        pending = {w for wallets, _ in self._admitted.values() for w in wallets}
        fed = {w for t in self._demanded for w in t.wallets}
        new = frozenset(w for w in topic.wallets if w not in fed and w not in pending)
        if not new:
            return
        stream = self._stream(topic)
        reason = admission(plan.nodes, len(new) + len(pending), stream.poll_weight)
        if reason is not None:
            raise ProtocolError(ErrorCode.UPSTREAM_UNAVAILABLE, reason)
        self._admitted[self._id(topic)] = (new, wall_ms)

    def _id(self, topic: Topic) -> str:
        tid = self._ids.get(topic)
        if tid is None:
            tid = self._ids[topic] = topic_id(topic)
        return tid

    def _stream(self, topic: Topic) -> Stream:
        """What feeding `topic` costs (placement), worked out once per topic."""
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = self._feeds.stream(topic, self._id(topic))
        return stream

    def unwant(self, topic: Topic) -> None:
        # Its demand in Redis expires by itself (other nodes may want it too). Off the
        # set a restarted fleet resumes (another node that wants it puts it back), but
        # not at a shutdown: what is wanted then is what the next start resumes.
        self._local.pop(topic, None)
        self._fresh.discard(topic)
        if topic.lossless and not self._stopped:
            self._unwanted.add(topic)
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop feeding and give the leases back, so others take over at once."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held = [lease.key for lease in self._leases.values() if lease.held]
        if self._placer_lease.held:
            held.append(PLACER_KEY)
        for topic in list(self.feeding):
            self._stop_feed(topic)
        if held:
            node = self._broker.node

            def release(pipe: Any) -> None:
                for key in held:
                    evalsha(pipe, scripts.LEASE_RELEASE, [key], [node])
                pipe.zrem(NODES_KEY, node)
                pipe.hdel(CAPACITY_KEY, node)

            with contextlib.suppress(*UNAVAILABLE):
                await self._broker.shard.pipeline(release)

    async def _run(self) -> None:
        # Until stop(), not merely until cancelled: a cancellation that lands while
        # redis-py waits on a socket can come out as its TimeoutError (a timeout
        # racing the cancel), and the loop would go on with nobody to cancel it again.
        while not self._stopped:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                log.debug("ownership: Redis unavailable: %s", exc)
            except Exception:
                log.exception("ownership: unexpected error")
            if self._stopped:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()

    async def _tick(self) -> None:
        now = self._clock()
        broker = self._broker
        fresh, self._fresh = self._fresh, set()
        unwanted, self._unwanted = self._unwanted, set()
        try:
            if broker.connected and (
                fresh or unwanted or now - self._last_refresh >= DEMAND_REFRESH
            ):
                await self._write_demand(now, unwanted)
            if broker.connected and (fresh or now - self._last_scan >= SCAN_EVERY):
                await self._scan(now)
        except BaseException:
            self._fresh |= fresh  # written next time
            self._unwanted |= unwanted
            raise
        able = self._can_feed()
        if broker.connected and (
            now - self._last_capacity >= CAPACITY_REFRESH or able != self._wrote_able
        ):
            await self._write_capacity(now, able)
        await self._drive(self._clock())
        if self._placer_lease.confirmed(self._clock()) and now - self._last_plan >= PLAN_EVERY:
            await self._place(self._clock())

    async def _write_demand(self, now: float, unwanted: set[Topic] | None = None) -> None:
        topics = list(self._local)
        self._last_refresh = now
        gone = [encode_topic(t) for t in unwanted or () if t not in self._local]
        if not topics and not gone:
            return
        wall_ms = time.time_ns() // 1_000_000
        expiry = wall_ms + int(DEMAND_TTL * 1000)
        keep_ms = int(DEMAND_TTL * 2000)
        # Lossless topics stay in the wanted set for the linger window after the last
        # node that wanted them went: what a fleet restarted after dying resumes.
        linger_ms = int(self._broker.retention.ttl * 1000)
        lossless = {encode_topic(t): wall_ms + linger_ms for t in topics if t.lossless}

        def write(pipe: Any) -> None:
            if topics:
                pipe.zadd(DEMAND_KEY, {encode_topic(t): expiry for t in topics})
                # Entries expire by score, pruned by the next scan; the key itself goes
                # once no node has refreshed it, not kept forever after the fleet stops.
                pipe.pexpire(DEMAND_KEY, keep_ms)
            for topic in topics:
                # The topic's first demand anywhere: where a new holder starts when no
                # position of its wallets was kept.
                pipe.set(start_key(topic), wall_ms, nx=True, px=keep_ms)
                pipe.pexpire(start_key(topic), keep_ms)
            if gone:
                pipe.zrem(WANTED_KEY, *gone)
            if lossless:
                pipe.zadd(WANTED_KEY, lossless)
                pipe.pexpire(WANTED_KEY, linger_ms)

        await self._broker.shard.pipeline(write)

    async def _scan(self, now: float) -> None:
        self._last_scan = now
        wall_ms = time.time_ns() // 1_000_000

        def scan(pipe: Any) -> None:
            pipe.zremrangebyscore(DEMAND_KEY, "-inf", wall_ms)
            pipe.zrangebyscore(DEMAND_KEY, wall_ms, "+inf")
            pipe.get(PLAN_KEY)

        _, members, raw_plan = await self._broker.shard.pipeline(scan)
        if not self._placer_lease.held:  # the placer has its own, newer
            self.plan = self._read_plan(raw_plan)
        demanded: set[Topic] = set()
        for raw in members:
            try:
                demanded.add(decode_topic(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("ownership: a malformed demand entry was ignored")
        self._demanded = demanded
        # Ids and costs of topics nobody wants any more are forgotten.
        self._ids = {t: i for t, i in self._ids.items() if t in demanded or t in self._local}
        self._streams = {t: c for t, c in self._streams.items() if t in self._ids}

    @staticmethod
    def _read_plan(raw: bytes | None) -> FleetPlan | None:
        if raw is None:
            return None
        try:
            return _decode_plan(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ownership: a malformed placement was ignored")
            return None

    def _planned_here(self, topic: Topic, lease: Lease | None, now: float) -> bool:
        """Whether this node should hold `topic`, as the plan says."""
        plan = self.plan
        if plan is None:
            return True  # no placement: every node competes, as before it
        target = plan.assign.get(self._id(topic))
        if target is not None:
            self._unplanned.pop(topic, None)
            return target == self._broker.node
        if lease is not None and lease.held:
            return True  # not planned yet: the holder keeps it
        # New: the placer places it within a round or two; if it does not, anyone.
        return now - self._unplanned.setdefault(topic, now) >= PLAN_GRACE

    async def _drive(self, now: float) -> None:
        """Want the leases of demanded topics planned here, send what the leases
        ask, act on outcomes."""
        timing = self.timing
        able = self._can_feed()
        for topic in self._demanded if able else ():
            if self._refused.get(topic, 0.0) > now:
                continue
            lease = self._leases.get(topic)
            if not self._planned_here(topic, lease, now):
                continue
            if lease is None:
                lease = self._leases[topic] = Lease(lease_key(topic), timing)
            lease.want(now)
        for topic, lease in list(self._leases.items()):
            if (
                not able
                or topic not in self._demanded
                or self._refused.get(topic, 0.0) > now
                or not self._planned_here(topic, lease, now)
            ):
                lease.unwant(now)  # a lease planned elsewhere: a move
            if lease.idle:
                del self._leases[topic]
        for topic in [t for t in self._unplanned if t not in self._demanded]:
            del self._unplanned[topic]
        if able:
            self._placer_lease.want(now)
        else:
            self._placer_lease.unwant(now)
        commands: list[tuple[Topic | None, Lease, Command]] = [
            (topic, lease, command)
            for topic, lease in self._leases.items()
            if (command := lease.poll(now)) is not None
        ]
        if (command := self._placer_lease.poll(now)) is not None:
            commands.append((None, self._placer_lease, command))
        if not commands:
            return
        outcomes: list[bool | None]
        try:
            outcomes = await self._send(commands)
        except UNAVAILABLE:
            outcomes = [None] * len(commands)
        gained: list[Topic] = []
        for (stream, lease, command), ok in zip(commands, outcomes, strict=True):
            event = lease.outcome(command, ok, now)
            if stream is None:
                if event is not None:
                    log.info("ownership: node %s %s the placer", self._broker.node, event.value)
            elif event is Event.GAINED:
                gained.append(stream)
            elif event is Event.LOST:
                self._stop_feed(stream)
        if gained:
            await self._start_feeds(gained)

    # -- placement ------------------------------------------------------------------
    async def _write_capacity(self, now: float, able: bool) -> None:
        """What this node's upstream can feed, for the placer: every second, and at
        once when it becomes able or unable to feed."""
        self._last_capacity = now
        self._wrote_able = able
        capacity = dataclasses.replace(self._feeds.capacity(), able=able)
        node = self._broker.node
        expiry = time.time_ns() // 1_000_000 + int(NODE_TTL * 1000)
        keep_ms = int(DEMAND_TTL * 2000)

        def write(pipe: Any) -> None:
            pipe.zadd(NODES_KEY, {node: expiry})
            pipe.hset(CAPACITY_KEY, node, _encode(capacity))
            pipe.pexpire(NODES_KEY, keep_ms)
            pipe.pexpire(CAPACITY_KEY, keep_ms)

        await self._broker.shard.pipeline(write)

    async def _place(self, now: float) -> None:
        """The placer's round: every node's capacity, the demand and the lease
        holders in; the plan out, for every node to follow."""
        self._last_plan = now
        wall_ms = time.time_ns() // 1_000_000
        topics = list(self._demanded)

        def read(pipe: Any) -> None:
            pipe.zremrangebyscore(NODES_KEY, "-inf", wall_ms)
            pipe.zrangebyscore(NODES_KEY, wall_ms, "+inf")
            pipe.hgetall(CAPACITY_KEY)
            for topic in topics:
                pipe.get(lease_key(topic))

        replies = await self._broker.shard.pipeline(read)
        live = {name.decode() for name in replies[1]}
        nodes: dict[str, NodeCapacity] = {}
        for name, raw in replies[2].items():
            if name.decode() in live:
                try:
                    nodes[name.decode()] = _decode_capacity(raw)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.warning("ownership: a malformed node capacity was ignored")
        holders = {
            self._id(topic): holder.decode()
            for topic, holder in zip(topics, replies[3:], strict=True)
            if holder is not None
        }
        streams = [self._stream(topic) for topic in topics]
        plan = self._placer.plan(now, nodes, streams, holders)
        for move in plan.moves:
            log.info("placement: %s moves from %s to %s", move.stream, move.source, move.target)
        record = FleetPlan(
            self._broker.node,
            wall_ms,
            plan.assignment,
            plan.nodes,
            plan.over_latency,
            len(plan.unplaced),
            len(plan.moves),
        )
        gone = [name for name in replies[2] if name.decode() not in live]

        def write(pipe: Any) -> None:
            pipe.set(PLAN_KEY, _encode(record), px=int(PLAN_TTL * 1000))
            if gone:
                pipe.hdel(CAPACITY_KEY, *gone)

        await self._broker.shard.pipeline(write)
        self.plan = record
        self._wake.set()  # follow it at once

    def fleet(self) -> dict[str, Any] | None:
        """The fleet as the last plan saw it (for /health), None without a plan."""
        plan = self.plan
        if plan is None:
            return None
        nodes = plan.nodes
        return {
            "placer": plan.by,
            "planAgeSeconds": round(max(0, time.time_ns() // 1_000_000 - plan.at) / 1000, 1),
            "nodes": len(nodes),
            "websocket": int(sum(n.get("websocket", 0) for n in nodes.values())),
            "polled": int(sum(n.get("polled", 0) for n in nodes.values())),
            "freeSlots": int(sum(n.get("freeSlots", 0) for n in nodes.values())),
            "slowestPollIntervalSeconds": _slowest(nodes),
            "overLatency": plan.over_latency,
            "unplaced": plan.unplaced,
        }

    async def _send(self, commands: list[tuple[Topic | None, Lease, Command]]) -> list[bool | None]:
        node, ttl_ms = self._broker.node, int(self.timing.ttl * 1000)

        def build(pipe: Any) -> None:
            for _, lease, command in commands:
                if command is Command.RELEASE:
                    evalsha(pipe, scripts.LEASE_RELEASE, [lease.key], [node])
                else:
                    evalsha(pipe, scripts.LEASE_CLAIM, [lease.key], [node, ttl_ms])

        return [bool(result) for result in await self._broker.shard.pipeline(build)]

    async def _start_feeds(self, topics: list[Topic]) -> None:
        """Each wallet's feed starts where its stream was delivered to (by whichever node
        fed it last, before a handover or the death of every node); without such a
        position, from the topic's first demand; without that, from now (those two less
        the margin for the exchange's clock). The shared ledger drops what was
        published before. A topic whose own stream stopped behind its wallet's (fed on
        for another topic meanwhile) is told where (`behind`): what it missed is read
        back for it alone."""
        wall_ms = time.time_ns() // 1_000_000
        keys: list[str | bytes] = [start_key(t) for t in topics]
        positioned = [t for t in topics if t.channel in POSITIONED]
        wallets = [(t.channel, w) for t in positioned for w in t.wallets]
        keys += [position_key(channel, wallet) for channel, wallet in wallets]
        owned = [(t, w) for t in positioned for w in t.wallets]
        keys += [behind_key(topic, wallet) for topic, wallet in owned]
        stored: list[Any]
        try:
            stored = await self._broker.shard.command(lambda client: client.mget(keys))
        except UNAVAILABLE:
            stored = [None] * len(keys)
        starts = stored[: len(topics)]
        found = stored[len(topics) : len(topics) + len(wallets)]
        stopped = stored[len(topics) + len(wallets) :]
        positions = {key: int(ms) for key, ms in zip(wallets, found, strict=True) if ms is not None}
        # Each topic's own position, kept up to date by its holder (dead or alive).
        own = {key: int(ms) for key, ms in zip(owned, stopped, strict=True) if ms is not None}
        for topic, start in zip(topics, starts, strict=True):
            # A demand is a moment on our clock; a stream starts on the exchange's,
            # a margin earlier (upstream/clock.py). A position is the exchange's own.
            first = start_from(int(start) if start is not None else wall_ms)
            since: dict[str, int] = {}
            for wallet in topic.wallets:
                kept = positions.get((topic.channel, wallet))
                since[wallet] = first if kept is None else kept
                if topic.channel not in POSITIONED:
                    continue
                # Where a handover resumes: what an operator checks after a node died.
                log.info(
                    "ownership: %s of %s from %d (%s)",
                    topic.channel,
                    wallet,
                    since[wallet],
                    "its first demand" if kept is None else "where it was delivered to",
                )
            # Asked topic by topic: one started just before may feed its wallet now.
            behind = {
                wallet: own[(topic, wallet)]
                for wallet in topic.wallets
                if (topic, wallet) in own
                and self._broker.is_behind(topic.channel, wallet, own[(topic, wallet)])
            }
            self._start_feed(topic, since, behind or None)

    def _start_feed(
        self, topic: Topic, since: dict[str, int], behind: dict[str, int] | None = None
    ) -> None:
        if topic in self.feeding:
            return
        self._broker.feeding(topic, behind)
        try:
            # Placed here by the fleet's capacity: served even beyond the accepted
            # poll latency (counted) rather than refused and starved.
            self._feeds.on_first(topic, since, placed=self.plan is not None, behind=behind)
        except BaseException as exc:
            self._broker.not_fed(topic, note=False)
            if not isinstance(exc, ProtocolError):
                raise
            # This node's upstream budget is spent: leave the topic to others.
            log.warning("ownership: cannot feed %s here (%s)", topic.channel, exc.message)
            self._refused[topic] = self._clock() + REFUSED_PAUSE
            lease = self._leases.get(topic)
            if lease is not None:
                lease.unwant(self._clock())
            self._wake.set()
            return
        self.feeding.add(topic)
        self._broker.fed(topic)
        self.gained += 1
        log.info("ownership: node %s now feeds %s", self._broker.node, topic.channel)

    def _stop_feed(self, topic: Topic) -> None:
        if topic in self.feeding:
            self.feeding.discard(topic)
            self.lost += 1
            self._feeds.on_last(topic)
            # Where its own stream stopped, should its wallets' feeds go on for other
            # topics (here or on another node) until it is fed again.
            self._broker.not_fed(topic)

    def stats(self) -> CoordinationStats:
        now = self._clock()
        held = [lease for lease in self._leases.values() if lease.held]
        return CoordinationStats(
            "leases",
            feeding=len(self.feeding),
            held=len(held),
            unconfirmed=sum(1 for lease in held if not lease.confirmed(now)),
            demanded=len(self._demanded),
            local_demand=len(self._local),
            gained=self.gained,
            lost=self.lost,
            fleet=self.fleet(),
        )


def _slowest(nodes: Mapping[str, Mapping[str, float]]) -> float | None:
    """The longest poll interval of any node that polls (-1: a node cannot poll at all)."""
    intervals = [n["pollInterval"] for n in nodes.values() if n.get("polled")]
    if not intervals:
        return None
    return -1.0 if min(intervals) < 0 else round(max(intervals), 2)

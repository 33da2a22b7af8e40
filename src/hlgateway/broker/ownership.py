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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hlgateway.broker import scripts
from hlgateway.broker.coordination import CoordinationStats, Coordinator, FeedControl
from hlgateway.broker.leases import Command, Event, Lease, LeaseTiming
from hlgateway.broker.redis import PREFIX, WANTED_KEY, RedisBroker, position_key
from hlgateway.broker.redis_shard import UNAVAILABLE, evalsha
from hlgateway.broker.topics import decode_topic, encode_topic, topic_id
from hlgateway.protocol.channels import (
    MARKET_CHANNELS,
    USER_CHANNELS,
    USER_FILLS,
    USER_ORDERS,
    Topic,
)
from hlgateway.protocol.errors import ProtocolError

log = logging.getLogger(__name__)

DEMAND_KEY = f"{PREFIX}:demand"
DEMAND_TTL = 15.0  # seconds a node's demand outlives its last refresh
DEMAND_REFRESH = 3.0
SCAN_EVERY = 0.5  # how often the global demand is read
TICK = 0.25
REFUSED_PAUSE = 30.0  # a topic this node's upstream refused is left to others this long

FED_CHANNELS = MARKET_CHANNELS | USER_CHANNELS


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
        self.gained = 0
        self.lost = 0

    # -- local demand (the hub's first and last subscriber) ---------------------
    def want(self, topic: Topic) -> None:
        # Never refuses here: a node whose upstream cannot feed it leaves the
        # lease to others (`_start_feed`).
        if topic.channel not in FED_CHANNELS:
            return
        self._local[topic] = None
        self._fresh.add(topic)
        self._wake.set()

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
        held = [t for t, lease in self._leases.items() if lease.held]
        for topic in list(self.feeding):
            self._stop_feed(topic)
        if held:
            node = self._broker.node

            def release(pipe: Any) -> None:
                for topic in held:
                    evalsha(pipe, scripts.LEASE_RELEASE, [lease_key(topic)], [node])

            with contextlib.suppress(*UNAVAILABLE):
                await self._broker.shard.pipeline(release)

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                log.debug("ownership: Redis unavailable: %s", exc)
            except Exception:
                log.exception("ownership: unexpected error")
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
        await self._drive(self._clock())

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

        _, members = await self._broker.shard.pipeline(scan)
        demanded: set[Topic] = set()
        for raw in members:
            try:
                demanded.add(decode_topic(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("ownership: a malformed demand entry was ignored")
        self._demanded = demanded

    async def _drive(self, now: float) -> None:
        """Want the leases of demanded topics, send what the leases ask, act on outcomes."""
        timing = self.timing
        able = self._can_feed()
        for topic in self._demanded if able else ():
            if self._refused.get(topic, 0.0) > now:
                continue
            lease = self._leases.get(topic)
            if lease is None:
                lease = self._leases[topic] = Lease(lease_key(topic), timing)
            lease.want(now)
        for topic, lease in list(self._leases.items()):
            if not able or topic not in self._demanded or self._refused.get(topic, 0.0) > now:
                lease.unwant(now)
            if lease.idle:
                del self._leases[topic]
        commands = [
            (topic, lease, command)
            for topic, lease in self._leases.items()
            if (command := lease.poll(now)) is not None
        ]
        if not commands:
            return
        outcomes: list[bool | None]
        try:
            outcomes = await self._send(commands)
        except UNAVAILABLE:
            outcomes = [None] * len(commands)
        gained: list[Topic] = []
        for (topic, lease, command), ok in zip(commands, outcomes, strict=True):
            event = lease.outcome(command, ok, now)
            if event is Event.GAINED:
                gained.append(topic)
            elif event is Event.LOST:
                self._stop_feed(topic)
        if gained:
            await self._start_feeds(gained)

    async def _send(self, commands: list[tuple[Topic, Lease, Command]]) -> list[bool | None]:
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
        position, from the topic's first demand; without that, from now. The shared
        ledger drops what was published before."""
        wall_ms = time.time_ns() // 1_000_000
        keys: list[str | bytes] = [start_key(t) for t in topics]
        positioned = [t for t in topics if t.channel in (USER_FILLS, USER_ORDERS)]
        wallets = [(t.channel, w) for t in positioned for w in t.wallets]
        keys += [position_key(channel, wallet) for channel, wallet in wallets]
        stored: list[Any]
        try:
            stored = await self._broker.shard.command(lambda client: client.mget(keys))
        except UNAVAILABLE:
            stored = [None] * len(keys)
        starts, found = stored[: len(topics)], stored[len(topics) :]
        positions = {key: int(ms) for key, ms in zip(wallets, found, strict=True) if ms is not None}
        for topic, start in zip(topics, starts, strict=True):
            first = int(start) if start is not None else wall_ms
            since = {w: positions.get((topic.channel, w), first) for w in topic.wallets}
            self._start_feed(topic, since)

    def _start_feed(self, topic: Topic, since: dict[str, int]) -> None:
        if topic in self.feeding:
            return
        try:
            self._feeds.on_first(topic, since)
        except ProtocolError as exc:
            # This node's upstream budget is spent: leave the topic to others.
            log.warning("ownership: cannot feed %s here (%s)", topic.channel, exc.message)
            self._refused[topic] = self._clock() + REFUSED_PAUSE
            lease = self._leases.get(topic)
            if lease is not None:
                lease.unwant(self._clock())
            self._wake.set()
            return
        self.feeding.add(topic)
        self.gained += 1
        log.info("ownership: node %s now feeds %s", self._broker.node, topic.channel)

    def _stop_feed(self, topic: Topic) -> None:
        if topic in self.feeding:
            self.feeding.discard(topic)
            self.lost += 1
            self._feeds.on_last(topic)

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
        )

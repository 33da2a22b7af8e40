"""The Redis engine: every node sharing one Redis acts as one gateway.

The connections to Redis (a redis-py client, the two lean RESP connections,
the Lua scripts of broker/lua/) are broker/redis_shard.py's; this module is
what the engine does with them. Which node feeds each upstream stream (leases)
is broker/ownership.py's.

Per topic (id from broker/topics.py), all keys under one hash tag `{id}`:
- `hlgw:{id}:m`  a hash: the stream's epoch `e` and last offset `o`;
- `hlgw:{id}:s`  the history, a Redis Stream whose entry ids are `offset-0`;
- `hlgw:{id}:l`  the latest payload of a snapshot topic;
- `hlgw:{id}:d:<item id>`  the shared exactly-once ledger (one key per item, with a TTL);
- PUB/SUB channel `hlgw:{id}`.

A lossless publication is one run of broker/lua/publish.lua: it keeps the
items never published before (shared ledger), assigns the next offset
(creating the epoch if Redis has none: a flushed or restarted Redis gives a new
one), appends to the stream, trims it by the retention settings, and publishes
`offset:epoch:payload`. The payload is encoded once, by the publishing node;
every receiving node splices the position in (`with_position`), once per node.

Publications and PUB/SUB go over two lean connections of broker/resp.py (a
message crossing nodes pays for them twice, and redis-py's pipeline and PubSub
cost more than the hop itself); every other command goes through redis-py.

With replicas to wait for (`min_replicas`: a Sentinel group by default), a
lossless publication is delivered only once the replicas have it: stored, then
`WAIT`, then committed (broker/replicated.py), so that a failover never takes
back what a client was given. Whatever happens to Redis, a node checks after
each reconnect that the streams it published or delivered have not gone
backwards (broker/lua/verify.lua): one that did continues in a new epoch, so
that no offset a client holds is ever given to another message.

A node subscribes to a topic's channel while it has local demand or a read in
flight. Each lossless stream's delivery goes through a StreamTracker, which
keeps it contiguous (gaps are fetched from the history) and merges reads with
live data (broker/tracker.py).

While Redis is away the node keeps serving: snapshots and notices are delivered
locally, lossless publications wait in a bounded queue (their ledger ids make a
retry safe), reads answer `recovered: false`; `degraded` is True. It reconnects
with backoff, subscribes again and fetches what its streams missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import hiredis
import msgspec

from hlgateway import reconnect
from hlgateway.backoff import Backoff
from hlgateway.broker import scripts
from hlgateway.broker.base import (
    Broker,
    BrokerStats,
    Publication,
    Replay,
    Retention,
    Shared,
    with_position,
)
from hlgateway.broker.redis_shard import UNAVAILABLE, RedisShard, evalsha
from hlgateway.broker.replicated import Entry, ReplicatedLane
from hlgateway.broker.resp import RespConnection, RespError, encode, is_retryable
from hlgateway.broker.topics import decode_topic, topic_id
from hlgateway.broker.tracker import Stored, StreamTracker
from hlgateway.protocol.channels import USER_FILLS, USER_LEDGER, USER_ORDERS, Topic
from hlgateway.protocol.positions import Position

if TYPE_CHECKING:
    from hlgateway.broker.coordination import Coordinator, FeedControl

log = logging.getLogger(__name__)

PREFIX = "hlgw"
KEEP_FLOOR_MS = 60_000  # must match publish.lua's floor
READ_TIMEOUT = 5.0  # a read waiting longer answers recovered: false
AWAY_WAIT = 10.0  # a reader coming back with `since` waits this long for Redis to return
COMMIT_WAIT = 3.0  # ... for a commit lost at a failover to be made again (verify.lua)
CATCH_UP_WAIT = 1.0  # how long a read waits for live data to reach the head it read
MAX_QUEUED = 100_000  # lossless publications kept while Redis is away (per connection)
IN_FLIGHT = 1024  # publications written and not yet answered
UNIQUE_KEEP = 300.0  # seconds a plain lossless message's id guards against a retry
# A snapshot-stream message that is an update, not the whole snapshot (candles):
# its PUB/SUB payload starts with this byte (a data message starts with `{`).
UPDATE_MARK = b"~"
UNAVAILABLE_EPOCH = "unavailable"
# What the fleet wants, kept past the death of every node (a sorted set of topic
# specs scored by expiry: the linger window after the last node that wanted them):
# a node starting finds there what to feed again (`resume`).
WANTED_KEY = f"{PREFIX}:wanted"
POSITIONS_EVERY = 1.0  # seconds between writes of the delivery positions that moved
POSITION_KEEP_MS = 24 * 3600 * 1000  # as far back as a feed may start (its ledgers' memory)
# A queue entry that writes a delivery position (its key as the prefix, its ms as the
# keep): on the publishing connection, after the publications it covers. Its suffix
# says how: b"" sets a wallet's, OWN sets a topic's own (behind_key).
POSITION = Topic("position", b"{}")
OWN = b"own"
POSITIONED = (USER_FILLS, USER_ORDERS, USER_LEDGER)  # streams with a delivery position


def position_key(channel: str, wallet: str) -> bytes:
    """Where a wallet's user stream (`channel`) was delivered up to, by whichever node."""
    return f"{PREFIX}:pos:{channel}:{wallet}".encode()


def behind_key(topic: Topic, wallet: str) -> bytes:
    """How far one topic's own stream has every event of a wallet (exchange ms): kept
    up to date by its holder while it feeds it, so that it is there even when the
    holder dies (the wallet's feed may go on for another topic of the channel, on
    another node): beside the wallet's position, named by the topic (a hash, which
    no channel name is)."""
    return f"{PREFIX}:pos:{topic_id(topic)}:{wallet}".encode()


def new_epoch() -> str:
    return secrets.token_hex(6)


class _Keys:
    __slots__ = ("channel", "latest", "ledger", "meta", "stream")

    def __init__(self, tid: str, db: int) -> None:
        base = f"{PREFIX}:{{{tid}}}"
        self.meta = f"{base}:m".encode()
        self.stream = f"{base}:s".encode()
        self.latest = f"{base}:l".encode()
        self.ledger = f"{base}:d:".encode()
        # PUB/SUB channels are global to a Redis server, keys are per database:
        # the database is in the name so that two gateways on two databases of
        # one Redis never hear each other.
        self.channel = f"{PREFIX}:{db}:{tid}".encode()


# (topic, prefix or snapshot payload, items, suffix or the snapshot to retain if
# another, ledger keep ms): one publication (or a delivery position: POSITION).
_Entry = Entry


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        retention: Retention | None = None,
        *,
        node: str | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(node)
        self._clock = clock  # when positions are written and histories refreshed
        self.retention = retention if retention is not None else Retention()
        self._ttl_ms = int(self.retention.ttl * 1000)
        # A stream nobody wants is forgotten this long after its last publication
        # (the ttl, but never under a minute: a short ttl trims, it does not expire).
        self._keep_ms = max(self._ttl_ms, KEEP_FLOOR_MS)
        self.shard = RedisShard(url, self.node)
        # With Sentinel a failed connect only asks the sentinels again (cheap), and a
        # failover is over in seconds: come back within a second of it.
        longest = 1.0 if self.shard.target.sentinel is not None else 5.0
        self._reconnect = reconnect.Reconnect(
            backoff or Backoff(initial=0.1, decay=2.0, max_delay=longest)
        )
        self._db = self.shard.db
        # With replicas to wait for, lossless publications take their own lane.
        self._lane: ReplicatedLane | None = None
        if self.shard.min_replicas > 0:
            self._lane = ReplicatedLane(
                self.shard.min_replicas,
                store=self._stored_command,
                commit=self._commit_command,
                committed=self._known,
                refused=self._refused,
                ask=lambda: self._spawn(self._ask_sentinels()),
                max_queued=MAX_QUEUED,
            )
        # Where each stream this node published was last committed, to check
        # after a reconnect that Redis did not go backwards: (epoch, offset, when).
        self._seen: dict[Topic, tuple[str, int, float]] = {}
        self._writing = False  # publications may be written (after the check)
        self._own = f"{PREFIX}:{self._db}:node:{self.node}".encode()
        self.connected = False
        self._up = asyncio.Event()
        self._checked = asyncio.Event()  # connected, and the streams checked (verify)
        # Resolved at the next such check (a reader whose read a failover cut short).
        self._next_check: asyncio.Future[None] | None = None
        self._keys: dict[Topic, _Keys] = {}
        self._by_channel: dict[bytes, Topic] = {}
        self._subscribed: set[bytes] = set()
        self._acks: dict[bytes, asyncio.Future[None]] = {}
        self._wanted: set[Topic] = set()
        self._reading: collections.Counter[Topic] = collections.Counter()
        self._trackers: dict[Topic, StreamTracker] = {}
        self._latest: dict[Topic, bytes] = {}
        self._progress: dict[Topic, asyncio.Event] = {}  # reads waiting for live data
        self._snapshot_reads: dict[Topic, asyncio.Future[bytes | None]] = {}
        self._queue: collections.deque[_Entry] = collections.deque()  # not written yet
        self._in_flight: collections.deque[_Entry] = collections.deque()  # written, unanswered
        self._flush_due = False
        self._unique = itertools.count(1)
        self._unique_prefix = secrets.token_hex(4)
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_refresh = 0.0
        self._positions: dict[tuple[str, str], int] = {}  # delivered up to (this node's feeds)
        self._moved: set[tuple[str, str]] = set()  # positions not yet written
        self._last_positions = 0.0
        # The positioned topics this node feeds, per (channel, wallet): None while the
        # topic's own stream is level with the wallet's feed here, else where it
        # stopped (exchange ms) until it is caught up (Broker.behind).
        self._fed: dict[tuple[str, str], dict[Topic, int | None]] = {}
        # Where each wallet's feed here started, until it delivers anything (is_behind).
        self._restarted: dict[tuple[str, str], int] = {}
        self._counts: collections.Counter[str] = collections.Counter()

    # -- keys ---------------------------------------------------------------
    def keys(self, topic: Topic) -> _Keys:
        keys = self._keys.get(topic)
        if keys is None:
            keys = self._keys[topic] = _Keys(topic_id(topic), self._db)
        return keys

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        # Serve without Redis if it is not there yet; say degraded meanwhile.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._up.wait()

    async def stop(self) -> None:
        # The flag first: an attempt whose cancellation came out as a timeout
        # ("Redis unavailable") must end the loop, not reconnect (a stop that hung).
        self._stopping = True
        tasks = [*self._tasks, *([self._supervisor] if self._supervisor else [])]
        await reconnect.stop_tasks(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.debug("broker: a task ended with %r while stopping", task.exception())
        await self._close()

    async def _close(self) -> None:
        self.connected = False
        self._writing = False
        self._up.clear()
        self._checked.clear()
        # Not known to be done: again after reconnecting, first and in order. A
        # lossless item's ledger id keeps a retried publication from repeating.
        self._queue.extendleft(reversed(self._in_flight))
        self._in_flight.clear()
        if self._lane is not None:
            self._lane.detach()
        self._subscribed.clear()
        self._fail_acks()
        await self.shard.close()

    def _lost(self, sub: RespConnection, _: object) -> None:
        if self.shard.sub is sub:  # not an old connection's late news
            self._fail_acks()

    def _fail_acks(self) -> None:
        """Subscribes waiting for a confirmation learn that it will not come."""
        for future in self._acks.values():
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))
                future.exception()  # retrieved here: nobody may be waiting
        self._acks.clear()

    async def _supervise(self) -> None:
        await reconnect.Supervisor(self._connection, stopping=lambda: self._stopping).run()

    async def _connection(self) -> reconnect.Retry | reconnect.GiveUp:
        """One connection to Redis, from connect to its loss."""
        try:
            await self._connect()
            self._reconnect.connected()
            log.info("broker: connected to %s as node %s", self.shard.where, self.node)
            await self._serve()
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:
            log.warning("broker: Redis unavailable (%s); serving degraded", exc)
        except Exception:
            log.exception("broker: unexpected error; reconnecting")
        if self.connected:
            self._counts["disconnects"] += 1
        await self._close()
        return self._reconnect.ended()

    async def _connect(self) -> None:
        shard = self.shard
        await shard.connect(self._on_push)
        pub, sub = shard.pub, shard.sub
        assert pub is not None and sub is not None
        pub.on_writable = self._schedule_flush
        sub.closed.add_done_callback(functools.partial(self._lost, sub))
        # A first subscription enters PUB/SUB mode; the node's own channel
        # doubles as a liveness marker.
        own = self._own
        ack = self._acks[own] = asyncio.get_running_loop().create_future()
        sub.send_push(encode("SUBSCRIBE", own))
        async with asyncio.timeout(READ_TIMEOUT):
            await ack
        self.connected = True
        self._up.set()

    async def _serve(self) -> None:
        """Run until a connection fails: check, resend, resubscribe, then watch the links."""
        # Before anything is written: did the streams go backwards while away?
        await self._verify()
        self._writing = True
        self._checked.set()
        if self._next_check is not None and not self._next_check.done():
            self._next_check.set_result(None)
        self._next_check = None
        self._schedule_flush()  # what waited while Redis was away goes first
        if self._lane is not None:
            assert self.shard.lossless is not None
            self._lane.attach(self.shard.lossless)
        # Every SUBSCRIBE written at once, the confirmations awaited together.
        wanted = {*self._wanted, *self._reading}
        outcomes = await asyncio.gather(*map(self._subscribe, wanted), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        # What the streams missed while this node was away.
        for topic, tracker in list(self._trackers.items()):
            if tracker.epoch is not None and not tracker.fetching:
                tracker.fetching = True
                self._spawn(self._fetch_gap(topic, tracker.offset))
        await self.shard.watch()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def degraded(self) -> bool:
        return not self.connected

    @property
    def queued(self) -> int:
        """Publications not yet answered by Redis (waiting, or written)."""
        lane = self._lane.queued if self._lane is not None else 0
        return len(self._queue) + len(self._in_flight) + lane

    # -- failovers -------------------------------------------------------------
    async def _verify(self) -> None:
        """Give a new epoch to every stream whose history went backwards: Redis
        no longer has an offset this node published or delivered (a failover to
        a replica that lacked the last writes, a restart from an older
        snapshot). Its next offsets would name other messages than a client may
        hold; in a new epoch, such a client gets `recovered: false` instead."""
        checks = [(topic, epoch, offset) for topic, (epoch, offset, _) in self._seen.items()]
        checks += [
            (topic, tracker.epoch, tracker.offset)
            for topic, tracker in self._trackers.items()
            if tracker.epoch is not None and tracker.offset > 0
        ]
        if not checks:
            return
        keys = [_Keys(topic_id(topic), self._db) for topic, _, _ in checks]

        def build(pipe: Any) -> None:
            for k, (_, epoch, offset) in zip(keys, checks, strict=True):
                args = [epoch, offset, new_epoch(), k.channel]
                evalsha(pipe, scripts.VERIFY, [k.meta, k.stream], args)

        results = await self.shard.pipeline(build)
        for (topic, epoch, offset), outcome in zip(checks, results, strict=True):
            if outcome == 2:
                self._counts["recommitted"] += 1
            elif outcome == 1:
                self._counts["rewound"] += 1
                self._seen.pop(topic, None)
                log.warning(
                    "broker: a %s stream went backwards in Redis (it had reached offset %d "
                    "of epoch %s here; Redis lost writes): it goes on in a new epoch",
                    topic.channel,
                    offset,
                    epoch,
                )

    async def _ask_sentinels(self) -> None:
        """The replicas are late: is the server still the primary, and how many
        of its replicas are up? Another primary: every connection goes, and
        what is not committed is sent to the new one. Too few up: the lane
        commits without them for a while (ReplicaWait)."""
        lane = self._lane
        assert lane is not None
        up: int | None = None
        try:
            primary, up = await self.shard.replicas_up()
        except UNAVAILABLE as exc:
            log.warning("broker: no sentinel answered (%s)", exc)
            primary = True
        lane.policy.told(up if primary else None)
        if not primary:
            self.shard.fail("the sentinels name another primary")
        elif lane.policy.degraded:
            log.warning(
                "broker: %d of %d replica(s) of %s up: lossless publications go on "
                "without waiting for them",
                up,
                lane.min_replicas,
                self.shard.where,
            )
        else:
            log.warning(
                "broker: lossless publications wait for %d replica(s) of %s",
                lane.min_replicas,
                self.shard.where,
            )

    def _known(self, topic: Topic, epoch: str, offset: int) -> None:
        """Redis has committed `topic` up to `offset` in `epoch` (this node wrote it)."""
        self._seen[topic] = (epoch, offset, self._clock())

    # -- publishing -----------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes, retained: bytes | None = None) -> None:
        if topic.lossless:
            unique = f"u{self._unique_prefix}{next(self._unique)}"
            self._enqueue(topic, b"", [(unique, payload)], b"", int(UNIQUE_KEEP * 1000))
        elif topic.snapshot:
            if not self.connected:
                # Keep serving this node's subscribers while Redis is away.
                self._latest[topic] = payload if retained is None else retained
                self._deliver(topic, payload, 0)
                return
            self._enqueue(topic, payload, [], retained or b"", 0)
        else:
            # Notices (`system`) are about this node: they stay on it.
            self._deliver(topic, payload, 0)

    def publish_items(
        self,
        topic: Topic,
        prefix: bytes,
        items: list[tuple[str, bytes]],
        suffix: bytes,
        keep: float,
    ) -> None:
        if items:
            self._enqueue(topic, prefix, items, suffix, int(keep * 1000))

    def _enqueue(
        self,
        topic: Topic,
        prefix: bytes,
        items: list[tuple[str, bytes]],
        suffix: bytes,
        keep_ms: int,
    ) -> None:
        if self._lane is not None and (topic.lossless or topic is POSITION):
            # A delivery position goes with the publications it covers, after them.
            self._lane.enqueue((topic, prefix, items, suffix, keep_ms))
            return
        queue = self._queue
        if len(queue) >= MAX_QUEUED:
            queue.popleft()
            self._counts["droppedWhileAway"] += 1
        queue.append((topic, prefix, items, suffix, keep_ms))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Once per loop turn: what was published in this turn goes out in one write.
        if not self._flush_due and self._writing and self.shard.pub is not None:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        pub, queue, in_flight = self.shard.pub, self._queue, self._in_flight
        if pub is None or not pub.is_open or not pub.writable or not self._writing:
            return  # on reconnecting, or once the buffer drains
        count = min(len(queue), IN_FLIGHT - len(in_flight))
        if count <= 0:
            return  # the next answer flushes again
        ttl_ms = self._ttl_ms
        chunks: list[bytes] = []
        replies: list[Any] = []
        for _ in range(count):
            entry = queue.popleft()
            in_flight.append(entry)
            topic, prefix, _, suffix, _ = entry
            if topic is POSITION:
                chunks.append(self._position_command(entry))
                replies.append(self._answered)
                continue
            keys = self.keys(topic)
            if topic.lossless:
                chunks.append(self._lossless_command(entry, commit=True))
                replies.append(self._answered)
            elif suffix:  # an update, with the snapshot to retain as `suffix`
                chunks.append(encode("SET", keys.latest, suffix, "PX", ttl_ms))
                chunks.append(encode("PUBLISH", keys.channel, UPDATE_MARK + prefix))
                replies += (self._answered_part, self._answered)
            else:  # a snapshot: its payload travels as `prefix`
                chunks.append(encode("SET", keys.latest, prefix, "PX", ttl_ms))
                chunks.append(encode("PUBLISH", keys.channel, prefix))
                replies += (self._answered_part, self._answered)
        pub.send(b"".join(chunks), replies)

    def _lossless_command(self, entry: _Entry, *, commit: bool) -> bytes:
        """publish.lua for one lossless publication: stored, and with `commit`
        published at once (else commit.lua does, once the replicas have it)."""
        topic, prefix, items, suffix, keep_ms = entry
        keys, retention = self.keys(topic), self.retention
        args: list[bytes | str | int] = [
            "EVALSHA",
            scripts.PUBLISH.sha,
            2,
            keys.meta,
            keys.stream,
            keys.channel,
            new_epoch(),
            retention.size,
            self._ttl_ms,
            retention.max_size,
            keep_ms,
            keys.ledger,
            prefix,
            suffix,
            1 if commit else 0,
            len(items),
        ]
        for item_id, item in items:
            args += (item_id, item)
        return encode(*args)

    def _position_command(self, entry: _Entry) -> bytes:
        """A delivery position (POSITION): its key as the prefix, its ms as the keep.
        A topic's own (OWN) lasts as long as its stream may (the history window after
        its last write, refreshed while it is fed)."""
        if entry[3] == OWN:
            return encode("SET", entry[1], entry[4], "PX", self._keep_ms)
        return encode("SET", entry[1], entry[4], "PX", POSITION_KEEP_MS)

    def _stored_command(self, entry: _Entry) -> bytes:
        """What the replicated lane writes for an entry: a lossless publication
        stored (committed once the replicas have it), or a delivery position,
        which must follow the publications it covers."""
        if entry[0] is POSITION:
            return self._position_command(entry)
        return self._lossless_command(entry, commit=False)

    def _commit_command(self, topic: Topic, upto: int) -> bytes:
        keys = self.keys(topic)
        return encode("EVALSHA", scripts.COMMIT.sha, 2, keys.meta, keys.stream, keys.channel, upto)

    def _answered_part(self, reply: Any) -> None:
        """The first of a publication's two answers (a snapshot's SET)."""
        if isinstance(reply, hiredis.ReplyError):
            self._refused(reply, self.shard.pub)

    def _answered(self, reply: Any) -> None:
        """A publication's last answer: it is done (or refused for good)."""
        if isinstance(reply, RespError):
            return  # the connection is gone; _close() requeues what is in flight
        refused = isinstance(reply, hiredis.ReplyError)
        if refused and self._refused(reply, self.shard.pub):
            return  # retried on the next connection
        if self._in_flight:
            entry = self._in_flight.popleft()
            if not refused and entry[0] is not POSITION:
                self._counts["published"] += 1
                if isinstance(reply, list) and reply[1]:  # a lossless stream's head
                    self._known(entry[0], reply[1].decode(), int(reply[0]))
        if self._queue:
            self._schedule_flush()

    def _refused(self, error: hiredis.ReplyError, conn: RespConnection | None) -> bool:
        """Redis refused a publication (on `conn`). True: retry it on a new connection."""
        if is_retryable(error):
            if conn is not None:
                conn.fail(RespError(f"Redis refused a publication: {error}"))
            return True
        # Refused for what it is (it would be refused again): say so and go on.
        log.error("broker: Redis refused a publication for good: %s", error)
        self._counts["publishRefused"] += 1
        return False

    # -- receiving --------------------------------------------------------------
    def _on_push(self, push: list[Any]) -> None:
        kind = push[0]
        if kind == b"message":
            self._on_message(push[1], push[2])
        elif kind == b"subscribe":
            channel = push[1]
            future = self._acks.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
            if channel in self._by_channel or channel == self._own:
                self._subscribed.add(channel)
            elif self.shard.sub is not None and self.shard.sub.is_open:
                # Let go before the confirmation came: nobody wants it now.
                self.shard.sub.send_push(encode("UNSUBSCRIBE", channel))

    def _on_message(self, channel: bytes, data: bytes) -> None:
        topic = self._by_channel.get(channel)
        if topic is None:
            return
        self._counts["received"] += 1
        if not topic.lossless:
            if data.startswith(UPDATE_MARK):
                # Not a whole snapshot: what a new subscriber needs is in Redis now
                # (set just before), so the next read fetches it. A read already
                # waiting on that GET may get the snapshot before this update: the
                # next update (a candle's whole current state) makes up for it.
                data = data[len(UPDATE_MARK) :]
                self._latest.pop(topic, None)
            else:
                self._latest[topic] = data
            self._deliver(topic, data, 0)
            return
        tracker = self._trackers.get(topic)
        if tracker is None:
            return
        first = data.index(b":")
        second = data.index(b":", first + 1)
        offset = int(data[:first])
        epoch = data[first + 1 : second].decode()
        publication = Publication(offset, with_position(data[second + 1 :], offset, epoch))
        passed, gap_after = tracker.receive(epoch, publication)
        for item in passed:
            self._deliver(topic, item.payload, item.offset)
        if gap_after is not None:
            self._counts["gaps"] += 1
            self._spawn(self._fetch_gap(topic, gap_after))

    def _deliver(self, topic: Topic, payload: bytes, offset: int) -> None:
        if self._sink is not None:
            self._sink(topic, payload, offset)
        if self._progress:
            progress = self._progress.get(topic)
            if progress is not None:
                progress.set()

    async def _fetch_gap(self, topic: Topic, after: int) -> None:
        """Fetch what the tracker misses after `after` in its epoch (or, if the
        stream went on in another epoch, that epoch from its base)."""
        stored: Stored | None = None
        tracker = self._trackers.get(topic)
        following = tracker.epoch if tracker is not None and tracker.epoch is not None else ""
        try:
            stored = await self._stored(topic, after, following, rebase=True)
        except UNAVAILABLE as exc:
            log.warning("broker: fetching a gap failed: %s", exc)
        tracker = self._trackers.get(topic)
        if tracker is None:
            return
        before, epochs = tracker.gaps_lost, tracker.epochs
        for item in tracker.fetched(stored):
            self._deliver(topic, item.payload, item.offset)
        if tracker.gaps_lost > before:
            self._counts["gapsLost"] += tracker.gaps_lost - before
        if tracker.epochs > epochs:
            self._counts["newEpochs"] += tracker.epochs - epochs

    async def _stored(
        self,
        topic: Topic,
        after: int | None,
        following: str = "",
        delivered: int = 0,
        *,
        rebase: bool = False,
    ) -> Stored:
        """The stream's epoch, committed head, base, and entries after `after`
        (None: none); up to `delivered` (what this node passed on in `following`)
        when the commit of that was lost; if `following` names another epoch,
        none, or with `rebase` the current epoch's from its base (read.lua)."""
        keys = self.keys(topic)
        after_arg = -1 if after is None else after
        args = [new_epoch(), after_arg, self._keep_ms, following, delivered, int(rebase)]
        epoch_raw, head, entries, base, top = await self.shard.run(
            scripts.READ, [keys.meta, keys.stream], args
        )
        epoch = epoch_raw.decode()
        publications = []
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-", 1)[0])
            publications.append(Publication(offset, with_position(fields[1], offset, epoch)))
        return Stored(epoch, int(head), publications, int(base), max(int(top), int(head)))

    # -- demand -----------------------------------------------------------------
    def demand(self, topic: Topic) -> None:
        if topic in self._wanted or not (topic.lossless or topic.snapshot):
            return
        self._wanted.add(topic)
        if self.connected:
            self._spawn(self._subscribe(topic))

    def drop(self, topic: Topic) -> None:
        self._wanted.discard(topic)
        self._release_if_unwanted(topic)

    def _release_if_unwanted(self, topic: Topic) -> None:
        if topic in self._wanted or self._reading[topic] > 0:
            return
        self._reading.pop(topic, None)
        keys = self._keys.pop(topic, None)
        self._trackers.pop(topic, None)
        self._latest.pop(topic, None)
        if keys is None:
            return
        self._by_channel.pop(keys.channel, None)
        sub = self.shard.sub
        if keys.channel in self._subscribed and sub is not None and sub.is_open:
            self._subscribed.discard(keys.channel)
            sub.send_push(encode("UNSUBSCRIBE", keys.channel))

    async def _subscribe(self, topic: Topic) -> None:
        """Subscribe to the topic's channel; return once Redis confirmed it."""
        keys = self.keys(topic)
        self._by_channel[keys.channel] = topic
        if topic.lossless and topic not in self._trackers:
            self._trackers[topic] = StreamTracker()
        if keys.channel in self._subscribed:
            return
        future = self._acks.get(keys.channel)
        if future is None:
            sub = self.shard.sub
            if sub is None or not sub.is_open:
                raise ConnectionError("Redis is not connected")
            future = self._acks[keys.channel] = asyncio.get_running_loop().create_future()
            sub.send_push(encode("SUBSCRIBE", keys.channel))
        await asyncio.shield(future)

    # -- reading ----------------------------------------------------------------
    def read_now(self, topic: Topic, since: Position | None) -> Replay | None:
        if not (topic.lossless or topic.snapshot):
            return Replay(None)
        if not self.connected:
            if since is None or not topic.lossless:
                return self._unavailable(topic)
            tracker = self._trackers.get(topic)
            if (
                tracker is not None
                and not tracker.fetching
                and since == Position(tracker.offset, tracker.epoch or "")
            ):
                return Replay(since, True)  # nothing missed: what follows comes live
            return None  # read() waits a while for Redis (a failover takes seconds)
        if self.keys(topic).channel not in self._subscribed:
            return None
        # Subscribed already: what this node holds is as good as what Redis has.
        if topic.snapshot:
            latest = self._latest.get(topic)
            return Replay(None, False, [Publication(0, latest)]) if latest is not None else None
        tracker = self._trackers.get(topic)
        if tracker is None or tracker.epoch is None or tracker.fetching:
            return None
        position = Position(tracker.offset, tracker.epoch)
        if since is None:
            return Replay(position)
        if since == position:
            return Replay(position, True)  # nothing missed
        return None

    def _unavailable(self, topic: Topic) -> Replay:
        """What a subscriber gets while Redis is away: live data only."""
        if topic.snapshot:
            latest = self._latest.get(topic)
            return Replay(None, False, [Publication(0, latest)] if latest is not None else [])
        tracker = self._trackers.get(topic)
        if tracker is not None and tracker.epoch is not None:
            return Replay(Position(tracker.offset, tracker.epoch), False)
        return Replay(Position(0, UNAVAILABLE_EPOCH), False)

    async def read(self, topic: Topic, since: Position | None) -> Replay:
        answer = self.read_now(topic, since)
        if answer is not None:
            return answer
        self._reading[topic] += 1
        try:
            # A read that Redis's going away cut short (a failover under way) is
            # made once more, once Redis is back.
            for attempt in (1, 2):
                if not self._checked.is_set():
                    # Redis is away (or just back, its streams not checked yet), a
                    # client comes back with `since`: a failover or a restart takes
                    # seconds. Rather than telling it at once that its place is
                    # lost (`recovered: false`), wait a while for Redis.
                    try:
                        async with asyncio.timeout(AWAY_WAIT):
                            await self._checked.wait()
                    except TimeoutError:
                        return self._unavailable(topic)
                if self._next_check is None:
                    self._next_check = asyncio.get_running_loop().create_future()
                next_check = self._next_check
                try:
                    async with asyncio.timeout(READ_TIMEOUT):
                        return await self._read(topic, since)
                except UNAVAILABLE as exc:
                    failure = exc
                if attempt == 1 and since is not None:
                    # Once Redis is back (and its streams checked), read again.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(AWAY_WAIT):
                            await asyncio.shield(next_check)
                    if next_check.done():
                        continue
                log.warning("broker: a read failed (%s); live data only", failure)
                self._counts["readFailures"] += 1
                return self._unavailable(topic)
            raise AssertionError("unreachable")
        finally:
            self._reading[topic] -= 1
            # After the caller attached (it does so in this very turn): keep the
            # subscription only if the topic is now wanted.
            asyncio.get_running_loop().call_soon(self._release_if_unwanted, topic)

    async def _read(self, topic: Topic, since: Position | None) -> Replay:
        await self._subscribe(topic)
        if topic.snapshot:
            # One GET per topic however many subscribers arrive at once.
            pending = self._snapshot_reads.get(topic)
            if pending is None:
                pending = asyncio.ensure_future(self._get_latest(topic))
                self._snapshot_reads[topic] = pending
                pending.add_done_callback(lambda _: self._snapshot_reads.pop(topic, None))
            stored_latest = await asyncio.shield(pending)
            latest = self._latest.get(topic)  # live while the GET ran: newer
            if latest is None and stored_latest is not None:
                latest = stored_latest
                if topic in self._wanted or self._reading[topic] > 0:
                    self._latest[topic] = latest
            return Replay(None, False, [Publication(0, latest)] if latest is not None else [])
        tracker = self._trackers[topic]
        catch = tracker.open_catch()
        try:
            # Up to what this node passed on (the replay is cut there), even if its
            # commit was lost at a failover.
            following, delivered = tracker.epoch or "", tracker.offset
            after = None if since is None else since.offset
            stored = await self._stored(topic, after, following, delivered)
            if since is not None and await self._recommitted(topic, tracker, stored, since):
                stored = await self._stored(topic, after, tracker.epoch or "", tracker.offset)
            # What was published before the read is on its way live (or being
            # fetched): wait for it, so that the replay reaches the head it read.
            if tracker.epoch == stored.epoch and tracker.offset < stored.head:
                await self._caught_up(topic, tracker, stored)
        except BaseException:
            tracker.close_catch(catch)
            raise
        replay = tracker.resolve(catch, stored, since)
        if tracker.epoch != stored.epoch and not tracker.fetching:
            # The stream went on in a new epoch that live delivery has not shown
            # here yet: take this node's delivery there now.
            tracker.fetching = True
            self._spawn(self._fetch_gap(topic, tracker.offset))
        return replay

    async def _get_latest(self, topic: Topic) -> bytes | None:
        key = self.keys(topic).latest
        stored = await self.shard.command(lambda client: client.get(key))
        return stored if isinstance(stored, bytes) else None

    async def _recommitted(
        self, topic: Topic, tracker: StreamTracker, stored: Stored, since: Position
    ) -> bool:
        """A client comes back with an offset Redis has stored but not committed:
        it was committed before a failover, and the commit was lost, not the
        entry; the node that published or delivered it commits it again when it
        reconnects (verify.lua), which the live delivery shows here. Wait a while
        for that (True: read again) rather than answer `recovered: false`."""
        if not (since.epoch == stored.epoch and stored.head < since.offset <= stored.top):
            return False
        progress = self._progress.setdefault(topic, asyncio.Event())
        try:
            async with asyncio.timeout(COMMIT_WAIT):
                while tracker.epoch in (None, stored.epoch) and tracker.offset < since.offset:
                    progress.clear()
                    await progress.wait()
        except TimeoutError:
            pass  # read again: recovered if the commit came meanwhile, else not
        finally:
            self._progress.pop(topic, None)
        return True

    async def _caught_up(self, topic: Topic, tracker: StreamTracker, stored: Stored) -> None:
        progress = self._progress.setdefault(topic, asyncio.Event())
        try:
            async with asyncio.timeout(CATCH_UP_WAIT):
                while tracker.epoch == stored.epoch and tracker.offset < stored.head:
                    progress.clear()
                    await progress.wait()
        except TimeoutError:
            pass  # resolve() gives what there is: the rest comes live
        finally:
            self._progress.pop(topic, None)

    # -- upkeep -------------------------------------------------------------------
    def upkeep(self) -> None:
        """Keep the history of wanted streams from expiring while they are quiet; write
        the delivery positions that moved."""
        now = self._clock()
        if self._moved and now - self._last_positions >= POSITIONS_EVERY:
            self._last_positions = now
            for channel, wallet in self._moved:
                time_ms = self._positions[(channel, wallet)]
                self._enqueue(POSITION, position_key(channel, wallet), [], b"", time_ms)
                # The topics level with the wallet's feed moved with it.
                for topic, stopped in self._fed.get((channel, wallet), {}).items():
                    if stopped is None:
                        self._enqueue(POSITION, behind_key(topic, wallet), [], OWN, time_ms)
            self._moved.clear()
        every = min(30.0, self.retention.ttl / 3)
        if not self.connected or now - self._last_refresh < every:
            return
        self._last_refresh = now
        # Every fed topic's own position outlives a quiet wallet, and a death.
        for (_, wallet), topics in self._fed.items():
            for topic in topics:
                self._write_own(topic, wallet)
        # Streams this node no longer publishes to are forgotten by Redis after
        # `keep`: nothing left to check after a reconnect.
        stale = now - self._keep_ms / 1000
        for topic in [t for t, (_, _, at) in self._seen.items() if at < stale]:
            del self._seen[topic]
        lossless = [t for t in self._wanted if t.lossless]
        if lossless:
            self._spawn(self._refresh(lossless))

    async def _refresh(self, topics: list[Topic]) -> None:
        keys = [self.keys(topic) for topic in topics]
        keep_ms = self._keep_ms

        def build(pipe: Any) -> None:
            for topic_keys in keys:
                pipe.pexpire(topic_keys.meta, keep_ms)
                pipe.pexpire(topic_keys.stream, keep_ms)

        with contextlib.suppress(*UNAVAILABLE):
            await self.shard.pipeline(build)

    # -- restarts: what was wanted, where each wallet was delivered to --------------------
    def delivered(self, channel: str, wallet: str, time_ms: int) -> None:
        # Written once a second, on the publishing connection after the publications
        # it covers: a position that lags only makes a new holder read a little more
        # again (the shared ledger drops it); one ahead of them could lose events.
        key = (channel, wallet)
        self._restarted.pop(key, None)  # it delivered since it started (is_behind)
        known = self._positions.get(key)
        if known is None:
            # Where the feed started: at once (a new holder would start from the
            # topic's first demand, or from now once that is forgotten).
            self._positions[key] = time_ms
            self._enqueue(POSITION, position_key(channel, wallet), [], b"", time_ms)
        elif known < time_ms:
            self._positions[key] = time_ms
            self._moved.add(key)

    def is_behind(self, channel: str, wallet: str, own: int) -> bool:
        """Whether a topic whose own stream has every event of `wallet` up to `own`
        (its position in Redis) misses any if this node starts feeding it now. A
        wallet not fed here: its feed starts at the older of its position and the
        topic's (Feeds.on_first), so behind costs nothing. A wallet fed here: what
        its feed delivered past `own` went to other topics only (read back for this
        one). Level counts as behind (another event of that millisecond may still
        come, and the topic's old holder may not have had it), unless the feed
        here has delivered nothing since it started there: what it reads from its
        start on, that millisecond included, reaches this topic too."""
        key = (channel, wallet)
        if key not in self._fed:
            return True
        here = self._positions.get(key)
        if here is None:
            return True
        return own < here or (own == here and self._restarted.get(key) != here)

    def restarted(self, channel: str, wallet: str, time_ms: int) -> None:
        # The wallet's feed here starts (again) at `time_ms`, which may be before where
        # it had been delivered to: a position ahead of it would skip what it reads now.
        key = (channel, wallet)
        self._positions[key] = self._restarted[key] = time_ms
        self._moved.discard(key)
        self._enqueue(POSITION, position_key(channel, wallet), [], b"", time_ms)

    # -- a topic's own position (Broker.behind, across nodes) ------------------------
    # While this node feeds a positioned topic it keeps `behind_key` up to date on the
    # publishing connection, after the publications it covers: the wallet's position
    # here while the topic is level with it, or where the topic stopped while it is
    # being caught up. Whichever node feeds the topic next (after a handover, or after
    # this node died) compares it with the wallet's position (broker/ownership.py).
    def feeding(self, topic: Topic, behind: Mapping[str, int] | None) -> None:
        """This node starts feeding `topic` (before its feed starts: a wallet whose
        feed starts there is caught up at once); `behind`: where its own stream
        stopped, for the wallets it is caught up with."""
        if topic.channel not in POSITIONED:
            return
        for wallet in topic.wallets:
            stopped = behind.get(wallet) if behind is not None else None
            self._fed.setdefault((topic.channel, wallet), {})[topic] = stopped

    def fed(self, topic: Topic) -> None:
        """`topic`'s feed started here: its own positions are written now."""
        if topic.channel in POSITIONED:
            for wallet in topic.wallets:
                self._write_own(topic, wallet)

    def not_fed(self, topic: Topic, *, note: bool = True) -> None:
        """This node stops feeding `topic` (or its feed could not start: `note`
        False): where its own stream stopped is written a last time, for whichever
        node feeds it next, should its wallets' feeds go on for other topics."""
        if topic.channel not in POSITIONED:
            return
        for wallet in topic.wallets:
            if note:
                self._write_own(topic, wallet)
            topics = self._fed.get((topic.channel, wallet))
            if topics is not None:
                topics.pop(topic, None)
                if not topics:
                    del self._fed[(topic.channel, wallet)]

    def _write_own(self, topic: Topic, wallet: str) -> None:
        key = (topic.channel, wallet)
        stopped = self._fed.get(key, {}).get(topic)
        time_ms = stopped if stopped is not None else self._positions.get(key)
        if time_ms is not None:
            self._enqueue(POSITION, behind_key(topic, wallet), [], OWN, time_ms)

    def caught_up(self, topic: Topic, wallet: str) -> None:
        # After the read-back publications it covers, on the same connection.
        topics = self._fed.get((topic.channel, wallet))
        if topics is not None and topic in topics:
            topics[topic] = None
            self._write_own(topic, wallet)

    async def resume(self) -> list[Topic]:
        """What the fleet wanted lately (kept in Redis past the death of every node)."""
        if not self.connected:
            return []
        wall_ms = time.time_ns() // 1_000_000

        def read(pipe: Any) -> None:
            pipe.zremrangebyscore(WANTED_KEY, "-inf", wall_ms)
            pipe.zrangebyscore(WANTED_KEY, wall_ms, "+inf")

        try:
            _, members = await self.shard.pipeline(read)
        except UNAVAILABLE as exc:
            log.warning("broker: what the fleet wanted could not be read: %s", exc)
            return []
        topics = []
        for raw in members:
            try:
                topics.append(decode_topic(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("broker: a malformed wanted topic was ignored")
        return topics

    def shared(self, name: str, ttl: float) -> Shared:
        return RedisShared(self, name, ttl)

    # -- coordination and state -----------------------------------------------------
    def coordinator(self, feeds: FeedControl, can_feed: Callable[[], bool]) -> Coordinator:
        from hlgateway.broker.ownership import LeaseCoordinator  # it needs this module

        return LeaseCoordinator(self, feeds, can_feed=can_feed)

    def stats(self) -> BrokerStats:
        counts, lane, shard = self._counts, self._lane, self.shard
        details: dict[str, Any] = {
            "url": shard.where,
            "node": self.node,
            "connected": self.connected,
            "channels": len(self._subscribed),
            "queued": self.queued,
        }
        if shard.target.sentinel is not None:
            details["failovers"] = shard.failovers
        if lane is not None:
            policy = lane.policy
            details["minReplicas"] = lane.min_replicas
            details["waitingForReplicas"] = policy.late > 0 and not policy.degraded
            details["withoutReplicas"] = policy.degraded
            details["replicaWaits"] = policy.timeouts
            details["unreplicated"] = policy.unreplicated
        return BrokerStats(
            "redis",
            degraded=not self.connected,
            streams=len(self._trackers),
            queued=self.queued,
            published=counts["published"] + (lane.published if lane else 0),
            received=counts["received"],
            gaps=counts["gaps"],
            gaps_lost=counts["gapsLost"],
            refused=counts["publishRefused"],
            dropped_while_away=counts["droppedWhileAway"] + (lane.dropped if lane else 0),
            disconnects=counts["disconnects"],
            read_failures=counts["readFailures"],
            rewound=counts["rewound"],
            new_epochs=counts["newEpochs"],
            recommitted=counts["recommitted"],
            details=details,
        )


class RedisShared(Shared):
    """A value one node of the Redis engine reads for all (base.Shared): the reader
    holds a lease (lease_claim.lua, renewed at each `lead`), and its value is kept
    as long. While Redis is away every node reads for itself: a node never waits
    for Redis to learn what it can ask the exchange."""

    def __init__(self, broker: RedisBroker, name: str, ttl: float) -> None:
        self._broker = broker
        self._key = f"{PREFIX}:shared:{name}"
        self._lease = f"{PREFIX}:shared:{name}:reader"
        self._ttl_ms = max(1, int(ttl * 1000))

    async def lead(self) -> bool:
        broker = self._broker
        try:
            held = await broker.shard.run(
                scripts.LEASE_CLAIM, [self._lease], [broker.node, self._ttl_ms]
            )
        except UNAVAILABLE:
            return True
        return bool(held)

    async def put(self, value: bytes) -> None:
        with contextlib.suppress(*UNAVAILABLE):
            await self._broker.shard.command(
                lambda client: client.set(self._key, value, px=self._ttl_ms)
            )

    async def get(self) -> bytes | None:
        try:
            value = await self._broker.shard.command(lambda client: client.get(self._key))
        except UNAVAILABLE:
            return None
        return value if isinstance(value, bytes) else None

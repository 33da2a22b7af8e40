"""The Redis engine's connection layer: one Redis server, as centrifuge's redis_shard.go.

What the engine (broker/redis.py) and the lease coordinator (broker/ownership.py)
need of a Redis, and nothing of what they do with it:

- a redis-py client (a bounded pool that queues) for commands, reads and
  pipelines;
- two lean RESP connections of broker/resp.py for the hot paths: publications
  (`pub`) and PUB/SUB (`sub`);
- the Lua scripts of broker/lua/, loaded when it connects and run by SHA-1,
  loaded again when Redis says it lost them;
- liveness: `watch` probes both lean connections and returns (raising why)
  when one fails or stops answering.

The engine decides when to connect and what to do once connected (its
reconnect loop, resubscribing, requeueing). Finding the server is this module's
business alone: one server named by its URL, or the primary of a Redis Sentinel
group (broker/redis_url.py), asked of the sentinels at every connect, so that
the engine's reconnect after a failover finds the new primary. Every connection
of one connect goes to the same server, checked to be a primary (`ROLE`): a
command, a publication and a subscription never land on two servers, and a
demoted primary is never used. A `READONLY` answer on any of them (the server
was demoted under us) drops them all, and the engine reconnects.

With `min_replicas` (always, with Sentinel, unless set to 0), lossless
publications get a connection of their own (`lossless`): they wait there for
the replicas (`WAIT`), which must never hold up a snapshot publication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError

from hlgateway.broker import redis_url, scripts
from hlgateway.broker.resp import Push, RespConnection, RespError, open_connection
from hlgateway.broker.scripts import Script

log = logging.getLogger(__name__)

POOL_SIZE = 32  # command connections per node (publishing and PUB/SUB have one each)
COMMAND_TIMEOUT = 5.0  # waiting for a pooled connection
KEEPALIVE = 2.0  # seconds between liveness probes on the two lean connections
STALL = 10.0  # a reply awaited longer than this: the connection is dead
SENTINEL_TIMEOUT = 1.0  # per sentinel asked
FOLLOW_EVERY = 3.0  # seconds between checks that the sentinels still name the primary in use

# What a lost or unusable Redis raises, whichever connection noticed.
UNAVAILABLE = (RedisError, OSError, TimeoutError)


class RedisShard:
    def __init__(self, url: str, name: str) -> None:
        self.target = redis_url.parse(url)
        self.name = name  # the node's name: the connections are named after it
        self.db = self.target.db
        # Lossless publications wait for this many replicas before anybody sees them.
        self.min_replicas = self.target.min_replicas
        self.url = self.target.url  # the server connected to (the primary, with Sentinel)
        self.primary: tuple[str, int] | None = None  # with Sentinel: its address
        self.failovers = 0  # times the sentinels named another primary than the last one
        self.client: aioredis.Redis | None = None
        self.pub: RespConnection | None = None  # publications (all of them, without replicas)
        self.sub: RespConnection | None = None  # PUB/SUB
        self.lossless: RespConnection | None = None  # lossless publications, with replicas
        self._sentinel: Sentinel | None = None

    @property
    def where(self) -> str:
        """The server (with Sentinel: the group, and the primary in use), for logs
        and /health (no credentials)."""
        if self.primary is None:
            return self.target.redacted
        host, port = self.primary
        return f"{self.target.redacted} (primary {host}:{port})"

    @property
    def connections(self) -> tuple[RespConnection, ...]:
        return tuple(c for c in (self.pub, self.sub, self.lossless) if c is not None)

    # -- finding the server -----------------------------------------------------------
    async def _locate(self) -> str:
        """The URL of the server to use now: the URL's, or the primary the
        sentinels name (MasterNotFoundError, a RedisError, if none does)."""
        group = self.target.sentinel
        if group is None:
            return self.url
        primary = await self.ask_sentinels()
        if self.primary is not None and primary != self.primary:
            self.failovers += 1
            log.warning(
                "broker: the sentinels name a new primary, %s:%d (was %s:%d)",
                *primary,
                *self.primary,
            )
        self.primary = primary
        self.url = self.target.at(*primary)
        return self.url

    async def ask_sentinels(self) -> tuple[str, int]:
        """The primary's address, as the first sentinel that knows it says."""
        group = self.target.sentinel
        assert group is not None
        if self._sentinel is None:
            options: dict[str, Any] = {
                "socket_timeout": SENTINEL_TIMEOUT,
                "socket_connect_timeout": SENTINEL_TIMEOUT,
            }
            if group.password is not None:
                options.update(username=group.username, password=group.password)
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(group.addresses), sentinel_kwargs=options
            )
        host, port = await self._sentinel.discover_master(group.master)
        return str(host), int(port)

    async def replicas_up(self) -> tuple[bool, int | None]:
        """Whether the server in use is still the primary the sentinels name, and
        how many of its replicas could have the writes now: seen up, and in sync
        with it. None when that cannot be told: without Sentinel, no sentinel
        giving its view, or a failover of this primary in progress (the replica
        being promoted may still count as one of them)."""
        group = self.target.sentinel
        if group is None or self.primary is None:
            return True, None
        if await self.ask_sentinels() != self.primary:
            return False, None
        assert self._sentinel is not None
        host, port = self.primary
        for sentinel in self._sentinel.sentinels:
            try:
                state: Any = await sentinel.sentinel_master(group.master)
                replicas: Any = await sentinel.sentinel_slaves(group.master)
            except UNAVAILABLE:
                continue
            if "failover_in_progress" in state["flags"] or (state["ip"], state["port"]) != (
                host,
                port,
            ):
                return True, None
            for replica in replicas:
                if _moving(replica, host, port) and not await self._replaced(replica):
                    return True, None  # a replica promoted, or following another primary
            return True, sum(1 for r in replicas if _in_sync(r, host, port))
        return True, None

    async def _replaced(self, replica: dict[str, Any]) -> bool:
        """Whether a replica that reports itself a primary is the primary this one
        was promoted from, not yet turned into its replica by the sentinels (after
        a manual failover the old primary takes ~10 s to be): its replication id
        is the one this server took over (`master_replid2`). A replica promoted
        away from this server instead took over this server's id: a failover under
        way. (Asked only when the replicas are late: two INFO replication.)"""
        if replica.get("role-reported") != "master":
            return False
        client = self._client()
        other = aioredis.Redis(
            host=replica["ip"],
            port=replica["port"],
            username=self.target.username,
            password=self.target.password,
            socket_timeout=SENTINEL_TIMEOUT,
            socket_connect_timeout=SENTINEL_TIMEOUT,
        )
        try:
            mine: Any = await client.info("replication")
            theirs: Any = await other.info("replication")
        except UNAVAILABLE:
            return False
        finally:
            await other.aclose()
        took_over = mine.get("master_replid2")
        return bool(took_over) and took_over == theirs.get("master_replid")

    # -- connecting -------------------------------------------------------------
    async def connect(self, on_push: Push) -> None:
        """Open the command client and the lean connections, load the scripts.
        Raises (RedisError, OSError, TimeoutError) if Redis cannot be used."""
        url = await self._locate()
        # A bounded pool that queues: a burst of subscribes waits for a
        # connection instead of opening thousands (or failing).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=2,
            socket_timeout=10,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self.client = client
        await client.ping()
        self.pub = pub = await open_connection(url, f"hlgw-pub-{self.name}")
        # A replica would refuse every write (and a demoted primary is one): use
        # only a primary, and say so when the URL names something else.
        role = await pub.call("ROLE")
        if not (isinstance(role, list) and role and role[0] == b"master"):
            raise RespError(f"{self.where} is not a primary (ROLE {role!r:.40}); reconnecting")
        await self._load_scripts(client)
        self.sub = await open_connection(url, f"hlgw-sub-{self.name}", on_push)
        if self.min_replicas > 0:
            self.lossless = await open_connection(url, f"hlgw-lossless-{self.name}")

    async def _load_scripts(self, client: aioredis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for script in scripts.ALL:
            pipe.script_load(script.source)
        await pipe.execute()

    async def close(self) -> None:
        conns, client, sentinel = self.connections, self.client, self._sentinel
        self.pub, self.sub, self.lossless, self.client = None, None, None, None
        self._sentinel = None
        for conn in conns:
            conn.close()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()
        with contextlib.suppress(Exception):
            if sentinel is not None:
                await sentinel.aclose()

    def fail(self, reason: str) -> None:
        """Drop every lean connection (the engine's watch then reconnects)."""
        for conn in self.connections:
            conn.fail(RespError(reason))

    async def watch(self) -> None:
        """Probe the lean connections until one fails or stalls, or (with Sentinel)
        until the sentinels name another primary; raise why."""
        conns = self.connections
        assert self.pub is not None and self.sub is not None, "connect() first"
        follow = None
        if self.target.sentinel is not None:
            follow = asyncio.ensure_future(self._follow_sentinels())
        try:
            await self._watch(conns, follow)
        finally:
            if follow is not None:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await follow

    async def _watch(
        self, conns: tuple[RespConnection, ...], follow: asyncio.Future[str] | None
    ) -> None:
        waited: set[asyncio.Future[Any]] = {conn.closed for conn in conns}
        if follow is not None:
            waited.add(follow)
        while True:
            await asyncio.wait(waited, timeout=KEEPALIVE)
            if follow is not None and follow.done():
                raise RespError(follow.result())
            for conn in conns:
                if conn.closed.done():
                    conn.closed.result()  # raises why
                    raise RespError("Redis connection closed")
                if conn.stalled(STALL):
                    raise RespError(f"Redis has not answered for {STALL:.0f} s")
                conn.ping()

    async def _follow_sentinels(self) -> str:
        """Until the sentinels name another primary than the one in use; why.

        A node that does not write would not notice a failover by itself: after a
        `SENTINEL FAILOVER` the old primary goes on answering, as a primary, until
        the sentinels turn it into a replica (seconds later), and meanwhile nothing
        published through the new one reaches it. So a node listens to the
        sentinels' `+switch-master` announcement (one sentinel at a time, the next
        if it goes), and asks them every FOLLOW_EVERY seconds besides, in case an
        announcement was missed."""
        group = self.target.sentinel
        assert group is not None and self.primary is not None
        options: dict[str, Any] = {"socket_connect_timeout": SENTINEL_TIMEOUT}
        if group.password is not None:
            options.update(username=group.username, password=group.password)
        index = 0
        while True:
            host, port = group.addresses[index % len(group.addresses)]
            index += 1
            sentinel = aioredis.Redis(host=host, port=port, **options)
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe("+switch-master")
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=FOLLOW_EVERY
                    )
                    if message is not None:
                        # "<master> <old ip> <old port> <new ip> <new port>"
                        fields = str(message["data"], "utf-8", "replace").split()
                        if len(fields) == 5 and fields[0] == group.master:
                            named = (fields[3], int(fields[4]))
                            if named != self.primary:
                                return f"the sentinels switched to {named[0]}:{named[1]}"
                    elif await self.ask_sentinels() != self.primary:
                        return "the sentinels name another primary"
            except UNAVAILABLE as exc:
                log.debug("broker: sentinel %s:%d: %s", host, port, exc)
                await asyncio.sleep(SENTINEL_TIMEOUT)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await sentinel.aclose()

    # -- commands ---------------------------------------------------------------
    def _client(self) -> aioredis.Redis:
        client = self.client
        if client is None:
            raise ConnectionError("Redis is not connected")
        return client

    async def command(self, work: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        """Run `work` on the command client; raises ConnectionError while away."""
        try:
            return await work(self._client())
        except ReadOnlyError:
            self._demoted()
            raise

    async def run(self, script: Script, keys: list[bytes | str], args: list[Any]) -> Any:
        """Run a script by its SHA-1 (loaded again if Redis lost it)."""
        client = self._client()
        try:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except ReadOnlyError:
            self._demoted()
            raise

    async def pipeline(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """The commands `build` queues, in one round trip, without a transaction
        (scripts by SHA-1: `evalsha(pipe, script, ...)`); their replies."""
        client = self._client()
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            build(pipe)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                await self._load_scripts(client)
            except ReadOnlyError:
                self._demoted()
                raise
        raise AssertionError("unreachable")

    def _demoted(self) -> None:
        # The server turned into a replica under us (a failover): every
        # connection goes, and the engine finds the new primary.
        self.fail(f"{self.where} was demoted to a replica (READONLY)")


def _down(replica: dict[str, Any]) -> bool:
    return bool(replica["is_sdown"] or replica["is_odown"] or replica["is_disconnected"])


def _moving(replica: dict[str, Any], host: str, port: int) -> bool:
    """A replica of host:port, as a sentinel sees it, that is up and says it is a
    primary, or follows another one: a failover is under way, whatever the
    sentinel's flags say yet."""
    if _down(replica):
        return False
    following = (replica.get("master-host"), replica.get("master-port"))
    return replica.get("role-reported") != "slave" or following != (host, port)


def _in_sync(replica: dict[str, Any], host: str, port: int) -> bool:
    """A replica, as a sentinel sees it, that follows host:port and is in sync."""
    return (
        not _down(replica)
        and replica.get("role-reported") == "slave"
        and replica.get("master-link-status") == "ok"
        and (replica.get("master-host"), replica.get("master-port")) == (host, port)
    )


def evalsha(pipe: Pipeline, script: Script, keys: list[bytes | str], args: list[Any]) -> None:
    """Queue a script run on a pipeline of `RedisShard.pipeline`."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)

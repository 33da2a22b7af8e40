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
business alone, so that another way to find it (Redis Sentinel: ask the
sentinels for the primary's address) slots in here without the engine changing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from hlgateway.broker import scripts
from hlgateway.broker.resp import Push, RespConnection, RespError, open_connection
from hlgateway.broker.scripts import Script

POOL_SIZE = 32  # command connections per node (publishing and PUB/SUB have one each)
COMMAND_TIMEOUT = 5.0  # waiting for a pooled connection
KEEPALIVE = 2.0  # seconds between liveness probes on the two lean connections
STALL = 10.0  # a reply awaited longer than this: the connection is dead

# What a lost or unusable Redis raises, whichever connection noticed.
UNAVAILABLE = (RedisError, OSError, TimeoutError)


def redacted(url: str) -> str:
    """host:port/db of a redis:// URL, without credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


class RedisShard:
    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name  # the node's name: the connections are named after it
        self.db = int(parse_url(url).get("db") or 0)
        self.client: aioredis.Redis | None = None
        self.pub: RespConnection | None = None  # publications
        self.sub: RespConnection | None = None  # PUB/SUB

    @property
    def where(self) -> str:
        """The server, for logs and /health (no credentials)."""
        return redacted(self.url)

    # -- connecting -------------------------------------------------------------
    async def connect(self, on_push: Push) -> None:
        """Open the command client and both lean connections, load the scripts.
        Raises (RedisError, OSError, TimeoutError) if Redis cannot be used."""
        # A bounded pool that queues: a burst of subscribes waits for a
        # connection instead of opening thousands (or failing).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
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
        await self._load_scripts(client)
        self.pub = await open_connection(self.url, f"hlgw-pub-{self.name}")
        self.sub = await open_connection(self.url, f"hlgw-sub-{self.name}", on_push)

    async def _load_scripts(self, client: aioredis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for script in scripts.ALL:
            pipe.script_load(script.source)
        await pipe.execute()

    async def close(self) -> None:
        pub, sub, client = self.pub, self.sub, self.client
        self.pub, self.sub, self.client = None, None, None
        for conn in (pub, sub):
            if conn is not None:
                conn.close()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()

    async def watch(self) -> None:
        """Probe both lean connections until one fails or stalls; raise why."""
        pub, sub = self.pub, self.sub
        assert pub is not None and sub is not None, "connect() first"
        while True:
            await asyncio.wait({pub.closed, sub.closed}, timeout=KEEPALIVE)
            for conn in (pub, sub):
                if conn.closed.done():
                    conn.closed.result()  # raises why
                    raise RespError("Redis connection closed")
                if conn.stalled(STALL):
                    raise RespError(f"Redis has not answered for {STALL:.0f} s")
                conn.ping()

    # -- commands ---------------------------------------------------------------
    def _client(self) -> aioredis.Redis:
        client = self.client
        if client is None:
            raise ConnectionError("Redis is not connected")
        return client

    async def command(self, work: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        """Run `work` on the command client; raises ConnectionError while away."""
        return await work(self._client())

    async def run(self, script: Script, keys: list[bytes | str], args: list[Any]) -> Any:
        """Run a script by its SHA-1 (loaded again if Redis lost it)."""
        client = self._client()
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)

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
        raise AssertionError("unreachable")


def evalsha(pipe: Pipeline, script: Script, keys: list[bytes | str], args: list[Any]) -> None:
    """Queue a script run on a pipeline of `RedisShard.pipeline`."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)

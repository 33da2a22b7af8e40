"""A Redis Sentinel group of our own: a primary, its replicas and three sentinels.

Every server is a `redis-server` process on a free port of 127.0.0.1, without
persistence, in a temporary directory removed at `stop()`; the sentinels run
`redis-server <config> --sentinel` with short timings, so that a failover takes
a few seconds (down-after 2 s: with 1 s, on a loaded machine, the sentinels took
a just-promoted primary for down and failed over again, to the old primary that
had just come back empty, and every key was gone). Used by the socket tests
(tests/scaleout/test_sentinel.py) and by the failover run (`python -m bench.sentinel`).

Failovers, as they happen in production:
- `kill`: the primary dies (SIGKILL); the sentinels notice it down after
  `down_after_ms`, agree, and promote the replica. The killed server comes back
  as a replica of the new primary (empty: it had no persistence).
- `manual`: `SENTINEL FAILOVER`, the operator's switch: the replica is promoted
  while the old primary still runs and accepts writes until the sentinels turn
  it into a replica (and close its clients' connections).
- `lagging`: the primary dies while its replica is stopped (SIGSTOP), so the
  writes of the last moments never reached the replica: the new primary has
  lost them. The case asynchronous replication makes possible, forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.helpers import eventually, free_port

MASTER_NAME = "hlgw"
KINDS = ("kill", "manual", "lagging")


@dataclass
class Server:
    """One redis-server of the group (a data server or a sentinel)."""

    port: int
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        client = aioredis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            await _until(lambda: _answers(client), 10, f"redis-server on {self.port} did not start")
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot die
            self.proc.kill()
            await self.proc.wait()

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


async def _answers(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (aioredis.ConnectionError, OSError):
        return False


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    try:
        await eventually(check, timeout, every=0.05)
    except TimeoutError:
        raise TimeoutError(what) from None


class SentinelGroup:
    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        *,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 4000,
        password: str | None = None,
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is required (README prerequisite)")
        self.dir = Path(tempfile.mkdtemp(prefix="hlgw-sentinel-"))
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers = [self._data_server(free_port()) for _ in range(1 + replicas)]
        self.sentinels = [Server(free_port(), []) for _ in range(sentinels)]
        self.failovers = 0
        self.switched = 0.0  # the last failover: seconds until the sentinels named the new primary

    def url(self, db: int = 0, **options: str | int) -> str:
        """The `--broker` URL of this group (docs/scaling.md, "Redis Sentinel")."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(s.address for s in self.sentinels)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}/{db}" + (f"?{query}" if query else "")

    def _data_server(self, port: int, replica_of: int | None = None) -> Server:
        workdir = self.dir / f"redis-{port}"
        workdir.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            *("--logfile", str(workdir / "redis.log")),
            # A replica that (re)joins syncs at once (the default waits 5 s for others).
            *("--repl-diskless-sync-delay", "0"),
        ]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        return Server(port, argv)

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def __aenter__(self) -> SentinelGroup:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        primary, *replicas = self.servers
        await primary.start()
        for index, planned in enumerate(replicas, start=1):
            replica = self.servers[index] = self._data_server(planned.port, primary.port)
            await replica.start()
        await self._synced(primary)
        for index, sentinel in enumerate(self.sentinels):
            conf = self.dir / f"sentinel-{sentinel.port}.conf"
            lines = [
                f"port {sentinel.port}",
                "bind 127.0.0.1",
                f"dir {self.dir}",
                f"logfile {self.dir / f'sentinel-{sentinel.port}.log'}",
                "sentinel resolve-hostnames no",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
            conf.write_text("\n".join(lines) + "\n")
            self.sentinels[index] = Server(sentinel.port, ["redis-server", str(conf), "--sentinel"])
            await self.sentinels[index].start()
        await self.settled(primary)

    async def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            await server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- state ----------------------------------------------------------------------
    def _data_client(self, server: Server) -> aioredis.Redis:
        return aioredis.Redis(
            host="127.0.0.1", port=server.port, password=self.password, socket_timeout=5
        )

    async def role(self, server: Server) -> str:
        client = self._data_client(server)
        try:
            reply = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            return str(reply[0].decode() if isinstance(reply[0], bytes) else reply[0])
        except (aioredis.RedisError, OSError):
            return "down"
        finally:
            await client.aclose()

    async def primary(self, sentinel: Server | None = None) -> Server:
        """The data server a sentinel (the first, unless named) names as the primary."""
        client = (sentinel or self.sentinels[0]).client()
        try:
            address: Any = await client.sentinel_get_master_addr_by_name(MASTER_NAME)
            port = address[1]
        finally:
            await client.aclose()
        return next(s for s in self.servers if s.port == int(port))

    async def _synced(self, primary: Server) -> None:
        """Until every running replica follows `primary` with its link up."""
        replicas = [s for s in self.servers if s is not primary and s.running]

        async def linked() -> bool:
            for server in replicas:
                client = self._data_client(server)
                try:
                    info = await client.info("replication")
                except (aioredis.RedisError, OSError):
                    return False
                finally:
                    await client.aclose()
                if (
                    info.get("master_port") != primary.port
                    or info.get("master_link_status") != "up"
                ):
                    return False
            return True

        await _until(linked, 30, f"replicas did not sync with {primary.address}")

    async def settled(self, primary: Server) -> None:
        """Until every sentinel names `primary`, sees every running replica of it and
        the other sentinels, and the replicas are in sync: ready for the next failover."""
        replicas = sum(1 for s in self.servers if s is not primary and s.running)
        seen: list[str] = ["nothing yet"]

        async def agreed() -> bool:
            for sentinel in self.sentinels:
                client = sentinel.client()
                try:
                    state: Any = await client.sentinel_master(MASTER_NAME)
                    known: Any = await client.sentinel_slaves(MASTER_NAME)
                except (aioredis.RedisError, OSError) as exc:
                    seen[0] = f"sentinel {sentinel.port}: {exc!r}"
                    return False
                finally:
                    await client.aclose()
                seen[0] = (
                    f"sentinel {sentinel.port}: master {state['port']} {state['flags']}, "
                    f"{state['num-other-sentinels']} other sentinels, replicas "
                    + ", ".join(
                        f"{r['port']} {r['flags']} {r['master-link-status']}->{r['master-port']}"
                        for r in known
                    )
                )
                if int(state["port"]) != primary.port or state["flags"] != "master":
                    return False
                if int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                    return False
                healthy = [
                    r
                    for r in known
                    if r["flags"] == "slave"
                    and r["master-link-status"] == "ok"
                    and int(r["master-port"]) == primary.port
                ]
                if len(healthy) < replicas:
                    return False
            return await self.role(primary) == "master"

        try:
            await _until(agreed, 60, "")
        except TimeoutError:
            raise TimeoutError(
                f"the sentinels did not settle on {primary.address}: {seen[0]}"
            ) from None
        await self._synced(primary)

    # -- failovers ----------------------------------------------------------------------
    async def failover(self, kind: str, lag: float = 0.5) -> tuple[Server, Server]:
        """One failover of `kind` (KINDS); returns (old primary, new primary) once the
        group has settled again, with every server running."""
        old = await self.primary()
        replica = next(s for s in self.servers if s is not old and s.running)
        begin = time.monotonic()
        if kind == "manual":
            client = self.sentinels[self.failovers % len(self.sentinels)].client()
            try:
                await client.execute_command("SENTINEL FAILOVER", MASTER_NAME)  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()
        elif kind in ("kill", "lagging"):
            if kind == "lagging":
                replica.signal(signal.SIGSTOP)
                await asyncio.sleep(lag)  # writes go on, the replica gets none of them
            await old.kill()
            if kind == "lagging":
                replica.signal(signal.SIGCONT)
        else:
            raise ValueError(f"unknown failover kind {kind!r}")
        new = await self._switched(old)
        self.switched = time.monotonic() - begin
        if not old.running:
            # Back as a replica of the new primary (empty: no persistence).
            index = self.servers.index(old)
            self.servers[index] = old = self._data_server(old.port, new.port)
            await old.start()
        await self.settled(new)
        self.failovers += 1
        return old, new

    async def _switched(self, old: Server) -> Server:
        """The new primary, once every sentinel names it (a server that comes back
        before a sentinel heard of the failover would confuse it)."""
        found: list[Server] = []

        async def moved() -> bool:
            try:
                named = [await self.primary(sentinel) for sentinel in self.sentinels]
            except (aioredis.RedisError, OSError, StopIteration):
                return False
            primary = named[0]
            if any(other is not primary for other in named):
                return False
            if primary is old or await self.role(primary) != "master":
                return False
            found.append(primary)
            return True

        await _until(moved, 60, f"no failover away from {old.address}")
        return found[-1]

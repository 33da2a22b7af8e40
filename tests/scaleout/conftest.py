"""Scale-out tests run against the machine's Redis at 127.0.0.1:6379, database 11
(their own, flushed before and after each test; HLGATEWAY_TEST_REDIS_DB names
another, so that two checkouts can run them at once); the tests that stop Redis
start their own redis-server on a free port."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.helpers import free_port

REDIS_DB = os.environ.get("HLGATEWAY_TEST_REDIS_DB", "11")
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
# Which test run holds the database (this pytest's pid): two runs on one database
# flush each other's streams and leases, which looks like a flaky test; this makes
# it an error that says so.
CLAIM = "hlgw-test:run"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    client = aioredis.Redis.from_url(REDIS_URL)
    holder = await client.get(CLAIM)
    if holder is not None and int(holder) != os.getpid() and _running(int(holder)):
        await client.aclose()
        pytest.fail(
            f"Redis database {REDIS_DB} is in use by another test run (pid {int(holder)}): "
            "export HLGATEWAY_TEST_REDIS_DB=<a database of your own>"
        )
    await client.flushdb()
    await client.set(CLAIM, os.getpid(), ex=900)  # longer than any test; a killed run's expires
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


class OwnRedis:
    """A redis-server of the test's own, without persistence, that may be stopped."""

    def __init__(self, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.tls = tls  # (certificate, which is its own CA; key): TLS only
        auth = f":{password}@" if password else ""
        if tls is None:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        else:
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={tls[0]}"
        self.proc: asyncio.subprocess.Process | None = None
        self._dir = tempfile.mkdtemp(prefix="hlgw-redis-")

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            *(["--requirepass", self.password] if self.password else []),
            *self._tls_args(),
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except OSError:
                    await asyncio.sleep(0.05)
                except aioredis.ConnectionError:
                    await asyncio.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        cert, key = (str(path) for path in self.tls)
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert),
            *("--tls-auth-clients", "no"),
        ]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server required by this test (README prerequisites)")
    server = OwnRedis()
    await server.start()
    yield server
    await server.stop()
    shutil.rmtree(server._dir, ignore_errors=True)

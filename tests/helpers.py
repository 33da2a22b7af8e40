"""Test helpers: a gateway on a free port, tokens, and a small WebSocket client."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

from hlgateway.auth import issue_token
from hlgateway.broker import MemoryBroker, Retention
from hlgateway.config import AuthSettings, Settings
from hlgateway.gateway import Gateway
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Topic
from hlgateway.publisher import Publisher
from hlgateway.server.accept.defences import Edge
from hlgateway.server.app import EDGE
from hlgateway.server.runner import start_listening
from hlgateway.upstream.networks import Endpoint
from hlgateway.websocket.frames import Frame

SECRET = "test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-keys!"
ALICE_WALLET = "0x" + "a1" * 20
ALICE_WALLET_2 = "0x" + "a2" * 20
BOB_WALLET = "0x" + "b1" * 20


def token(user: str = "alice", **kw: Any) -> str:
    return issue_token(SECRET, user, **kw)


def alice_token(**kw: Any) -> str:
    return token("alice", wallets=[ALICE_WALLET, ALICE_WALLET_2], **kw)


def bob_token(**kw: Any) -> str:
    return token("bob", wallets=[BOB_WALLET], **kw)


def admin_token(**kw: Any) -> str:
    return token("root", role="admin", **kw)


def make_settings(**overrides: Any) -> Settings:
    """In-process gateways start from nothing (in memory) unless a test gives a state_dir."""
    base = Settings(auth=AuthSettings(secret=SECRET), host="127.0.0.1", port=0, state_dir="none")
    return replace(base, **overrides)


class GatewayServer:
    """A Gateway listening on 127.0.0.1 the way `hlgateway serve` does, on a free port."""

    def __init__(
        self,
        endpoint: Endpoint,
        settings: Settings,
        *,
        linger_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = Gateway(settings, endpoint, linger_clock=linger_clock)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, *, markets: bool = True) -> None:
        """Start and listen; `markets`: and wait for the upstream's market list."""
        await self.gateway.start()
        where = replace(self.gateway.settings, host="127.0.0.1", port=self.port)
        self._runner, site = await start_listening(self.gateway, where, shutdown_timeout=1)
        self.port = site.port
        if markets:
            await asyncio.wait_for(self.gateway.upstream.markets_loaded.wait(), 10)

    async def stop(self) -> None:
        await self.gateway.shutdown(drain_seconds=2)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def edge(self) -> Edge:
        assert self._runner is not None, "start() first"
        return self._runner.app[EDGE]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


class Client:
    """A raw WebSocket client that speaks JSON, for protocol tests."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        autoping: bool = True,
    ) -> Client:
        session = aiohttp.ClientSession()
        full = f"{url}?token={token}" if token is not None else url
        try:
            ws = await session.ws_connect(full, headers=headers, autoping=autoping)
        except Exception:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(obj if isinstance(obj, str) else json.dumps(obj))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected text, got {msg.type!r} {msg.data!r} {msg.extra!r}")
        obj: dict[str, Any] = json.loads(msg.data)
        self.seen.append(obj)
        return obj

    async def recv_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            msg = await self.recv(timeout=remaining)
            if predicate(msg):
                return msg

    async def recv_type(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.recv_until(lambda m: m["type"] == kind, timeout)

    async def data(self, channel: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.recv_until(
            lambda m: m["type"] == "data" and m["channel"] == channel, timeout
        )

    async def request(self, obj: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send with a fresh id; return the reply that echoes it."""
        rid = obj.setdefault("id", f"r{time.monotonic_ns()}")
        await self.send(obj)
        return await self.recv_until(lambda m: m.get("id") == rid, timeout)

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server's close; returns (code, reason). Skips pending messages."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return self.ws.close_code, msg.extra or ""
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.seen.append(json.loads(msg.data))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    *,
    every: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> None:
    """Wait for a condition that another task or process makes true.

    The one way the tests and the benchmarks wait for one: `check` (plain or async)
    is asked every `every` seconds; an exception of `ignoring` counts as "not yet"
    (a server still starting), any other ends the wait. TimeoutError once `timeout`
    seconds have passed: a bound on the wait, never a measurement.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = check()
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                return
        except ignoring:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(every)


def check_metrics(text: bytes) -> subprocess.CompletedProcess[bytes]:
    """`promtool check metrics` on an exposition: Prometheus' own lint of names, types, help.

    promtool comes from Debian's prometheus package, which `make install` installs.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make install` installs it (Debian's prometheus package)")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChildProcess:
    """A process of ours the tests start: SIGTERM or kill -9 it, and never leave it behind."""

    # Started and not yet stopped: conftest kills what a failed test left behind.
    running: ClassVar[set[ChildProcess]] = set()
    proc: asyncio.subprocess.Process | None = None

    async def terminate(self, timeout: float = 15) -> int:
        """SIGTERM; its exit code (killed, and an error, if it outlives `timeout`)."""
        assert self.proc is not None
        ChildProcess.running.discard(self)
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
                raise
        return self.proc.returncode

    async def kill(self) -> None:
        ChildProcess.running.discard(self)
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class GatewayProcess(ChildProcess):
    """`hlgateway serve` as a real process, on the embedded simulator.

    Extra `args` go to `serve`; `env` on top of JWT_SECRET (and WARNING logs, unless
    given); with `log_file` its stderr (the logs) is kept there; with `ssl_context`
    it is reached over TLS. `state_dir`: where it keeps its state; in memory
    ("none") unless a test gives a directory (or "" for the default one).
    """

    def __init__(
        self,
        port: int,
        *args: str,
        log_file: Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        state_dir: str | Path = "none",
        **env: str,
    ) -> None:
        self.port = port
        self.log_file = log_file
        self._args = args
        self._ssl = ssl_context
        self._env = env if "--broker" in args else {"HLGATEWAY_STATE_DIR": str(state_dir), **env}
        self.proc: asyncio.subprocess.Process | None = None
        self.http = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        self.ws = f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{port}/ws"

    async def start(self) -> None:
        env = {**os.environ, "JWT_SECRET": SECRET, "HLGATEWAY_LOG_LEVEL": "WARNING", **self._env}
        stderr = self.log_file.open("wb") if self.log_file is not None else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hlgateway",
                "serve",
                "--port",
                str(self.port),
                *self._args,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        finally:
            if stderr is not None:
                stderr.close()
        ChildProcess.running.add(self)
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError("gateway process exited")
                async with session.get(f"{self.http}/health", ssl=self._ssl or False) as resp:
                    return resp.status == 200 and bool(
                        (await resp.json())["upstream"]["marketsLoaded"]
                    )

            try:
                await eventually(ready, 20, every=0.1, ignoring=(aiohttp.ClientError,))
            except (TimeoutError, RuntimeError):
                raise RuntimeError(
                    "gateway process did not become ready:\n" + self.logs()
                ) from None

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file is not None else ""


class Inbox:
    """A Subscriber that keeps what it is given: the socket edge's stand-in in sans-I/O tests."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)

    def replay(self, frames: list[Frame]) -> None:
        self.frames.extend(frames)

    @property
    def payloads(self) -> list[bytes]:
        return [f.payload for f in self.frames]

    def pop(self) -> list[dict[str, Any]]:
        out = [json.loads(f.payload) for f in self.frames]
        self.frames.clear()
        return out


class NodeEvents:
    """A Node process that prints `EVENT {json}` lines: waits on them in any order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._claimed: set[int] = set()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first not yet claimed event (seen before or arriving now) that matches."""
        for index, event in enumerate(self.events):
            if index not in self._claimed and predicate(event):
                self._claimed.add(index)
                return event

        async def scan() -> dict[str, Any]:
            assert self.proc.stdout is not None
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise EOFError("node process exited")
                if not line.startswith(b"EVENT "):
                    continue
                event: dict[str, Any] = json.loads(line[len(b"EVENT ") :])
                self.events.append(event)
                if predicate(event):
                    self._claimed.add(len(self.events) - 1)
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def event(self, name: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in match.items()),
            timeout,
        )

    async def data(self, channel: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: (
                e["event"] == "data"
                and e["channel"] == channel
                and all(e["params"].get(k) == v for k, v in match.items())
            ),
            timeout,
        )

    def seen(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class LocalNode:
    """A hub and a memory broker wired as the gateway wires them, without feeds:
    sessions read replays from the broker, publications reach the hub."""

    def __init__(
        self,
        retention: Retention | None = None,
        *,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = MemoryBroker(retention, clock)
        self.hub = Hub(self, linger=linger, clock=clock)
        self.broker.bind(self._deliver)
        self.publisher = Publisher(self.broker)

    def on_first(self, topic: Topic) -> None:
        self.broker.demand(topic)

    def on_last(self, topic: Topic) -> None:
        self.broker.drop(topic)

    def _deliver(self, topic: Topic, payload: bytes, offset: int) -> None:
        self.hub.publish(topic, Frame(payload, conflate_key=topic if topic.snapshot else None))

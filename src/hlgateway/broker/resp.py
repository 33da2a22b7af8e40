"""A lean RESP2 connection for the Redis engine's two hot paths: publishing and PUB/SUB.

Every other Redis command of the engine goes through redis-py. These two do
not, because a message crossing nodes pays for them twice (node A's publish,
node B's receipt) and redis-py's pipeline and PubSub objects cost more than the
hop itself: measured on this project's 2-core VM (docs/scaling.md), a
publication reached another connection 1.05 ms (p50) / 1.7 ms (p99) after
`publish` through redis-py, and 0.5 / 0.9 ms through this module, most of the
difference being Python run per command (pipeline objects, the pool's lock,
stream readers, message dicts).

Replies are parsed by hiredis (the Redis project's C parser, which redis-py
uses too); what is written here is only the framing of commands and the
pairing of replies with them. A connection is an `asyncio.Protocol`: a command
is written at once, with no task switch, and a reply is handled in the very
callback that read it.

Two modes:
- command mode: each reply goes, in order, to the handler given with its
  command (`send`, `call`);
- push mode (after the first SUBSCRIBE): every reply is a push (`message`,
  `subscribe`, `unsubscribe`, `pong`) and goes to `on_push`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url

Reply = Any  # bytes | int | list | hiredis.ReplyError | None
Handler = Callable[[Reply], None]
Push = Callable[[list[Any]], None]

# Errors after which the same command may succeed on a new connection (a
# restarted, loading, failing-over or full Redis; scripts flushed; a primary whose
# `min-replicas-to-write` replicas are away).
RETRYABLE = (
    b"NOSCRIPT",
    b"OOM",
    b"READONLY",
    b"LOADING",
    b"BUSY",
    b"MASTERDOWN",
    b"TRYAGAIN",
    b"NOREPLICAS",
)


def encode(*args: bytes | str | int) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = b"%d" % arg
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


def is_retryable(error: hiredis.ReplyError) -> bool:
    return str(error).encode().startswith(RETRYABLE)


class RespError(ConnectionError):
    """The connection is unusable (lost, stalled, or refused a setup command)."""


class RespConnection(asyncio.Protocol):
    def __init__(
        self, on_push: Push | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self._reader = hiredis.Reader()
        self._on_push = on_push
        self._push_mode = False
        self._transport: asyncio.Transport | None = None
        # One entry per expected reply: (send time, handler or None).
        self._pending: collections.deque[tuple[float, Handler | None]] = collections.deque()
        self._pings: collections.deque[float] = collections.deque()  # push mode's PINGs
        self._loop = asyncio.get_running_loop()
        self._clock = clock or self._loop.time
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.writable = True  # False while the transport's buffer is above its high mark
        self.on_writable: Callable[[], None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            # Once failed, the rest of this read belongs to nobody.
            while not self.closed.done() and (reply := reader.gets()) is not False:
                self._reply(reply)
        except hiredis.ProtocolError as exc:
            self.fail(RespError(f"Redis sent bytes that are not RESP: {exc}"))

    def _reply(self, reply: Reply) -> None:
        if self._push_mode:
            if isinstance(reply, list) and reply and reply[0] == b"pong" and self._pings:
                self._pings.popleft()
            if self._on_push is not None and isinstance(reply, list):
                self._on_push(reply)
            return
        if not self._pending:
            self.fail(RespError("Redis sent a reply nobody asked for"))
            return
        _, handler = self._pending.popleft()
        if handler is not None:
            handler(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_exception(RespError(f"Redis connection lost: {exc or 'closed'}"))
            self.closed.exception()  # retrieved here: nobody may be waiting
        pending, self._pending = self._pending, collections.deque()
        for _, handler in pending:
            if handler is not None:
                handler(RespError("Redis connection lost"))

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()

    # -- use -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self.closed.done()

    def send(self, data: bytes, replies: list[Handler | None]) -> None:
        """Write commands now; their replies go, in order, to `replies`."""
        transport = self._transport
        if transport is None or self.closed.done():
            raise RespError("Redis connection is closed")
        now = self._clock()
        self._pending.extend((now, handler) for handler in replies)
        transport.write(data)

    def send_push(self, data: bytes) -> None:
        """Write commands whose answers are pushes (SUBSCRIBE, UNSUBSCRIBE)."""
        transport = self._transport
        if transport is None or self.closed.done():
            raise RespError("Redis connection is closed")
        if self._pending:
            # Their replies would be taken for pushes.
            raise RespError("commands still await their replies")
        self._push_mode = True
        transport.write(data)

    async def call(self, *args: bytes | str | int) -> Reply:
        """One command in command mode; its reply (an error reply raises RespError)."""
        future: asyncio.Future[Reply] = self._loop.create_future()

        def done(reply: Reply) -> None:
            if not future.done():
                future.set_result(reply)

        self.send(encode(*args), [done])
        reply = await future
        if isinstance(reply, (hiredis.ReplyError, RespError)):
            raise RespError(f"Redis refused {str(args[0])!r}: {reply}")
        return reply

    def ping(self) -> None:
        """A liveness probe; `stalled` tells when answers stop coming."""
        if self._transport is None:
            return
        if self._push_mode:
            self._pings.append(self._clock())
            self._transport.write(b"*1\r\n$4\r\nPING\r\n")
        else:
            self.send(b"*1\r\n$4\r\nPING\r\n", [None])

    def stalled(self, limit: float) -> bool:
        """Whether some reply has been awaited for more than `limit` seconds."""
        times = []
        if self._pending:
            times.append(self._pending[0][0])
        if self._pings:
            times.append(self._pings[0])
        return bool(times) and self._clock() - min(times) > limit

    def fail(self, exc: Exception) -> None:
        """Close the connection because it cannot be trusted any more."""
        if not self.closed.done():
            self.closed.set_exception(exc)
            self.closed.exception()
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS a `rediss://` URL asks of redis-py, for these connections too (its query
    options `ssl_ca_certs`, `ssl_cert_reqs`, `ssl_check_hostname`, `ssl_certfile`,
    `ssl_keyfile`), so that both kinds of connection trust the same server."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    required = str(options.get("ssl_cert_reqs", "required")).lower()
    if required == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        if required == "optional":
            context.verify_mode = ssl.CERT_OPTIONAL
        check = options.get("ssl_check_hostname")
        if check is not None:
            context.check_hostname = bool(check)
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


async def open_connection(
    url: str, name: str, on_push: Push | None = None, timeout: float = 2.0
) -> RespConnection:
    """Connect, authenticate, select the URL's database and name the connection."""
    kwargs: dict[str, Any] = dict(parse_url(url))
    loop = asyncio.get_running_loop()

    def factory() -> RespConnection:
        return RespConnection(on_push)

    async with asyncio.timeout(timeout):
        if "path" in kwargs:
            _, conn = await loop.create_unix_connection(factory, kwargs["path"])
        else:
            context = tls_context(kwargs) if url.startswith("rediss://") else None
            host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
            _, conn = await loop.create_connection(factory, host, port, ssl=context)
        try:
            if kwargs.get("password"):
                if kwargs.get("username"):
                    await conn.call("AUTH", kwargs["username"], kwargs["password"])
                else:
                    await conn.call("AUTH", kwargs["password"])
            if kwargs.get("db"):
                await conn.call("SELECT", int(kwargs["db"]))
            # A name may not hold spaces or newlines (a node name may).
            await conn.call("CLIENT", "SETNAME", re.sub(r"[^!-~]", "_", name))
        except BaseException:
            with contextlib.suppress(Exception):
                conn.fail(RespError("setup failed"))
            raise
    return conn

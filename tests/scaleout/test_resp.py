"""The lean RESP connection (broker/resp.py): replies paired with their commands,
pushes, liveness and failure, driven through a fake transport and an injected
clock; then the same connection on real sockets (Redis db 11, and a password
protected redis-server of the test's own)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import hiredis
import pytest

from hlgateway.broker.resp import (
    RespConnection,
    RespError,
    encode,
    is_retryable,
    open_connection,
)
from tests.scaleout.conftest import OwnRedis
from tests.tls import self_signed


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def connected(pushes: list[list[Any]] | None = None) -> tuple[RespConnection, FakeTransport, Clock]:
    clock = Clock()
    on_push = pushes.append if pushes is not None else None
    conn = RespConnection(on_push, clock=clock)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, clock


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode("SET", b"k\r\n", 42) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n"
    assert hiredis.Reader().gets() is False  # nothing fed: nothing parsed


async def test_replies_go_to_their_commands_in_order_even_split_across_reads() -> None:
    conn, transport, _ = connected()
    got: list[Any] = []
    conn.send(encode("SET", "a", 1) + encode("GET", "a"), [got.append, got.append])
    conn.send(encode("EVALSHA", "x", 0), [got.append])
    first = encode("SET", "a", 1) + encode("GET", "a")
    assert transport.written == [first, encode("EVALSHA", "x", 0)]
    stream = b"+OK\r\n$1\r\n1\r\n-NOSCRIPT No matching script\r\n"
    for i in range(len(stream)):  # one byte at a time
        conn.data_received(stream[i : i + 1])
    assert got[:2] == [b"OK", b"1"]
    assert isinstance(got[2], hiredis.ReplyError) and is_retryable(got[2])
    assert not is_retryable(hiredis.ReplyError("WRONGTYPE Operation against a key"))


async def test_after_the_first_subscribe_every_reply_is_a_push() -> None:
    pushes: list[list[Any]] = []
    conn, transport, clock = connected(pushes)
    conn.send_push(encode("SUBSCRIBE", "c"))
    conn.data_received(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")
    conn.data_received(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n")
    assert pushes == [[b"subscribe", b"c", 1], [b"message", b"c", b"hi"]]
    conn.ping()
    assert transport.written[-1] == encode("PING")
    clock.now = 11.0
    assert conn.stalled(10.0)  # the pong is late
    conn.data_received(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    assert not conn.stalled(10.0)


async def test_pushes_cannot_start_while_commands_await_replies() -> None:
    conn, _, _ = connected()
    conn.send(encode("PING"), [None])
    with pytest.raises(RespError, match="await"):
        conn.send_push(encode("SUBSCRIBE", "c"))  # the PONG would be taken for a push


async def test_a_reply_awaited_too_long_says_the_connection_stalled() -> None:
    conn, _, clock = connected()
    assert not conn.stalled(10.0)  # nothing awaited
    conn.ping()
    clock.now = 9.0
    assert not conn.stalled(10.0)
    clock.now = 10.5
    assert conn.stalled(10.0)
    conn.data_received(b"+PONG\r\n")
    assert not conn.stalled(10.0)


async def test_once_failed_the_rest_of_a_read_is_nobodys() -> None:
    """A handler that fails the connection (a publication Redis refused) must not
    let the next reply be taken for its own: that would pair replies wrongly."""
    conn, transport, _ = connected()
    got: list[Any] = []

    def refuse(reply: Any) -> None:
        got.append(reply)
        conn.fail(RespError("refused"))

    conn.send(encode("EVALSHA", "x", 0) + encode("EVALSHA", "y", 0), [refuse, got.append])
    conn.data_received(b"-NOSCRIPT gone\r\n:7\r\n")
    assert len(got) == 1 and transport.aborted and not conn.is_open
    with pytest.raises(RespError):
        conn.send(encode("PING"), [None])
    conn.connection_lost(None)
    assert isinstance(got[-1], RespError)  # the unanswered one hears the connection went


async def test_a_lost_connection_answers_every_pending_command() -> None:
    conn, _, _ = connected()
    got: list[Any] = []
    conn.send(encode("PING") + encode("PING"), [got.append, got.append])
    conn.connection_lost(ConnectionResetError("reset"))
    assert [type(g) for g in got] == [RespError, RespError]
    with pytest.raises(RespError, match="reset"):
        conn.closed.result()


async def test_a_reply_nobody_asked_for_or_garbage_fails_the_connection() -> None:
    conn, transport, _ = connected()
    conn.data_received(b"+OK\r\n")
    assert transport.aborted and conn.closed.done()
    conn, transport, _ = connected()
    conn.send(encode("PING"), [None])
    conn.data_received(b"?what\r\n")
    assert transport.aborted
    with pytest.raises(RespError, match="not RESP"):
        conn.closed.result()


async def test_on_a_real_redis_the_database_of_the_url_is_selected(redis_url: str) -> None:
    conn = await open_connection(redis_url, "hlgw-test")
    try:
        assert await conn.call("CLIENT", "GETNAME") == b"hlgw-test"
        assert await conn.call("SET", "hlgw-test:k", "v") == b"OK"
        assert await conn.call("GET", "hlgw-test:k") == b"v"
        # The key is in the URL's database (the tests' own), not 0.
        db = redis_url.rsplit("/", 1)[1].encode()
        assert (await conn.call("CLIENT", "INFO")).split(b" db=")[1].startswith(db + b" ")
        with pytest.raises(RespError, match="WRONGTYPE"):
            await conn.call("HGET", "hlgw-test:k", "f")
        assert await conn.call("DEL", "hlgw-test:k") == 1
    finally:
        conn.close()


async def test_a_password_in_the_url_authenticates() -> None:
    server = OwnRedis(password="s3cret")
    await server.start()
    try:
        conn = await open_connection(server.url, "hlgw-test")
        assert await conn.call("PING") == b"PONG"
        conn.close()
        wrong = server.url.replace("s3cret", "wrong")
        with pytest.raises(RespError, match="AUTH"):
            await open_connection(wrong, "hlgw-test")
    finally:
        await server.stop()


async def test_tls_trusts_the_urls_ca_and_not_an_unknown_one(tmp_path: Path) -> None:
    server = OwnRedis(tls=self_signed(tmp_path))
    await server.start()
    try:
        conn = await open_connection(server.url, "hlgw-test")
        assert await conn.call("PING") == b"PONG"
        conn.close()
        untrusted = server.url.split("?")[0]  # the system's CAs do not know ours
        with pytest.raises(ssl.SSLCertVerificationError):
            await open_connection(untrusted, "hlgw-test")
        conn = await open_connection(f"{untrusted}?ssl_cert_reqs=none", "hlgw-test")
        assert await conn.call("PING") == b"PONG"
        conn.close()
    finally:
        await server.stop()


async def test_a_unix_socket_url_with_a_database(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    proc = await asyncio.create_subprocess_exec(
        *("redis-server", "--port", "0", "--unixsocket", str(path), "--save", ""),
        *("--appendonly", "no", "--dir", str(tmp_path)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        conn: RespConnection | None = None
        for _ in range(250):  # until it listens
            try:
                conn = await open_connection(f"unix://{path}?db=3", "hlgw-test")
                break
            except OSError:
                await asyncio.sleep(0.02)
        assert conn is not None
        assert (await conn.call("CLIENT", "INFO")).split(b" db=")[1].startswith(b"3 ")
        conn.close()
    finally:
        proc.kill()
        await proc.wait()

"""The conformance harness: its echo server (our sans-I/O layer) answers a real client, and
the suite's verdicts are summed and written as docs/conformance.md shows them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from bench.conformance.echo import Echo
from bench.conformance.run import BEGIN, END, Case, exceptions, table, write_doc


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(1024 * 1024), "127.0.0.1", 0)
    sock: socket.socket = server.sockets[0]
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_the_echo_server_echoes_and_closes_cleanly(
    echo_url: str, compression: str | None
) -> None:
    async with connect(echo_url, compression=compression, max_size=None) as ws:
        messages: list[str | bytes] = ["hello", "κόσμε " * 1000, b"\x00\xff" * 3000]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.ping(b"p")
    assert ws.close_code == 1000


async def test_the_echo_server_refuses_an_oversized_message_readably(echo_url: str) -> None:
    ws = await connect(echo_url, compression=None, max_size=None)
    with pytest.raises(ConnectionClosedError) as closed:
        await ws.send("x" * (2 * 1024 * 1024))
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_verdicts_are_summed_per_group_and_server() -> None:
    results = {
        "hlgateway": [Case("1.1.1", "OK", "OK"), Case("6.4.1", "OK", "OK")],
        "websockets": [
            Case("1.1.1", "OK", "OK"),
            Case("6.4.1", "NON-STRICT", "OK"),
            Case("7.1.5", "OK", "FAILED"),  # a failed close fails the case
        ],
    }
    summary = table(results)
    assert "| 6 | websockets | 1 |  | 1 |  |  |  |" in summary
    assert "| 7 | websockets | 1 |  |  |  |  | 1 |" in summary
    assert "| **all** | hlgateway | 2 | 2 |  |  |  |  |" in summary
    assert exceptions(results).splitlines() == [
        "- hlgateway: every case OK",
        "- websockets: 6.4.1 NON-STRICT, 7.1.5 FAILED",
    ]


def test_the_table_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "conformance.md"
    doc.write_text(f"# Title\n\n{BEGIN}\nold\n{END}\n\nAfter.\n")
    write_doc(doc, "new table")
    assert doc.read_text() == f"# Title\n\n{BEGIN}\nnew table\n{END}\n\nAfter.\n"
    (tmp_path / "none.md").write_text("no block")
    with pytest.raises(SystemExit):
        write_doc(tmp_path / "none.md", "x")

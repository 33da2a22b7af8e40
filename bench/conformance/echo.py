"""An echo server on the gateway's own sans-I/O WebSocket layer, for the Autobahn TestSuite.

Thin on purpose: our handshake (websocket/handshake.py), our frame reader
(websocket/reader.py), our closing state (websocket/closing.py), our control
and data frames, and an asyncio protocol that only moves bytes. What the
fuzzing client finds here, it finds in the gateway's `/ws`.

    python -m bench.conformance.echo --port 9001 [--max-message-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

from hlgateway.websocket.closing import Closing, Step
from hlgateway.websocket.control import close_frame, pong_frame
from hlgateway.websocket.frames import OPCODE_BINARY, OPCODE_TEXT, data_frame
from hlgateway.websocket.handshake import (
    HEAD_LIMIT,
    HandshakeError,
    check_upgrade,
    http_response,
    negotiate_deflate,
    parse_head,
    switching_protocols,
)
from hlgateway.websocket.reader import (
    Binary,
    CloseReceived,
    FrameReader,
    Ping,
    Text,
    Violation,
)

DEFAULT_MAX_MESSAGE = 32 * 1024 * 1024  # group 9 sends messages of up to 16 MiB


class Echo(asyncio.Protocol):
    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._reader: FrameReader | None = None
        self._wbits = 0
        self._closing = Closing()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._reader is None:
            self._handshake(data)
            return
        if self._closing.hanging_up:
            self._perform(self._closing.discard(len(data)))
            return
        transport = self._transport
        assert transport is not None
        for event in self._reader.feed(data):
            if isinstance(event, Text):
                if self._closing.open:
                    transport.write(data_frame(event.data.encode(), OPCODE_TEXT, self._wbits))
            elif isinstance(event, Binary):
                if self._closing.open:
                    transport.write(data_frame(event.data, OPCODE_BINARY, self._wbits))
            elif isinstance(event, Ping):
                if self._closing.open:
                    transport.write(pong_frame(event.payload))
            elif isinstance(event, CloseReceived):
                self._perform(self._closing.receive_close(event.code, event.reason, _now()))
            elif isinstance(event, Violation):
                self._perform(self._closing.fail(event.code, event.reason, _now()))

    def _handshake(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > HEAD_LIMIT:
                transport.write(http_response(431, "Request head too large"))
                transport.close()
            return
        pending = bytes(self._head[end + 4 :])
        try:
            head = parse_head(bytes(self._head[:end]))
            key = check_upgrade(head)
        except HandshakeError as exc:
            transport.write(http_response(exc.status, exc.text, exc.headers))
            transport.close()
            return
        deflate = negotiate_deflate(head.getall("sec-websocket-extensions"))
        transport.write(switching_protocols(key, deflate))
        self._head = bytearray()
        self._wbits = deflate.wbits if deflate is not None else 0
        self._reader = FrameReader(
            self._max,
            deflate=deflate is not None,
            no_context_takeover=deflate is not None and deflate.client_no_context_takeover,
        )
        if pending:
            self.data_received(pending)

    def _perform(self, step: Step) -> None:
        transport = self._transport
        closing = self._closing
        if transport is None or step is Step.NOTHING:
            return
        if step is Step.SEND_CLOSE:  # nothing is queued here: it goes out at once
            transport.write(close_frame(closing.frame_code, closing.frame_reason))
            step = closing.close_written(_now())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if step is Step.HANG_UP and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        if step is Step.CLOSE_NOW:
            transport.close()
        elif step is Step.ABORT:
            transport.abort()
        elif closing.deadline is not None:
            delay = max(0.0, closing.deadline - _now())
            self._timer = asyncio.get_running_loop().call_later(delay, self._deadline)

    def _deadline(self) -> None:
        self._timer = None
        self._perform(self._closing.timed_out(_now()))

    def eof_received(self) -> bool:
        self._perform(self._closing.client_eof())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing.lost()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _now() -> float:
    return asyncio.get_running_loop().time()


async def serve(host: str, port: int, max_message_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(max_message_bytes), host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE)
    args = parser.parse_args()
    import uvloop  # as the gateway runs

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.max_message_bytes))


if __name__ == "__main__":
    main()

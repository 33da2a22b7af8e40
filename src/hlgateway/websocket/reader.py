"""What a client sends, parsed: RFC 6455 frames and RFC 7692 permessage-deflate. Sans I/O.

The connection hands `FrameReader.feed` whatever bytes the socket produced and
gets back complete events: messages reassembled, decompressed and checked, and
control frames as they come. Anything the protocol forbids becomes a single
`Violation` carrying the close code to answer with; the reader then ignores the
rest of the stream, as it does after the client's close frame.

The gateway holds tens of thousands of mostly idle connections, so a reader is
small: a few slots, and buffers that exist only while a frame or a fragmented
message is incomplete. Limits are enforced from the frame header, before the
payload is buffered, and decompression is bounded, so neither a declared
length nor a deflate bomb makes the gateway allocate more than the message
limit.
"""

from __future__ import annotations

import codecs
import sys
import zlib
from dataclasses import dataclass

from hlgateway.websocket.control import valid_close_code

_TAIL = b"\x00\x00\xff\xff"  # stripped by the sender, put back before inflating (RFC 7692 7.2.2)

# Below this size one big-integer XOR is the fastest pure-Python unmasking;
# above it, four strided bytes.translate passes win (about 3x at 64 KiB).
_TRANSLATE_FROM = 512

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True, slots=True)
class Text:
    """A complete text message: reassembled, decompressed, valid UTF-8."""

    data: str


@dataclass(frozen=True, slots=True)
class Binary:
    """A complete binary message: reassembled and decompressed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The client's close frame. `code` None: the frame had no payload (no code, no reason)."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Violation:
    """The client broke the protocol: close with `code` (1002, 1007 or 1009).

    The reader is dead afterwards.
    """

    code: int
    reason: str


Event = Text | Binary | Ping | Pong | CloseReceived | Violation

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009


def _xor_tables() -> tuple[bytes, ...]:
    """For each key byte k, the 256-byte table mapping b to b ^ k (64 KiB, shared)."""
    identity = int.from_bytes(bytes(range(256)), "little")
    return tuple(
        (identity ^ int.from_bytes(bytes((key,)) * 256, "little")).to_bytes(256, "little")
        for key in range(256)
    )


_XOR = _xor_tables()


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """The payload XORed with the 4-byte masking key repeated (RFC 6455 5.3)."""
    size = len(payload)
    if size < _TRANSLATE_FROM:
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
        return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")
    out = bytearray(payload)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR[mask[i]])
    return bytes(out)


class FrameReader:
    """Parses one connection's client-to-server byte stream into events.

    `max_message_bytes` bounds a message's payload, both as received (all its
    fragments) and, when compressed, once inflated. `deflate`: permessage-deflate
    was negotiated; `no_context_takeover`: the client agreed to compress each
    message on its own (client_no_context_takeover), so no inflater is kept
    between messages.
    """

    __slots__ = (
        "_buf",
        "_checked",
        "_compressed",
        "_deflate",
        "_done",
        "_fragments",
        "_inflater",
        "_max",
        "_opcode",
        "_takeover",
        "_utf8",
    )

    def __init__(
        self, max_message_bytes: int, *, deflate: bool = False, no_context_takeover: bool = False
    ) -> None:
        if max_message_bytes < 0:
            raise ValueError("max_message_bytes must not be negative")
        # zlib's max_length (this + 1) must fit in a C ssize_t.
        self._max = min(max_message_bytes, sys.maxsize - 1)
        self._deflate = deflate
        self._takeover = not no_context_takeover
        self._done = False
        # Bytes of an incomplete frame; None when there are none.
        self._buf: bytearray | None = None
        # The fragmented message in progress: its opcode (0: none), whether it is
        # compressed, and its payload so far. A bytearray rather than a list of
        # fragments: a client sending 1-byte fragments costs one byte each, not ~40.
        self._opcode = 0
        self._compressed = False
        self._fragments: bytearray | None = None
        # Created on the first compressed message; kept only with context takeover.
        self._inflater: zlib._Decompress | None = None
        # An uncompressed text message seen before its end (fragmented, or a frame
        # still arriving) is checked as it comes, so invalid UTF-8 fails the
        # connection at the bad byte, not at the message's end: the incremental
        # decoder, and how many payload bytes of the incomplete frame it has read.
        self._utf8: codecs.IncrementalDecoder | None = None
        self._checked = 0

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by `data`, in order; nothing once the stream has ended."""
        if self._done or not data:
            return []
        buf = self._buf
        view: bytes | bytearray
        if buf is None:
            view = data  # the common case: parse the chunk in place, no copy
        else:
            buf += data
            view = buf
        events: list[Event] = []
        end = len(view)
        pos = 0
        while end - pos >= 2:
            first = view[pos]
            second = view[pos + 1]
            opcode = first & 0x0F
            # Everything the first two bytes can tell is checked at once, before
            # waiting for the rest of the header or the payload.
            if not second & 0x80:
                return self._fail(events, PROTOCOL_ERROR, "client frame not masked")
            if first & 0x30:
                return self._fail(events, PROTOCOL_ERROR, "reserved bit set")
            if opcode >= 0x8:
                if opcode > 0xA:
                    return self._fail(events, PROTOCOL_ERROR, "reserved opcode")
                if not first & 0x80:
                    return self._fail(events, PROTOCOL_ERROR, "fragmented control frame")
                if first & 0x40:
                    return self._fail(events, PROTOCOL_ERROR, "RSV1 set on a control frame")
                if second & 0x7F > 125:
                    return self._fail(events, PROTOCOL_ERROR, "control frame too long")
            elif opcode == 0:
                if not self._opcode:
                    return self._fail(events, PROTOCOL_ERROR, "continuation outside a message")
                if first & 0x40:
                    return self._fail(events, PROTOCOL_ERROR, "RSV1 set on a continuation")
            elif opcode <= 0x2:
                if self._opcode:
                    return self._fail(events, PROTOCOL_ERROR, "new message inside a fragmented one")
                if first & 0x40 and not self._deflate:
                    return self._fail(events, PROTOCOL_ERROR, "RSV1 set without compression")
            else:
                return self._fail(events, PROTOCOL_ERROR, "reserved opcode")

            length = second & 0x7F
            if length < 126:
                start = pos + 6
            elif length == 126:
                if end - pos < 4:
                    break
                length = view[pos + 2] << 8 | view[pos + 3]
                start = pos + 8
            else:
                if end - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                if length >> 63:
                    return self._fail(events, PROTOCOL_ERROR, "frame length over 63 bits")
                start = pos + 14
            if opcode < 0x8:
                so_far = len(self._fragments) if self._fragments is not None else 0
                if so_far + length > self._max:
                    return self._fail(events, TOO_BIG, "message too big")

            stop = start + length
            if stop > end:
                if (
                    end > start + self._checked
                    and self._text_frame(opcode, first)
                    and not self._check_partial(view, start, end)
                ):
                    return self._fail(events, INVALID_DATA, "text message is not valid UTF-8")
                break
            payload = unmask(view[start:stop], view[start - 4 : start])
            pos = stop
            event: Event | None
            if opcode >= 0x8:
                event = self._control(opcode, payload)
            else:
                event = self._data(opcode, first & 0x80, first & 0x40, payload)
            if event is not None:
                events.append(event)
                if self._done:  # close or violation: the rest of the stream is ignored
                    return events

        # Keep what is left (an incomplete frame) in a buffer of its own size, so
        # a big chunk's buffer does not linger on an idle connection.
        if pos >= end:
            self._buf = None
        elif buf is None:
            self._buf = bytearray(data[pos:] if pos else data)
        elif pos:
            self._buf = buf[pos:]
        return events

    def _text_frame(self, opcode: int, first: int) -> bool:
        """An uncompressed text frame, or a continuation of an uncompressed text message."""
        if opcode == 0x1:
            return not first & 0x40
        return opcode == 0 and self._opcode == 0x1 and not self._compressed

    def _check_partial(self, view: bytes | bytearray, start: int, end: int) -> bool:
        """Check the newly arrived part of an incomplete text frame; False: invalid UTF-8."""
        checked = self._checked
        mask = view[start - 4 : start]
        if checked & 3:  # the key continues where the checked part ended
            mask = mask[checked & 3 :] + mask[: checked & 3]
        self._checked = end - start
        return self._check(unmask(view[start + checked : end], mask))

    def _check(self, data: bytes) -> bool:
        decoder = self._utf8
        if decoder is None:
            decoder = self._utf8 = _Utf8Decoder()
        try:
            decoder.decode(data)
        except UnicodeDecodeError:
            return False
        # The decoder waits for the rest of a surrogate's encoding (ED A0..BF)
        # before refusing it; its second byte already tells.
        pending = decoder.getstate()[0]
        return not (len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0)

    def _data(self, opcode: int, fin: int, rsv1: int, payload: bytes) -> Event | None:
        if opcode:  # the first frame of a message
            if fin:
                if self._utf8 is not None:  # it arrived in parts: checked so far
                    self._utf8, self._checked = None, 0
                return self._message(opcode, payload, rsv1)
            self._opcode = opcode
            self._compressed = bool(rsv1)
            self._fragments = bytearray(payload)
            if opcode == 0x1 and not rsv1 and not self._check_fragment(payload):
                return self._violation(INVALID_DATA, "text message is not valid UTF-8")
            return None
        fragments = self._fragments
        assert fragments is not None  # a continuation is refused unless a message is open
        fragments += payload
        if not fin:
            if self._opcode == 0x1 and not self._compressed and not self._check_fragment(payload):
                return self._violation(INVALID_DATA, "text message is not valid UTF-8")
            return None
        opcode, compressed = self._opcode, self._compressed
        self._opcode, self._compressed, self._fragments = 0, False, None
        # The whole message is decoded below; that checks its last fragment.
        self._utf8, self._checked = None, 0
        return self._message(opcode, fragments, compressed)

    def _check_fragment(self, payload: bytes) -> bool:
        """A complete, non-final fragment of a text message: check what was not checked yet."""
        checked, self._checked = self._checked, 0
        return self._check(payload[checked:] if checked else payload)

    def _message(self, opcode: int, payload: bytes | bytearray, compressed: int) -> Event:
        if compressed:
            inflater = self._inflater
            if inflater is None:
                inflater = zlib.decompressobj(-15)
                if self._takeover:
                    self._inflater = inflater
            try:
                # max_length bounds the allocation: a deflate bomb stops one byte
                # past the limit.
                payload = inflater.decompress(payload + _TAIL, self._max + 1)
            except zlib.error:
                return self._violation(INVALID_DATA, "invalid compressed data")
            if len(payload) > self._max:
                return self._violation(TOO_BIG, "message too big once decompressed")
            if inflater.eof:
                # The client ended its deflate stream (a final block, RFC 7692
                # 7.2.3.4): its next message starts a new one.
                self._inflater = None
        if opcode == 0x1:
            try:
                return Text(payload.decode())
            except UnicodeDecodeError:
                return self._violation(INVALID_DATA, "text message is not valid UTF-8")
        return Binary(bytes(payload))

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == 0x9:
            return Ping(payload)
        if opcode == 0xA:
            return Pong(payload)
        self._end()
        if not payload:
            return CloseReceived(None, "")
        if len(payload) == 1:
            return self._violation(PROTOCOL_ERROR, "close payload of one byte")
        code = payload[0] << 8 | payload[1]
        if not valid_close_code(code):
            return self._violation(PROTOCOL_ERROR, "invalid close code")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            return self._violation(INVALID_DATA, "close reason is not valid UTF-8")
        return CloseReceived(code, reason)

    def _end(self) -> None:
        """The stream is over: drop every buffer, ignore whatever follows."""
        self._done = True
        self._buf = None
        self._fragments = None
        self._inflater = None
        self._opcode = 0
        self._utf8 = None
        self._checked = 0

    def _violation(self, code: int, reason: str) -> Violation:
        self._end()
        return Violation(code, reason)

    def _fail(self, events: list[Event], code: int, reason: str) -> list[Event]:
        events.append(self._violation(code, reason))
        return events

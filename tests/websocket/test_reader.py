"""The frame reader: every rule of RFC 6455 / 7692 a client can break, and any chunking.

Client frames are built here by hand (masked, any header bits, any declared
length) so that each test states exactly the bytes on the wire and the exact
events expected back.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlgateway.websocket.reader import (
    Binary,
    CloseReceived,
    Event,
    FrameReader,
    Ping,
    Pong,
    Text,
    Violation,
    unmask,
)

MASK = b"\x37\xfa\x21\x3d"
LIMIT = 64 * 1024
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length: int | None = None,
    form: int | None = None,
) -> bytes:
    """One client frame. `mask` None: unmasked. `length` overrides the declared length;
    `form` forces the length encoding (125: 7 bits, 126: 16 bits, 127: 64 bits)."""
    declared = len(payload) if length is None else length
    if form is None:
        form = 125 if declared < 126 else 126 if declared < 1 << 16 else 127
    first = (0x80 if fin else 0) | rsv | opcode
    masked = 0x80 if mask is not None else 0
    if form == 125:
        header = bytes((first, masked | declared))
    elif form == 126:
        header = struct.pack("!BBH", first, masked | 126, declared)
    else:
        header = struct.pack("!BBQ", first, masked | 127, declared)
    if mask is None:
        return header + payload
    return header + mask + xor(payload, mask)


def xor(payload: bytes, mask: bytes) -> bytes:
    """The reference masking, byte by byte (the reader's is tested against it)."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """A permessage-deflate payload: sync-flushed, the trailing 00 00 ff ff removed."""
    if compressor is None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def feed(data: bytes, limit: int = LIMIT, **kwargs: bool) -> list[Event]:
    return FrameReader(limit, **kwargs).feed(data)


def feed_bytewise(reader: FrameReader, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events += reader.feed(data[i : i + 1])
    return events


def protocol_error(events: list[Event]) -> bool:
    return len(events) == 1 and isinstance(events[0], Violation) and events[0].code == 1002


# -- masking ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 200, 511, 512, 513, 4096, 65537])
def test_unmask_matches_the_reference(size: int) -> None:
    payload, mask = os.urandom(size), os.urandom(4)
    assert unmask(payload, mask) == xor(payload, mask)
    assert unmask(bytearray(payload), bytearray(mask)) == xor(payload, mask)


# -- messages ----------------------------------------------------------------------------


def test_text_and_binary() -> None:
    data = frame(TEXT, '{"type":"ping"} ü€😀'.encode()) + frame(BINARY, b"\x00\xff\x80")
    assert feed(data) == [Text('{"type":"ping"} ü€😀'), Binary(b"\x00\xff\x80")]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 100_000])
def test_every_length_encoding(size: int) -> None:
    payload = os.urandom(size)
    mask = os.urandom(4)
    assert feed(frame(BINARY, payload, mask=mask), limit=size) == [Binary(payload)]


def test_non_minimal_length_encodings_are_accepted() -> None:
    assert feed(frame(TEXT, b"hi", form=126) + frame(TEXT, b"yo", form=127)) == [
        Text("hi"),
        Text("yo"),
    ]


def test_fragmented_message_with_control_frames_in_between() -> None:
    data = (
        frame(TEXT, b"he", fin=False)
        + frame(PING, b"p1")
        + frame(CONT, b"", fin=False)
        + frame(CONT, b"l", fin=False)
        + frame(PONG, b"p2")
        + frame(CONT, b"lo")
        + frame(BINARY, b"\x01", fin=False)
        + frame(CONT, b"\x02")
    )
    assert feed(data) == [Ping(b"p1"), Pong(b"p2"), Text("hello"), Binary(b"\x01\x02")]


def test_utf8_character_split_across_fragments() -> None:
    euro = "€".encode()
    data = frame(TEXT, euro[:1], fin=False) + frame(CONT, euro[1:2], fin=False)
    data += frame(CONT, euro[2:])
    assert feed(data) == [Text("€")]


def test_ping_and_pong_payloads() -> None:
    assert feed(frame(PING) + frame(PING, b"x" * 125) + frame(PONG, b"\x00\xff")) == [
        Ping(b""),
        Ping(b"x" * 125),
        Pong(b"\x00\xff"),
    ]


# -- protocol errors: 1002 ---------------------------------------------------------------


def test_unmasked_frame() -> None:
    assert feed(frame(TEXT, b"hi", mask=None)) == [Violation(1002, "client frame not masked")]


@pytest.mark.parametrize("rsv", [RSV2, RSV3, RSV2 | RSV3, RSV1 | RSV2])
@pytest.mark.parametrize("deflate", [False, True])
def test_rsv2_and_rsv3(rsv: int, deflate: bool) -> None:
    assert protocol_error(feed(frame(TEXT, b"hi", rsv=rsv), deflate=deflate))


def test_rsv1_without_deflate() -> None:
    assert feed(frame(TEXT, deflate(b"hi"), rsv=RSV1)) == [
        Violation(1002, "RSV1 set without compression")
    ]


def test_rsv1_on_a_continuation() -> None:
    data = frame(TEXT, deflate(b"hi"), rsv=RSV1, fin=False) + frame(CONT, b"", rsv=RSV1)
    assert feed(data, deflate=True) == [Violation(1002, "RSV1 set on a continuation")]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_rsv1_on_a_control_frame(opcode: int) -> None:
    assert feed(frame(opcode, rsv=RSV1), deflate=True) == [
        Violation(1002, "RSV1 set on a control frame")
    ]


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes(opcode: int) -> None:
    assert feed(frame(opcode, b"x")) == [Violation(1002, "reserved opcode")]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame(opcode: int) -> None:
    assert feed(frame(opcode, fin=False)) == [Violation(1002, "fragmented control frame")]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_over_125_bytes_is_refused_from_its_header(opcode: int) -> None:
    assert feed(frame(opcode, b"x" * 126)) == [Violation(1002, "control frame too long")]
    # The first two bytes suffice: nothing else has arrived.
    assert feed(frame(opcode, b"x" * 126)[:2]) == [Violation(1002, "control frame too long")]


def test_continuation_without_a_message() -> None:
    assert feed(frame(CONT, b"x")) == [Violation(1002, "continuation outside a message")]
    # A message that has just ended leaves nothing to continue.
    assert feed(frame(TEXT, b"a") + frame(CONT, b"b")) == [
        Text("a"),
        Violation(1002, "continuation outside a message"),
    ]


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_inside_a_fragmented_one(opcode: int) -> None:
    data = frame(TEXT, b"a", fin=False) + frame(opcode, b"b")
    assert feed(data) == [Violation(1002, "new message inside a fragmented one")]


def test_64_bit_length_with_the_top_bit_set() -> None:
    header = frame(BINARY, length=1 << 63, form=127)[:10]
    assert feed(header, limit=2**64) == [Violation(1002, "frame length over 63 bits")]


# -- sizes: 1009 -------------------------------------------------------------------------


def test_declared_length_over_the_limit_is_refused_from_the_header_alone() -> None:
    for length, form in [(1001, 126), (65535, 126), (10**12, 127), (2**63 - 1, 127)]:
        header = frame(BINARY, length=length, form=form)[: 4 if form == 126 else 10]
        reader = FrameReader(1000)
        assert reader.feed(header) == [Violation(1009, "message too big")]
        assert reader.feed(os.urandom(1000)) == []


def test_message_of_exactly_the_limit() -> None:
    assert feed(frame(BINARY, b"x" * 100), limit=100) == [Binary(b"x" * 100)]
    assert feed(frame(TEXT, b"x" * 101), limit=100) == [Violation(1009, "message too big")]


def test_fragmented_message_over_the_limit() -> None:
    reader = FrameReader(100)
    assert reader.feed(frame(TEXT, b"x" * 60, fin=False) + frame(PING)) == [Ping(b"")]
    assert reader.feed(frame(CONT, b"x" * 40, fin=False)) == []
    # The header of the fragment that crosses the limit is enough.
    assert reader.feed(frame(CONT, b"x", length=1)[:2]) == [Violation(1009, "message too big")]


def test_empty_fragments_cost_nothing() -> None:
    reader = FrameReader(10)
    events = reader.feed(frame(TEXT, b"a", fin=False) + frame(CONT, fin=False) * 10_000)
    assert events == []
    assert reader.feed(frame(CONT, b"b")) == [Text("ab")]


# -- UTF-8: 1007 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"\xc3",  # truncated sequence
        b"\xc0\xaf",  # overlong "/"
        b"\xed\xa0\x80",  # UTF-16 surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"ok\x80",
    ],
)
def test_invalid_utf8_text(payload: bytes) -> None:
    assert feed(frame(TEXT, payload)) == [Violation(1007, "text message is not valid UTF-8")]


def test_invalid_utf8_in_a_fragmented_text() -> None:
    data = frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xe2\x82")  # "€" cut short
    assert feed(data) == [Violation(1007, "text message is not valid UTF-8")]


NOT_UTF8 = Violation(1007, "text message is not valid UTF-8")


def bytes_until_violation(reader: FrameReader, data: bytes) -> int:
    """How many bytes of `data`, fed one at a time, the reader needs to refuse it."""
    for i in range(len(data)):
        events = reader.feed(data[i : i + 1])
        if events:
            assert events == [NOT_UTF8]
            return i + 1
    raise AssertionError("never refused")


@pytest.mark.parametrize(
    ("valid", "bad"),
    [
        ("κόσμε".encode(), b"\xf4\x90\x80\x80"),  # above U+10FFFF: refused at its 2nd byte
        (b"hello", b"\xed\xa0\x80"),  # a surrogate: its 2nd byte tells
        (b"abc", b"\xc0\xaf"),  # overlong: the lead byte tells
        (b"x" * 1001, b"\xff"),  # past a 4-byte boundary of the masking key
    ],
)
def test_invalid_utf8_is_refused_at_the_bad_byte_of_an_incomplete_frame(
    valid: bytes, bad: bytes
) -> None:
    # Autobahn 6.4.3/6.4.4: one frame, sent in chops; the rest never needs to come.
    data = frame(TEXT, valid + bad + b"tail" * 50)
    header = len(frame(TEXT, valid + bad + b"tail" * 50)) - len(valid + bad + b"tail" * 50)
    first_bad = 1 if bad[0] in (0xC0, 0xFF) else 2
    assert bytes_until_violation(FrameReader(LIMIT), data) == header + len(valid) + first_bad


def test_invalid_utf8_is_refused_in_the_fragment_that_carries_it() -> None:
    # Autobahn 6.4.1/6.4.2: the message's last fragment is never needed.
    reader = FrameReader(LIMIT)
    assert reader.feed(frame(TEXT, "κόσμε".encode(), fin=False)) == []
    assert reader.feed(frame(CONT, b"\xf4\x90\x80\x80", fin=False)) == [NOT_UTF8]
    assert reader.feed(frame(CONT, b"edited")) == []  # dead


def test_a_character_split_across_chops_and_fragments_is_valid() -> None:
    text = "ok € 𝄞 κόσμε " * 40
    raw = text.encode()
    cut = len(raw) // 2 + 1  # inside a multi-byte character
    data = frame(TEXT, raw[:cut], fin=False) + frame(PING) + frame(CONT, raw[cut:])
    data += frame(TEXT, raw)
    assert feed_bytewise(FrameReader(LIMIT), data) == [Ping(b""), Text(text), Text(text)]
    reader = FrameReader(LIMIT)
    assert reader.feed(data[:7]) + reader.feed(data[7:]) == [Ping(b""), Text(text), Text(text)]
    assert reader._utf8 is None and reader._checked == 0  # nothing held between messages


def test_a_compressed_text_is_checked_once_inflated() -> None:
    # Compressed bytes say nothing about UTF-8 until inflated: no early check.
    reader = FrameReader(LIMIT, deflate=True)
    payload = deflate(b"ok" + b"\xff" + b"tail" * 100)
    data = frame(TEXT, payload[:5], rsv=RSV1, fin=False) + frame(CONT, payload[5:])
    assert reader.feed(data) == [NOT_UTF8]


def test_binary_is_not_checked() -> None:
    assert feed(frame(BINARY, b"\xff\xc0")) == [Binary(b"\xff\xc0")]


# -- close -------------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def test_close_without_payload() -> None:
    assert feed(frame(CLOSE)) == [CloseReceived(None, "")]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(code: int) -> None:
    assert feed(frame(CLOSE, close_payload(code))) == [CloseReceived(code, "")]


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes(code: int) -> None:
    assert feed(frame(CLOSE, close_payload(code, b"bye"))) == [
        Violation(1002, "invalid close code")
    ]


def test_close_with_reason() -> None:
    reason = "au revoir, à bientôt"
    assert feed(frame(CLOSE, close_payload(1001, reason.encode()))) == [CloseReceived(1001, reason)]
    longest = "é" * 61 + "x"  # 123 bytes
    assert feed(frame(CLOSE, close_payload(4000, longest.encode()))) == [
        CloseReceived(4000, longest)
    ]


def test_close_payload_of_one_byte() -> None:
    assert feed(frame(CLOSE, b"\x03")) == [Violation(1002, "close payload of one byte")]


def test_close_reason_not_utf8() -> None:
    assert feed(frame(CLOSE, close_payload(1000, b"\xff"))) == [
        Violation(1007, "close reason is not valid UTF-8")
    ]


def test_close_inside_a_fragmented_message() -> None:
    data = frame(TEXT, b"a", fin=False) + frame(CLOSE, close_payload(1000))
    assert feed(data) == [CloseReceived(1000, "")]


# -- the end of the stream ---------------------------------------------------------------


def test_nothing_after_close() -> None:
    reader = FrameReader(LIMIT)
    chunk = frame(TEXT, b"a") + frame(CLOSE, close_payload(1000)) + frame(TEXT, b"b")
    assert reader.feed(chunk) == [Text("a"), CloseReceived(1000, "")]
    assert reader.feed(frame(TEXT, b"c")) == []
    assert reader.feed(b"\x00garbage") == []


def test_nothing_after_a_violation() -> None:
    reader = FrameReader(LIMIT)
    chunk = frame(PING) + frame(TEXT, b"a", mask=None) + frame(TEXT, b"b")
    assert reader.feed(chunk) == [Ping(b""), Violation(1002, "client frame not masked")]
    assert reader.feed(frame(TEXT, b"c")) == []


def test_empty_chunks() -> None:
    reader = FrameReader(LIMIT)
    assert reader.feed(b"") == []
    assert reader.feed(frame(TEXT, b"a")) == [Text("a")]


# -- chunking and memory -----------------------------------------------------------------


def test_frame_split_at_every_byte() -> None:
    data = frame(TEXT, b"x" * 300, fin=False) + frame(PING, b"p") + frame(CONT, b"y" * 70_000)
    data += frame(CLOSE, close_payload(1000, b"done"))
    assert feed_bytewise(FrameReader(100_000), data) == [
        Ping(b"p"),
        Text("x" * 300 + "y" * 70_000),
        CloseReceived(1000, "done"),
    ]


def test_violation_as_soon_as_the_header_tells() -> None:
    reader = FrameReader(LIMIT)
    data = frame(BINARY, b"x" * 1000, mask=None)
    assert reader.feed(data[:1]) == []
    assert reader.feed(data[1:2]) == [Violation(1002, "client frame not masked")]


def test_buffers_exist_only_while_something_is_incomplete() -> None:
    reader = FrameReader(LIMIT)
    assert not hasattr(reader, "__dict__")
    data = frame(TEXT, b"a" * 300, fin=False)
    assert reader.feed(data[:100]) == []
    assert reader._buf is not None
    assert reader.feed(data[100:]) == []
    assert reader._buf is None and reader._fragments is not None
    assert reader.feed(frame(CONT, b"b")) == [Text("a" * 300 + "b")]
    assert reader._buf is None and reader._fragments is None and reader._inflater is None


def test_a_big_chunk_does_not_leave_a_big_buffer() -> None:
    reader = FrameReader(1 << 20)
    data = frame(BINARY, b"x" * 500_000) + frame(TEXT, b"tail")[:3]
    assert reader.feed(data[:-100]) == []
    assert reader.feed(data[-100:]) == [Binary(b"x" * 500_000)]
    # Only the 3 bytes of the next frame are kept, in a buffer of their own.
    assert reader._buf is not None and bytes(reader._buf) == frame(TEXT, b"tail")[:3]
    assert reader.feed(frame(TEXT, b"tail")[3:]) == [Text("tail")]


# -- permessage-deflate ------------------------------------------------------------------


def test_compressed_message_with_context_takeover() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    messages = [b'{"type":"subscribe","channel":"prices","n":%d}' % i for i in range(5)]
    data = b"".join(frame(TEXT, deflate(m, compressor), rsv=RSV1) for m in messages)
    expected = [Text(m.decode()) for m in messages]
    reader = FrameReader(LIMIT, deflate=True)
    assert reader.feed(data) == expected
    assert reader._inflater is not None  # the window is kept between messages
    # The later messages refer back to the earlier ones: a fresh inflater per
    # message cannot read them.
    assert feed(data, deflate=True, no_context_takeover=True) != expected


def test_context_takeover_across_fragments_chops_and_window_sizes() -> None:
    # Autobahn always offers client_no_context_takeover, so the inflater kept
    # between messages is reached only here: a client that keeps its window
    # (any size up to 15 bits), fragments messages, and whose bytes arrive one
    # at a time; each message refers back to the ones before it.
    messages = [
        b'{"type":"subscribe","channel":"orderbook","symbol":"BTC","n":%d}' % i for i in range(6)
    ]
    for wbits in (9, 12, 15):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        data = b""
        for i, message in enumerate(messages):
            payload = deflate(message, compressor)
            if i % 2:
                half = len(payload) // 2
                data += frame(TEXT, payload[:half], rsv=RSV1, fin=False)
                data += frame(PING, b"!") + frame(CONT, payload[half:])
            else:
                data += frame(BINARY if i == 4 else TEXT, payload, rsv=RSV1)
        reader = FrameReader(LIMIT, deflate=True)
        events = feed_bytewise(reader, data)
        expected: list[Event] = []
        for i, message in enumerate(messages):
            if i % 2:
                expected.append(Ping(b"!"))
            expected.append(Binary(message) if i == 4 else Text(message.decode()))
        assert events == expected
        assert reader._inflater is not None


def test_context_takeover_keeps_the_limit_per_message() -> None:
    # The window carries over, the size limit does not: each inflated message
    # is measured on its own, and one over the limit fails the connection.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    small = frame(TEXT, deflate(b"a" * 900, compressor), rsv=RSV1)
    again = frame(TEXT, deflate(b"a" * 900, compressor), rsv=RSV1)  # mostly a back-reference
    over = frame(TEXT, deflate(b"a" * 1001, compressor), rsv=RSV1)
    reader = FrameReader(1000, deflate=True)
    assert reader.feed(small + again) == [Text("a" * 900), Text("a" * 900)]
    assert reader.feed(over) == [Violation(1009, "message too big once decompressed")]
    assert reader._inflater is None  # released with the connection's end


def test_compressed_messages_without_context_takeover() -> None:
    messages = [b"hello " * 50, b"hello " * 50 + b"again", b""]
    data = b"".join(frame(TEXT, deflate(m), rsv=RSV1) for m in messages)
    data += frame(BINARY, deflate(b"\x00\x01" * 100), rsv=RSV1)
    reader = FrameReader(LIMIT, deflate=True, no_context_takeover=True)
    assert reader.feed(data) == [Text(m.decode()) for m in messages] + [Binary(b"\x00\x01" * 100)]
    assert reader._inflater is None  # nothing kept between messages


def test_fragmented_compressed_message() -> None:
    message = ('{"type":"auth","token":"' + "jwt." * 400 + '"}').encode()
    payload = deflate(message)
    third = len(payload) // 3
    data = (
        frame(TEXT, payload[:third], rsv=RSV1, fin=False)
        + frame(PING, b"!")
        + frame(CONT, payload[third : 2 * third], fin=False)
        + frame(CONT, payload[2 * third :])
    )
    for no_context_takeover in (False, True):
        reader = FrameReader(LIMIT, deflate=True, no_context_takeover=no_context_takeover)
        assert feed_bytewise(reader, data) == [Ping(b"!"), Text(message.decode())]


def test_uncompressed_message_on_a_deflate_connection() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = frame(TEXT, deflate(b"first", compressor), rsv=RSV1) + frame(TEXT, b"plain")
    data += frame(TEXT, deflate(b"third", compressor), rsv=RSV1)
    assert feed(data, deflate=True) == [Text("first"), Text("plain"), Text("third")]


def test_compressed_message_ending_with_a_final_block() -> None:
    # RFC 7692 7.2.3.4: a sender may end each message with BFINAL set, which ends
    # its deflate stream; the next message is a new stream.
    def finished(data: bytes) -> bytes:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)

    data = frame(TEXT, finished(b"one"), rsv=RSV1) + frame(TEXT, finished(b"two"), rsv=RSV1)
    assert feed(data, deflate=True) == [Text("one"), Text("two")]


def test_corrupt_compressed_data() -> None:
    # Block type 3 is reserved in DEFLATE.
    data = frame(TEXT, b"\xff\xff\xff", rsv=RSV1)
    assert feed(data, deflate=True) == [Violation(1007, "invalid compressed data")]


def test_compressed_text_not_utf8() -> None:
    data = frame(TEXT, deflate(b"ok\xff"), rsv=RSV1)
    assert feed(data, deflate=True) == [Violation(1007, "text message is not valid UTF-8")]


def test_decompressed_size_limit() -> None:
    exact = frame(BINARY, deflate(b"z" * 1000), rsv=RSV1)
    assert feed(exact, limit=1000, deflate=True) == [Binary(b"z" * 1000)]
    over = frame(BINARY, deflate(b"z" * 1001), rsv=RSV1)
    assert feed(over, limit=1000, deflate=True) == [
        Violation(1009, "message too big once decompressed")
    ]


def test_limits_beyond_what_zlib_takes() -> None:
    data = frame(TEXT, deflate(b"big enough"), rsv=RSV1)
    assert feed(data, limit=2**70, deflate=True) == [Text("big enough")]
    with pytest.raises(ValueError):
        FrameReader(-1)


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_deflate_bomb(no_context_takeover: bool) -> None:
    bomb = frame(TEXT, deflate(bytes(10_000_000)), rsv=RSV1)
    assert len(bomb) < 20_000
    reader = FrameReader(LIMIT, deflate=True, no_context_takeover=no_context_takeover)
    tracemalloc.start()
    try:
        events = reader.feed(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [Violation(1009, "message too big once decompressed")]
    assert peak < 4 * LIMIT


# -- properties ----------------------------------------------------------------------------


@dataclass
class Stream:
    data: bytes
    events: list[Event]
    compressed: bool


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Valid client traffic: messages (some fragmented, some compressed with one
    shared compressor) with control frames between and within them, maybe a close."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    chunks: list[bytes] = []
    events: list[Event] = []
    compressed = draw(st.booleans())
    masks = st.binary(min_size=4, max_size=4)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind in ("ping", "pong"):
            body = draw(st.binary(max_size=125))
            chunks.append(frame(PING if kind == "ping" else PONG, body, mask=draw(masks)))
            events.append(Ping(body) if kind == "ping" else Pong(body))
            continue
        if kind == "text":
            text = draw(st.text(max_size=300))
            message: bytes = text.encode()
            events_for_message: Event = Text(text)
        else:
            message = draw(st.binary(max_size=300))
            events_for_message = Binary(message)
        rsv = 0
        if compressed and draw(st.booleans()):
            message, rsv = deflate(message, compressor), RSV1
        cuts = sorted(draw(st.lists(st.integers(0, len(message)), max_size=3)))
        pieces = [message[a:b] for a, b in pairwise([0, *cuts, len(message)])]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            opcode = (TEXT if kind == "text" else BINARY) if i == 0 else CONT
            chunks.append(
                frame(opcode, piece, fin=last, rsv=rsv if i == 0 else 0, mask=draw(masks))
            )
            if not last and draw(st.booleans()):
                ping = draw(st.binary(max_size=10))
                chunks.append(frame(PING, ping, mask=draw(masks)))
                events.append(Ping(ping))
        events.append(events_for_message)
    if draw(st.booleans()):
        chunks.append(frame(CLOSE, close_payload(1000, b"bye"), mask=draw(masks)))
        events.append(CloseReceived(1000, "bye"))
        chunks.append(frame(TEXT, b"ignored"))
    return Stream(b"".join(chunks), events, compressed)


@FUZZ
@given(streams(), st.lists(st.integers(min_value=0), max_size=20))
def test_any_chunking_gives_the_same_events(stream: Stream, cuts: list[int]) -> None:
    whole = FrameReader(LIMIT, deflate=stream.compressed).feed(stream.data)
    assert whole == stream.events
    reader = FrameReader(LIMIT, deflate=stream.compressed)
    bounds = sorted({0, len(stream.data), *(cut % (len(stream.data) + 1) for cut in cuts)})
    split: list[Event] = []
    for start, stop in pairwise(bounds):
        split += reader.feed(stream.data[start:stop])
    assert split == stream.events


def check_outcome(events: list[Event]) -> None:
    for i, event in enumerate(events):
        assert isinstance(event, Text | Binary | Ping | Pong | CloseReceived | Violation)
        if isinstance(event, CloseReceived | Violation):
            assert i == len(events) - 1, "nothing after the end of the stream"
        if isinstance(event, Violation):
            assert event.code in (1002, 1007, 1009)


@FUZZ
@given(
    st.binary(max_size=2000),
    st.lists(st.integers(min_value=1, max_value=50), max_size=20),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0, 1, 125, 200, LIMIT]),
)
def test_arbitrary_bytes_never_raise(
    data: bytes, sizes: list[int], deflate: bool, no_context_takeover: bool, limit: int
) -> None:
    reader = FrameReader(limit, deflate=deflate, no_context_takeover=no_context_takeover)
    events: list[Event] = []
    pos = 0
    for size in [*sizes, len(data)]:
        events += reader.feed(data[pos : pos + size])
        pos += size
    check_outcome(events)


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Frames that are mostly well formed, with any header bit, length or payload wrong
    now and then: random bytes alone rarely get past the mask bit and the opcode."""
    usually = st.sampled_from([True] * 7 + [False])
    opcode = draw(st.sampled_from([TEXT, BINARY, CONT, CLOSE, PING, PONG]))
    if not draw(usually):
        opcode = draw(st.integers(0, 15))
    rsv = draw(st.sampled_from([0] * 6 + [RSV1, RSV1, RSV2, RSV3]))
    payload = draw(
        st.binary(max_size=300)
        | st.text(max_size=100).map(str.encode)
        | st.sampled_from([b"\xff\xff\xff", close_payload(1000), close_payload(1005)])
    )
    if rsv and draw(st.booleans()):
        payload = deflate(payload)
    mask = draw(st.binary(min_size=4, max_size=4)) if draw(usually) else None
    form = None if draw(usually) else draw(st.sampled_from([126, 127]))
    length = None if draw(usually) else draw(st.integers(0, 2**64 - 1))
    if length is not None and length >= 1 << 16:
        form = 127
    return frame(
        opcode,
        payload,
        fin=draw(usually),
        rsv=rsv,
        mask=mask,
        length=length,
        form=form,
    )


@FUZZ
@given(st.lists(hostile_frames(), max_size=8), st.booleans(), st.booleans())
def test_hostile_frames_never_raise(frames: list[bytes], deflate: bool, nct: bool) -> None:
    data = b"".join(frames)
    whole = FrameReader(500, deflate=deflate, no_context_takeover=nct).feed(data)
    check_outcome(whole)
    # Every check is made at the same point of the stream however it is cut.
    assert feed_bytewise(FrameReader(500, deflate=deflate, no_context_takeover=nct), data) == whole

"""Server control frames: exact bytes, the 125-byte cap, and UTF-8-safe truncation."""

from __future__ import annotations

import pytest

from hlgateway.websocket.control import PING_FRAME, close_frame, ping_frame, pong_frame
from hlgateway.websocket.reader import CloseReceived, FrameReader, Ping, Pong, unmask

MASK = b"\x01\x02\x03\x04"


def parse(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of one unmasked server control frame."""
    first, second = frame[0], frame[1]
    assert second & 0x80 == 0, "server frames are not masked"
    assert second <= 125, "a control frame's length fits in 7 bits"
    assert len(frame) == 2 + second
    return first, frame[2:]


def as_client(frame: bytes) -> bytes:
    """The same frame masked, as a client would send it: the reader must accept it."""
    return bytes((frame[0], frame[1] | 0x80)) + MASK + unmask(frame[2:], MASK)


def test_close_frames() -> None:
    assert close_frame() == b"\x88\x02\x03\xe8"
    assert close_frame(None) == b"\x88\x00"
    assert close_frame(None, "ignored: no code, no reason") == b"\x88\x00"
    assert close_frame(1008, "policy") == b"\x88\x08\x03\xf0policy"
    assert close_frame(4999, "é") == b"\x88\x04\x13\x87\xc3\xa9"


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        ("x" * 123, "x" * 123),
        ("x" * 124, "x" * 123),
        ("é" * 100, "é" * 61),  # 122 bytes: the 62nd "é" would straddle the cut
        ("a" + "€" * 50, "a" + "€" * 40),  # 121 bytes
        ("😀" * 40, "😀" * 30),  # 120 bytes
    ],
)
def test_close_reason_is_cut_on_a_utf8_boundary(reason: str, kept: str) -> None:
    frame = close_frame(1001, reason)
    first, payload = parse(frame)
    assert first == 0x88
    assert payload == b"\x03\xe9" + kept.encode()
    assert FrameReader(1000).feed(as_client(frame)) == [CloseReceived(1001, kept)]


def test_close_reason_with_a_lone_surrogate() -> None:
    assert parse(close_frame(1000, "a\ud800b"))[1] == b"\x03\xe8a?b"


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2000, 5000, 70000])
def test_close_codes_that_may_not_be_sent(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        close_frame(code)


def test_ping_and_pong() -> None:
    assert PING_FRAME == ping_frame() == b"\x89\x00"
    assert ping_frame(b"hb") == b"\x89\x02hb"
    assert pong_frame(b"") == b"\x8a\x00"
    assert pong_frame(b"\x00\xff") == b"\x8a\x02\x00\xff"
    assert parse(ping_frame(b"p" * 200)) == (0x89, b"p" * 125)
    assert parse(pong_frame(b"q" * 126)) == (0x8A, b"q" * 125)
    reader = FrameReader(1000)
    assert reader.feed(as_client(ping_frame(b"x" * 125)) + as_client(pong_frame(b"y"))) == [
        Ping(b"x" * 125),
        Pong(b"y"),
    ]

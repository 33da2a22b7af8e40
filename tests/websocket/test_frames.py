"""Frames built once: valid frames; compressed ones decode with and without context takeover."""

from __future__ import annotations

import zlib

import pytest

from hlgateway.websocket.frames import Frame, deflate_payload, text_frame


def parse(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of one unmasked server frame."""
    first, second = frame[0], frame[1]
    assert second & 0x80 == 0, "server frames are not masked"
    length, offset = second & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    assert len(frame) == offset + length
    return first, frame[offset:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_lengths(size: int) -> None:
    payload = b"x" * size
    first, body = parse(text_frame(payload))
    assert first == 0x81 and body == payload


def test_raw_frame_is_built_once() -> None:
    frame = Frame(b'{"a":1}')
    assert frame.raw is frame.raw
    assert frame.for_deflate(15) is frame.raw  # below the threshold: not compressed


def test_compressed_frames_decode_with_and_without_context_takeover() -> None:
    messages = [(b'{"type":"data","n":%d,"pad":"' % i) + b"ab" * 900 + b'"}' for i in range(3)]
    frames = [Frame(m, threshold=100) for m in messages]
    # A receiver that keeps its context across messages (context takeover) ...
    keeping = zlib.decompressobj(-15)
    for frame, message in zip(frames, messages, strict=True):
        first, body = parse(frame.for_deflate(15))
        assert first == 0xC1  # FIN | RSV1 | text
        assert keeping.decompress(body + b"\x00\x00\xff\xff") == message
        # ... and one that starts afresh for every message.
        assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == message
        assert frame.for_deflate(15) is frame.for_deflate(15)
    assert len(frames[0].for_deflate(15)) < len(messages[0]) / 5


def test_smaller_window_for_clients_that_ask_for_one() -> None:
    message = b"0123456789" * 500
    body = deflate_payload(message, wbits=9)
    assert zlib.decompressobj(-9).decompress(body + b"\x00\x00\xff\xff") == message

"""Malformed (and a few well-formed) WebSocket client frames, built by hand (RFC 6455)."""

from __future__ import annotations

import base64
import json
import os
import random
import struct

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    declared: int | None = None,
) -> bytes:
    """One frame. `declared` lies about the payload length (the payload is sent as given)."""
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if payload else b""
    return head + key + body


def handshake(port: int, token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


def _junk_json(rng: random.Random) -> bytes:
    choices = [
        b"{",
        b"null",
        b"[1,2,3]",
        b'{"type":42}',
        b'{"type":"teleport"}',
        b'{"type":"subscribe","channel":"candles"}',
        b'{"type":"subscribe","channel":"orderbook","params":{"symbol":"BTC","depth":-1}}',
        b'{"type":"subscribe","channel":"user_fills","params":{"userId":"someone-else"}}',
        b'{"type":"auth","token":"garbage"}',
        b'{"type":"join_room","room":"' + b"x" * 100 + b'"}',
        b"[" * 5000,
        b"0:",
        json.dumps({"type": "ping", "id": rng.random()}).encode(),
        bytes(rng.getrandbits(8) & 0x7F for _ in range(rng.randint(1, 200))),
    ]
    return rng.choice(choices)


def _bad_utf8(rng: random.Random) -> bytes:
    return rng.choice([b"\xff\xfe", b'{"type":"ping","x":"\xc3\x28"}', b"\xed\xa0\x80", b"\x80"])


# Each scenario returns (frames to send, category, abrupt: cut the socket right after).
Scenario = tuple[list[bytes], str, bool]


def scenario(rng: random.Random, max_message: int) -> Scenario:
    pick = rng.random()
    n = rng.randint(1, 12)
    if pick < 0.18:
        return (
            [frame(BINARY, rng.randbytes(rng.randint(0, 300))) for _ in range(n)],
            "binary",
            False,
        )
    if pick < 0.36:
        return [frame(TEXT, _junk_json(rng)) for _ in range(n)], "bad_json", False
    if pick < 0.44:
        return [frame(TEXT, _bad_utf8(rng))], "invalid_utf8", False
    if pick < 0.58:
        kind = rng.randrange(4)
        if kind == 0:  # a valid message in fragments, with a ping in between
            parts = [b'{"type":', b'"ping"', b"}"]
            frames = [frame(TEXT, parts[0], fin=False), frame(PING, b"mid")]
            frames += [frame(CONT, parts[1], fin=False), frame(CONT, parts[2])]
            return frames * max(1, n // 4), "fragmented", False
        if kind == 1:  # a continuation with nothing to continue
            return [frame(CONT, b"orphan")], "fragmented", False
        if kind == 2:  # a new message before the fragmented one ended
            return [frame(TEXT, b"{", fin=False), frame(TEXT, b"{}")], "fragmented", False
        # many tiny fragments adding up past the size limit
        chunk = b"x" * 4096
        count = max_message // len(chunk) + 2
        frames = [frame(TEXT, chunk, fin=False)] + [
            frame(CONT, chunk, fin=False) for _ in range(count)
        ]
        return frames, "fragmented", False
    if pick < 0.68:
        kind = rng.randrange(3)
        if kind == 0:  # a real frame over the limit
            return [frame(TEXT, b" " * (max_message + 1024))], "oversized", False
        if kind == 1:  # a header claiming 8 GiB, then a little
            return [frame(BINARY, b"x" * 100, declared=1 << 33)], "oversized", True
        return [frame(TEXT, b"{" * 10, declared=max_message * 4)], "oversized", True
    if pick < 0.86:
        bad = [
            frame(PING, b"p" * 126),  # control payloads are at most 125 bytes
            frame(PING, b"frag", fin=False),  # control frames cannot be fragmented
            frame(CLOSE, b"\x03"),  # a close payload of one byte
            frame(CLOSE, struct.pack("!H", 999)),  # invalid close codes
            frame(CLOSE, struct.pack("!H", 1005)),
            frame(CLOSE, struct.pack("!H", 5000)),
            frame(CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"),  # invalid UTF-8 reason
            frame(rng.choice([0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xF]), b"reserved"),
            frame(TEXT, b'{"type":"ping"}', rsv=rng.randint(1, 7)),  # no extension agreed
            frame(TEXT, b'{"type":"ping"}', masked=False),  # clients must mask
            frame(PONG, rng.randbytes(50)),  # unsolicited pong: legal, ignored
        ]
        return [rng.choice(bad)], "bad_control", False
    if pick < 0.96:
        whole = frame(TEXT, b'{"type":"ping","pad":"' + b"y" * rng.randint(10, 500) + b'"}')
        cut = rng.randint(1, len(whole) - 1)
        return [whole[:cut]], "abrupt_close", True
    junk = [
        rng.randbytes(rng.randint(1, 400)),
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 99\r\n\r\n",
        b"GET /ws?token=" + b"A" * 9000 + b" HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on a plain port
    ]
    return [rng.choice(junk)], "bad_handshake", True

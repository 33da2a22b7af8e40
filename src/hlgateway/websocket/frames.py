"""WebSocket frames built once, for every subscriber. Sans I/O.

A server frame is not masked (RFC 6455 5.1), so the same bytes can go to every
connection. With permessage-deflate (RFC 7692) each message is compressed on
its own, with a fresh compressor: such a message never refers back to an
earlier one, so it is valid for receivers with or without context takeover,
and one compressed frame serves every client that negotiated the same window
size. Small messages are sent uncompressed (a per-message choice the extension
allows): deflate does not pay below a few hundred bytes.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Hashable

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
FIN = 0x80
RSV1 = 0x40  # "this message is compressed" under permessage-deflate

DEFAULT_THRESHOLD = 1024
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (RFC 7692 7.2.1)


def frame_header(length: int, first_byte: int = FIN | OPCODE_TEXT) -> bytes:
    if length < 126:
        return bytes((first_byte, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first_byte, 126, length)
    return struct.pack("!BBQ", first_byte, 127, length)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame."""
    return frame_header(len(payload)) + payload


def data_frame(payload: bytes, opcode: int = OPCODE_TEXT, wbits: int = 0) -> bytes:
    """One unmasked, final data frame; compressed on its own when `wbits` (9-15) is given."""
    if not wbits:
        return frame_header(len(payload), FIN | opcode) + payload
    body = deflate_payload(payload, wbits)
    return frame_header(len(body), FIN | RSV1 | opcode) + body


def deflate_payload(payload: bytes, wbits: int = 15, level: int = 6) -> bytes:
    """A message compressed on its own (no shared context), RFC 7692 style."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


class Frame:
    """One outgoing message: its JSON bytes, and the frame bytes built on demand.

    `raw` is built once (the first subscriber that needs it); `for_deflate(wbits)`
    once per window size. Every subscriber of a topic gets the same objects.
    `conflate_key` marks a full snapshot (its topic): a newer frame with the same
    key makes this one worthless to a client that has not received it yet.
    """

    __slots__ = ("_compressed", "_raw", "born", "conflate_key", "payload", "threshold")

    def __init__(
        self,
        payload: bytes,
        threshold: int = DEFAULT_THRESHOLD,
        conflate_key: Hashable | None = None,
    ) -> None:
        self.payload = payload
        self.threshold = threshold
        self.conflate_key = conflate_key
        self.born = time.monotonic()
        self._raw: bytes | None = None
        self._compressed: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def raw(self) -> bytes:
        raw = self._raw
        if raw is None:
            raw = self._raw = text_frame(self.payload)
        return raw

    def for_deflate(self, wbits: int) -> bytes:
        """The frame for a client that negotiated permessage-deflate with this window."""
        if len(self.payload) < self.threshold or wbits < 9:
            # Small, or a window zlib cannot produce (8 bits): uncompressed is valid too.
            return self.raw
        frame = self._compressed.get(wbits)
        if frame is None:
            body = deflate_payload(self.payload, wbits)
            frame = self._compressed[wbits] = (
                frame_header(len(body), FIN | RSV1 | OPCODE_TEXT) + body
            )
        return frame

"""Server control frames (RFC 6455 5.5): close, ping and pong. Sans I/O.

Server frames are not masked, so these are plain bytes that any connection can
send; the idle-connection keepalive ping is built once (PING_FRAME). A control
frame carries at most 125 bytes of payload: longer payloads are truncated here
rather than producing a frame the client must reject.
"""

from __future__ import annotations

from hlgateway.websocket.frames import FIN, frame_header

OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
MAX_CONTROL_PAYLOAD = 125


def valid_close_code(code: int) -> bool:
    """A code that may travel in a close frame (RFC 6455 7.4, IANA registry).

    1004 is reserved, 1005, 1006 and 1015 are never sent (they stand for "no code",
    "abnormal closure" and "TLS failure"), 2000-2999 are for extensions and none is
    defined; 3000-4999 belong to libraries and applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """A close frame; `code` None sends an empty payload (and no reason).

    The reason is cut to fit the 125-byte payload on a UTF-8 boundary, so the
    client never sees invalid UTF-8 (which it would answer with 1007).
    Raises ValueError for a code that may not be sent (see valid_close_code).
    """
    if code is None:
        return frame_header(0, FIN | OPCODE_CLOSE)
    if not valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    # "replace": a str with lone surrogates cannot be encoded strictly.
    raw = reason.encode("utf-8", "replace")
    if len(raw) > MAX_CONTROL_PAYLOAD - 2:
        raw = raw[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode()
    payload = code.to_bytes(2, "big") + raw
    return frame_header(len(payload), FIN | OPCODE_CLOSE) + payload


def ping_frame(payload: bytes = b"") -> bytes:
    """A ping; a payload over 125 bytes is truncated."""
    payload = payload[:MAX_CONTROL_PAYLOAD]
    return frame_header(len(payload), FIN | OPCODE_PING) + payload


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping, echoing its payload (truncated to 125 bytes, defensively)."""
    payload = payload[:MAX_CONTROL_PAYLOAD]
    return frame_header(len(payload), FIN | OPCODE_PONG) + payload


PING_FRAME: bytes = ping_frame()

"""Server messages, encoded to the bytes of one JSON text frame.

Data messages are built once per topic from pre-encoded parts (the topic's
canonical params are encoded when the topic is created), so fan-out never
encodes per client.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from hlgateway.protocol.errors import ErrorCode
from hlgateway.protocol.messages import RequestId

_encoder = msgspec.json.Encoder()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def message(kind: str, request_id: RequestId = None, **fields: Any) -> bytes:
    """A reply or notice: `type`, the fields, the echoed `id` if any, and `timestamp`."""
    body: dict[str, Any] = {"type": kind, **fields}
    if request_id is not None:
        body["id"] = request_id
    body["timestamp"] = now_ms()
    return _encoder.encode(body)


def error(
    code: ErrorCode,
    text: str,
    request_id: RequestId = None,
    channel: str | None = None,
    params: Any = None,
) -> bytes:
    fields: dict[str, Any] = {"code": code.value, "message": text}
    if channel is not None:
        fields["channel"] = channel
    if params is not None:
        fields["params"] = params
    return message("error", request_id, **fields)


def data_frame(head: bytes, data: Any, timestamp: int | None = None) -> bytes:
    """`head` is the pre-encoded `{"type":"data","channel":C,"params":P,"data":` prefix."""
    ts = now_ms() if timestamp is None else timestamp
    return b"".join((head, _encoder.encode(data), b',"timestamp":', str(ts).encode(), b"}"))


def data_head(channel: str, params_json: bytes) -> bytes:
    return b"".join(
        (
            b'{"type":"data","channel":',
            _encoder.encode(channel),
            b',"params":',
            params_json,
            b',"data":',
        )
    )

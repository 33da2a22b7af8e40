"""Client messages: decoded and validated in one pass by msgspec.

Each message type is a tagged struct; the tag is the `type` field. Decoding
failures are turned into the contract's coded errors, and the request `id` is
recovered (best effort) so that even an error reply echoes it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.positions import Position

# A request id is a string or a number; replies echo it as given.
RequestId = str | int | float | None


class Subscribe(msgspec.Struct, tag_field="type", tag="subscribe", frozen=True):
    channel: str
    params: dict[str, Any] | None = None
    id: RequestId = None
    since: Position | None = None  # where the client stopped: resume after it


class Unsubscribe(msgspec.Struct, tag_field="type", tag="unsubscribe", frozen=True):
    channel: str
    params: dict[str, Any] | None = None
    id: RequestId = None


class Ping(msgspec.Struct, tag_field="type", tag="ping", frozen=True):
    id: RequestId = None


class JoinRoom(msgspec.Struct, tag_field="type", tag="join_room", frozen=True):
    room: str
    id: RequestId = None
    since: Position | None = None  # where the client stopped: resume after it


class LeaveRoom(msgspec.Struct, tag_field="type", tag="leave_room", frozen=True):
    room: str
    id: RequestId = None


class Auth(msgspec.Struct, tag_field="type", tag="auth", frozen=True):
    token: str
    id: RequestId = None


class Post(msgspec.Struct, tag_field="type", tag="post", frozen=True):
    """A signed `/exchange` body to relay; kept as the exact bytes the client sent."""

    request: msgspec.Raw
    id: RequestId = None


ClientMessage = Subscribe | Unsubscribe | Ping | JoinRoom | LeaveRoom | Auth | Post

KNOWN_TYPES = frozenset(
    {"subscribe", "unsubscribe", "ping", "join_room", "leave_room", "auth", "post"}
)

_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_loose = msgspec.json.Decoder()


class DecodeFailure(ProtocolError):
    """A message that could not be decoded, with whatever could be salvaged for the reply."""

    def __init__(
        self, code: ErrorCode, message: str, request_id: RequestId, channel: str | None
    ) -> None:
        super().__init__(code, message)
        self.request_id = request_id
        self.channel = channel


def decode(raw: str | bytes) -> ClientMessage:
    """Decode one client frame or raise DecodeFailure with the contract's code."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _explain(raw, str(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        # RecursionError: nesting deeper than msgspec follows (`[[[[...`).
        # UnicodeError: a str with lone surrogates (never from a socket, which decodes UTF-8).
        raise DecodeFailure(
            ErrorCode.INVALID_MESSAGE, "Message is not valid JSON", None, None
        ) from None


def _explain(raw: str | bytes, detail: str) -> DecodeFailure:
    # Only the error path parses twice: to tell an unknown type from a bad field
    # and to echo the id. The happy path stays one pass. msgspec may report a
    # type error before it reaches malformed input further on (`0:`), so the
    # second pass can still find the JSON broken.
    try:
        obj = _loose.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return DecodeFailure(ErrorCode.INVALID_MESSAGE, "Message is not valid JSON", None, None)
    if not isinstance(obj, dict):
        return DecodeFailure(ErrorCode.INVALID_MESSAGE, "Message must be a JSON object", None, None)
    rid = obj.get("id")
    request_id: RequestId = rid if _is_request_id(rid) else None
    channel = obj.get("channel") if isinstance(obj.get("channel"), str) else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        return DecodeFailure(
            ErrorCode.INVALID_MESSAGE, "Field `type` must be a string", request_id, channel
        )
    if kind not in KNOWN_TYPES:
        return DecodeFailure(
            ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind[:64]!r}", request_id, channel
        )
    return DecodeFailure(ErrorCode.INVALID_MESSAGE, detail, request_id, channel)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)

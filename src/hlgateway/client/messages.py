"""Typed messages of the wire contract, as a client sees them (sans I/O).

Server messages decode into one of the `ServerMessage` structs by their `type`;
a type this client does not know becomes `UnknownMessage` (forward compatible).
`DataMessage.data` is the raw JSON payload; `payload()` converts it into the
channel's typed form (`PricesData`, `OrderBook`, ...).
"""

from __future__ import annotations

from typing import Any

import msgspec

from hlgateway.protocol.payloads import (
    PAYLOAD_TYPES,
    AccountPosition,
    AccountState,
    AssetContext,
    Bbo,
    Candle,
    CandlesData,
    Fill,
    FillLiquidation,
    FillsData,
    LedgerData,
    LedgerEvent,
    Order,
    OrderBook,
    OrderUpdate,
    Payload,
    PriceQuote,
    PricesData,
    SystemNotice,
    Trade,
    TradesData,
)
from hlgateway.protocol.positions import Position

Json = dict[str, Any]
RequestId = str | int


# -- channel payloads: defined once, in hlgateway.protocol.payloads ---------------

__all__ = [
    "PAYLOAD_TYPES",
    "AccountPosition",
    "AccountState",
    "AssetContext",
    "Bbo",
    "Candle",
    "CandlesData",
    "Fill",
    "FillLiquidation",
    "FillsData",
    "LedgerData",
    "LedgerEvent",
    "Order",
    "OrderBook",
    "OrderUpdate",
    "Payload",
    "PriceQuote",
    "PricesData",
    "SystemNotice",
    "Trade",
    "TradesData",
]


# -- server messages -----------------------------------------------------------


class _Server(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    timestamp: int = 0


class Welcome(_Server, tag="welcome", frozen=True):
    clientId: str
    user: Json
    infoUrl: str | None = None  # the exchange's info API the gateway reads (v3)


class Subscribed(_Server, tag="subscribed", frozen=True):
    channel: str
    params: Json
    id: RequestId | None = None
    # Lossless streams: the stream's last published position (0 if none), and,
    # when the request had `since`, whether everything after it follows.
    offset: int | None = None
    epoch: str | None = None
    recovered: bool | None = None


class Unsubscribed(_Server, tag="unsubscribed", frozen=True):
    channel: str
    params: Json
    id: RequestId | None = None


class DataMessage(_Server, tag="data", frozen=True):
    channel: str
    params: Json
    data: Any
    offset: int | None = None  # lossless streams only
    epoch: str | None = None

    @property
    def position(self) -> Position | None:
        """Where this message is in its stream: store it, resume with `since=` it."""
        if self.offset is None or self.epoch is None:
            return None
        return Position(self.offset, self.epoch)

    def payload(self) -> Any:
        """`data` as the channel's typed payload; rooms (free-form) stay raw."""
        kind = PAYLOAD_TYPES.get(self.channel)
        return self.data if kind is None else msgspec.convert(self.data, kind)


class ErrorMessage(_Server, tag="error", frozen=True):
    code: str
    message: str
    channel: str | None = None
    params: Json | None = None
    id: RequestId | None = None


class Pong(_Server, tag="pong", frozen=True):
    id: RequestId | None = None


class RoomJoined(_Server, tag="room_joined", frozen=True):
    room: str
    id: RequestId | None = None
    offset: int | None = None
    epoch: str | None = None
    recovered: bool | None = None


class RoomLeft(_Server, tag="room_left", frozen=True):
    room: str
    id: RequestId | None = None


class Authenticated(_Server, tag="authenticated", frozen=True):
    expiresAt: int | None = None
    id: RequestId | None = None


class Shutdown(_Server, tag="shutdown", frozen=True):
    message: str = ""


class PostResult(_Server, tag="post_result", frozen=True):
    """Hyperliquid's answer to a relayed `post`, as it came: `status` ok or err, and
    `response` (an object, or the reason as text). An `err` whose answer was lost
    says so: the action's fate is unknown, look it up by its cloid."""

    status: str
    response: Any
    id: RequestId | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def statuses(self) -> list[Any]:
        """The per-order (or per-cancel) entries of an `ok` order/cancel answer."""
        if not self.ok or not isinstance(self.response, dict):
            return []
        data = self.response.get("data")
        statuses = data.get("statuses") if isinstance(data, dict) else None
        return list(statuses) if isinstance(statuses, list) else []


class UnknownMessage(msgspec.Struct, frozen=True):
    """A message type this client does not know; `raw` is the whole object."""

    type: str
    raw: Json


ServerMessage = (
    Welcome
    | Subscribed
    | Unsubscribed
    | DataMessage
    | ErrorMessage
    | Pong
    | RoomJoined
    | RoomLeft
    | Authenticated
    | Shutdown
    | PostResult
    | UnknownMessage
)

_decoder = msgspec.json.Decoder(
    Welcome
    | Subscribed
    | Unsubscribed
    | DataMessage
    | ErrorMessage
    | Pong
    | RoomJoined
    | RoomLeft
    | Authenticated
    | Shutdown
    | PostResult
)
_encoder = msgspec.json.Encoder()


class MalformedMessage(ValueError):
    """A frame that is not a JSON object with a string `type`."""


def decode(raw: str | bytes) -> ServerMessage:
    """One server frame -> its typed message."""
    try:
        msg: ServerMessage = _decoder.decode(raw)
        return msg
    except msgspec.ValidationError:
        pass  # an unknown type, or a known one of another shape
    except msgspec.DecodeError as exc:
        raise MalformedMessage(str(exc)) from None
    obj = msgspec.json.decode(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MalformedMessage("not a JSON object with a string `type`")
    return UnknownMessage(type=obj["type"], raw=obj)


def encode(obj: Json) -> str:
    return _encoder.encode(obj).decode()


def request_id_of(msg: ServerMessage) -> RequestId | None:
    """The `id` a reply echoes, if any."""
    if isinstance(msg, UnknownMessage):
        rid = msg.raw.get("id")
        return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None
    rid_attr: RequestId | None = getattr(msg, "id", None)
    return rid_attr

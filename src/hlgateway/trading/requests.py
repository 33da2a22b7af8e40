"""A `post`'s request: Hyperliquid's `/exchange` body, checked for shape, kept as sent.

The gateway relays the client's bytes unchanged (a signature covers the
action's field order); this module only reads what the relay needs: the action
type (what is allowed), the nonce (for the log), the batch size (Hyperliquid's
REST weight: 1 + floor(n / 40)) and the orders' cloids (for the log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from hlgateway.protocol.errors import ErrorCode, ProtocolError

# What the relay forwards by default: trading, never moving funds or keys.
RELAYED = frozenset(
    {
        "order",
        "cancel",
        "cancelByCloid",
        "modify",
        "batchModify",
        "scheduleCancel",
        "updateLeverage",
        "updateIsolatedMargin",
        "twapOrder",
        "twapCancel",
        "noop",
    }
)
Unsigned = Annotated[int, msgspec.Meta(ge=0)]


class _Signature(msgspec.Struct, forbid_unknown_fields=True):
    r: str
    s: str
    v: int


class _Order(msgspec.Struct):
    c: str | None = None


class _Modify(msgspec.Struct):
    order: _Order


class _Action(msgspec.Struct):
    type: str
    orders: list[_Order] = []
    cancels: list[msgspec.Raw] = []
    modifies: list[_Modify] = []
    order: _Order | None = None  # modify


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    action: _Action
    nonce: Unsigned
    signature: _Signature
    vaultAddress: str | None = None
    expiresAfter: Unsigned | None = None


_decode = msgspec.json.Decoder(_Request).decode


@dataclass(frozen=True, slots=True)
class PostRequest:
    body: bytes  # as the client sent it
    action: str
    nonce: int
    batch: int  # orders, cancels or modifies in it (1 for other actions)
    cloids: tuple[str, ...]

    @property
    def weight(self) -> int:
        """Hyperliquid's REST weight of this action."""
        return 1 + self.batch // 40


def parse_request(body: bytes) -> PostRequest:
    """Read a post's request; INVALID_PARAMS names what is wrong with it."""
    try:
        request = _decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_PARAMS, f"request: {exc}") from None
    action = request.action
    orders = [*action.orders, *(m.order for m in action.modifies)]
    if action.order is not None:
        orders.append(action.order)
    batch = max(1, len(action.orders), len(action.cancels), len(action.modifies))
    return PostRequest(
        body=body,
        action=action.type,
        nonce=request.nonce,
        batch=batch,
        cloids=tuple(o.c for o in orders if o.c is not None),
    )

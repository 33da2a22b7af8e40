"""``/exchange`` actions: parsed into typed requests, and put back in canonical form.

Hyperliquid deserializes an action into its own types and hashes it again in
its own field order, so a client must sign exactly that order (the SDKs do).
``parse_action`` checks every field's type the way Hyperliquid's deserializer
would (a malformed action is HTTP 422, "Failed to deserialize the JSON body
into the target type") and returns the canonical dict the signature is checked
against, beside the typed request the exchange executes. Sans I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from hlgateway.simulator.signing import ADDRESS, USER_SIGNED_TYPES

CLOID = re.compile(r"0x[0-9a-fA-F]{32}")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")

Tif = Literal["Alo", "Ioc", "Gtc"]
TIFS: dict[str, Tif] = {"Alo": "Alo", "Ioc": "Ioc", "Gtc": "Gtc", "FrontendMarket": "Ioc"}
GROUPINGS = frozenset({"na", "normalTpsl", "positionTpsl"})


class ActionError(ValueError):
    """An action Hyperliquid could not deserialize (HTTP 422); the text says what."""


@dataclass(frozen=True, slots=True)
class Trigger:
    px: Decimal
    is_market: bool
    tpsl: Literal["tp", "sl"]


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One order of an ``order`` or ``modify`` action (its wire form, typed)."""

    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    tif: Tif | None  # None: a trigger order
    trigger: Trigger | None
    cloid: str | None  # lower-case


@dataclass(frozen=True, slots=True)
class PlaceOrders:
    orders: tuple[OrderSpec, ...]
    grouping: str


@dataclass(frozen=True, slots=True)
class CancelOrders:
    cancels: tuple[tuple[int, int], ...]  # (asset, oid)


@dataclass(frozen=True, slots=True)
class CancelByCloid:
    cancels: tuple[tuple[int, str], ...]  # (asset, cloid)


@dataclass(frozen=True, slots=True)
class ModifyOrders:
    modifies: tuple[tuple[int | str, OrderSpec], ...]  # (oid or cloid, new order)
    batch: bool  # batchModify answers per order; modify answers once


@dataclass(frozen=True, slots=True)
class UpdateLeverage:
    asset: int
    is_cross: bool
    leverage: int


@dataclass(frozen=True, slots=True)
class UpdateIsolatedMargin:
    asset: int
    is_buy: bool
    ntli: int


@dataclass(frozen=True, slots=True)
class TwapOrder:
    """``twapOrder``: ``sz`` bought or sold in 30-second market slices over ``minutes``."""

    asset: int
    is_buy: bool
    sz: Decimal
    reduce_only: bool
    minutes: int
    randomize: bool


@dataclass(frozen=True, slots=True)
class TwapCancel:
    asset: int
    twap_id: int


@dataclass(frozen=True, slots=True)
class ScheduleCancel:
    time: int | None


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class ApproveAgent:
    agent: str  # lower-case
    name: str  # "" for the unnamed agent
    nonce: int


@dataclass(frozen=True, slots=True)
class UsdSend:
    destination: str  # lower-case
    amount: Decimal
    time: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    destination: str
    amount: Decimal
    time: int


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A real Hyperliquid action that the simulator does not model."""

    kind: str


Request = (
    PlaceOrders
    | CancelOrders
    | CancelByCloid
    | ModifyOrders
    | UpdateLeverage
    | UpdateIsolatedMargin
    | TwapOrder
    | TwapCancel
    | ScheduleCancel
    | Noop
    | ApproveAgent
    | UsdSend
    | Withdraw
    | Unsupported
)


@dataclass(frozen=True, slots=True)
class ParsedAction:
    request: Request
    canonical: dict[str, Any]  # what an L1 signature covers (field order matters)
    user_signed: bool  # signed with the action's own EIP-712 types, not the phantom agent
    nonce_field: int | None  # the nonce/time a user-signed action carries itself


# -- field readers ----------------------------------------------------------------
def _reject(detail: str) -> ActionError:
    return ActionError(detail)


def _fields(
    raw: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    if not isinstance(raw, Mapping):
        raise _reject(f"invalid type: expected an object at {where}")
    for name in required:
        if name not in raw:
            raise _reject(f"missing field `{name}` at {where}")
    for name in raw:
        if name not in required and name not in optional:
            raise _reject(f"unknown field `{name}` at {where}")


def _int(raw: Mapping[str, Any], name: str) -> int:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 64:
        raise _reject(f"invalid value for field `{name}`: expected an unsigned integer")
    return value


def _bool(raw: Mapping[str, Any], name: str) -> bool:
    value = raw[name]
    if not isinstance(value, bool):
        raise _reject(f"invalid type for field `{name}`: expected a boolean")
    return value


def _str(raw: Mapping[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise _reject(f"invalid type for field `{name}`: expected a string")
    return value


def _decimal(raw: Mapping[str, Any], name: str) -> Decimal:
    text = _str(raw, name)
    if not _DECIMAL.fullmatch(text):
        raise _reject(f"invalid value for field `{name}`: expected a decimal string")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise _reject(f"invalid value for field `{name}`") from None


def _address(raw: Mapping[str, Any], name: str) -> str:
    text = _str(raw, name)
    if not ADDRESS.fullmatch(text):
        raise _reject(f"invalid value for field `{name}`: expected an address")
    return text.lower()


def _cloid(raw: Mapping[str, Any], name: str) -> str:
    text = _str(raw, name)
    if not CLOID.fullmatch(text):
        raise _reject(f"invalid value for field `{name}`: expected a 16-byte hex cloid")
    return text.lower()


def _list(raw: Mapping[str, Any], name: str) -> list[Any]:
    value = raw[name]
    if not isinstance(value, list):
        raise _reject(f"invalid type for field `{name}`: expected a sequence")
    return value


def _ordered(raw: Mapping[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """``raw``'s fields in ``order`` (Hyperliquid's serialization order)."""
    return {name: raw[name] for name in order if name in raw}


# -- orders -----------------------------------------------------------------------
def _order_type(raw: Any) -> tuple[Tif | None, Trigger | None, dict[str, Any]]:
    _fields(raw, "order type", (), ("limit", "trigger"))
    if ("limit" in raw) == ("trigger" in raw):
        raise _reject("an order type is exactly one of `limit` or `trigger`")
    if "limit" in raw:
        limit = raw["limit"]
        _fields(limit, "limit", ("tif",))
        tif = TIFS.get(_str(limit, "tif"))
        if tif is None:
            raise _reject(f"unknown variant `{limit['tif']}` for field `tif`")
        return tif, None, {"limit": {"tif": limit["tif"]}}
    trigger = raw["trigger"]
    _fields(trigger, "trigger", ("isMarket", "triggerPx", "tpsl"))
    tpsl = _str(trigger, "tpsl")
    if tpsl not in ("tp", "sl"):
        raise _reject(f"unknown variant `{tpsl}` for field `tpsl`")
    spec = Trigger(_decimal(trigger, "triggerPx"), _bool(trigger, "isMarket"), tpsl)  # type: ignore[arg-type]
    return None, spec, {"trigger": _ordered(trigger, ("isMarket", "triggerPx", "tpsl"))}


def _order(raw: Any) -> tuple[OrderSpec, dict[str, Any]]:
    _fields(raw, "order", ("a", "b", "p", "s", "r", "t"), ("c",))
    tif, trigger, order_type = _order_type(raw["t"])
    cloid = None if raw.get("c") is None else _cloid(raw, "c")
    spec = OrderSpec(
        asset=_int(raw, "a"),
        is_buy=_bool(raw, "b"),
        px=_decimal(raw, "p"),
        sz=_decimal(raw, "s"),
        reduce_only=_bool(raw, "r"),
        tif=tif,
        trigger=trigger,
        cloid=cloid,
    )
    canonical = _ordered(raw, ("a", "b", "p", "s", "r"))
    canonical["t"] = order_type
    if "c" in raw:
        canonical["c"] = raw["c"]
    return spec, canonical


def _place(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "orders", "grouping"), ("builder",))
    grouping = _str(raw, "grouping")
    if grouping not in GROUPINGS:
        raise _reject(f"unknown variant `{grouping}` for field `grouping`")
    parsed = [_order(item) for item in _list(raw, "orders")]
    canonical: dict[str, Any] = {
        "type": "order",
        "orders": [c for _, c in parsed],
        "grouping": grouping,
    }
    if "builder" in raw:
        builder = raw["builder"]
        _fields(builder, "builder", ("b", "f"))
        _address(builder, "b")
        _int(builder, "f")
        canonical["builder"] = _ordered(builder, ("b", "f"))
    return PlaceOrders(tuple(spec for spec, _ in parsed), grouping), canonical


def _cancel(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "cancels"))
    cancels, canonical = [], []
    for item in _list(raw, "cancels"):
        _fields(item, "cancel", ("a", "o"))
        cancels.append((_int(item, "a"), _int(item, "o")))
        canonical.append(_ordered(item, ("a", "o")))
    return CancelOrders(tuple(cancels)), {"type": "cancel", "cancels": canonical}


def _cancel_by_cloid(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "cancels"))
    cancels, canonical = [], []
    for item in _list(raw, "cancels"):
        _fields(item, "cancel", ("asset", "cloid"))
        cancels.append((_int(item, "asset"), _cloid(item, "cloid")))
        canonical.append(_ordered(item, ("asset", "cloid")))
    return CancelByCloid(tuple(cancels)), {"type": "cancelByCloid", "cancels": canonical}


def _oid_or_cloid(raw: Mapping[str, Any]) -> int | str:
    value = raw["oid"]
    return _cloid(raw, "oid") if isinstance(value, str) else _int(raw, "oid")


def _modify(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "oid", "order"))
    spec, order = _order(raw["order"])
    request = ModifyOrders(((_oid_or_cloid(raw), spec),), batch=False)
    return request, {"type": "modify", "oid": raw["oid"], "order": order}


def _batch_modify(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "modifies"))
    modifies, canonical = [], []
    for item in _list(raw, "modifies"):
        _fields(item, "modify", ("oid", "order"))
        spec, order = _order(item["order"])
        modifies.append((_oid_or_cloid(item), spec))
        canonical.append({"oid": item["oid"], "order": order})
    return ModifyOrders(tuple(modifies), batch=True), {"type": "batchModify", "modifies": canonical}


def _update_leverage(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "asset", "isCross", "leverage"))
    request = UpdateLeverage(_int(raw, "asset"), _bool(raw, "isCross"), _int(raw, "leverage"))
    return request, _ordered(raw, ("type", "asset", "isCross", "leverage"))


def _update_isolated_margin(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "asset", "isBuy", "ntli"))
    value = raw["ntli"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _reject("invalid value for field `ntli`: expected an integer")
    request = UpdateIsolatedMargin(_int(raw, "asset"), _bool(raw, "isBuy"), value)
    return request, _ordered(raw, ("type", "asset", "isBuy", "ntli"))


def _twap_order(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "twap"))
    twap = raw["twap"]
    _fields(twap, "twap", ("a", "b", "s", "r", "m", "t"))
    request = TwapOrder(
        asset=_int(twap, "a"),
        is_buy=_bool(twap, "b"),
        sz=_decimal(twap, "s"),
        reduce_only=_bool(twap, "r"),
        minutes=_int(twap, "m"),
        randomize=_bool(twap, "t"),
    )
    return request, {"type": "twapOrder", "twap": _ordered(twap, ("a", "b", "s", "r", "m", "t"))}


def _twap_cancel(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type", "a", "t"))
    request = TwapCancel(_int(raw, "a"), _int(raw, "t"))
    return request, _ordered(raw, ("type", "a", "t"))


def _schedule_cancel(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type",), ("time",))
    time = None if raw.get("time") is None else _int(raw, "time")
    return ScheduleCancel(time), _ordered(raw, ("type", "time"))


def _noop(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", ("type",))
    return Noop(), {"type": "noop"}


_USER_SIGNED_FIELDS = ("type", "signatureChainId", "hyperliquidChain")


def _chain_fields(raw: Mapping[str, Any]) -> None:
    chain_id = _str(raw, "signatureChainId")
    if not re.fullmatch(r"0x[0-9a-fA-F]{1,16}", chain_id):
        raise _reject("invalid value for field `signatureChainId`: expected a hex chain id")
    if _str(raw, "hyperliquidChain") not in ("Mainnet", "Testnet"):
        raise _reject("unknown variant for field `hyperliquidChain`")


def _approve_agent(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", (*_USER_SIGNED_FIELDS, "agentAddress", "nonce"), ("agentName",))
    _chain_fields(raw)
    name = raw.get("agentName")
    if name is not None and not isinstance(name, str):
        raise _reject("invalid type for field `agentName`: expected a string")
    request = ApproveAgent(_address(raw, "agentAddress"), name or "", _int(raw, "nonce"))
    # The SDK signs an unnamed agent with agentName "" and then drops the field.
    signed = {**raw, "agentName": name or ""}
    return request, signed


def _usd_send(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", (*_USER_SIGNED_FIELDS, "destination", "amount", "time"))
    _chain_fields(raw)
    request = UsdSend(_address(raw, "destination"), _decimal(raw, "amount"), _int(raw, "time"))
    return request, dict(raw)


def _withdraw(raw: Mapping[str, Any]) -> tuple[Request, dict[str, Any]]:
    _fields(raw, "action", (*_USER_SIGNED_FIELDS, "destination", "amount", "time"))
    _chain_fields(raw)
    request = Withdraw(_address(raw, "destination"), _decimal(raw, "amount"), _int(raw, "time"))
    return request, dict(raw)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], tuple[Request, dict[str, Any]]]] = {
    "order": _place,
    "cancel": _cancel,
    "cancelByCloid": _cancel_by_cloid,
    "modify": _modify,
    "batchModify": _batch_modify,
    "updateLeverage": _update_leverage,
    "updateIsolatedMargin": _update_isolated_margin,
    "twapOrder": _twap_order,
    "twapCancel": _twap_cancel,
    "scheduleCancel": _schedule_cancel,
    "noop": _noop,
    "approveAgent": _approve_agent,
    "usdSend": _usd_send,
    "withdraw3": _withdraw,
}
# Real actions the simulator does not model: answered with an error, never guessed at.
UNSUPPORTED = frozenset(
    {
        "usdClassTransfer",
        "spotSend",
        "sendAsset",
        "subAccountTransfer",
        "vaultTransfer",
        "createSubAccount",
        "setReferrer",
        "approveBuilderFee",
        "tokenDelegate",
        "multiSig",
        "convertToMultiSigUser",
        "evmUserModify",
        "userDexAbstraction",
        "agentEnableDexAbstraction",
    }
)


def parse_action(raw: Any) -> ParsedAction:
    """Check an action's fields; raise ActionError for what Hyperliquid could not read."""
    if not isinstance(raw, Mapping):
        raise _reject("invalid type: expected an object at action")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise _reject("missing field `type` at action")
    parser = _PARSERS.get(kind)
    if parser is None:
        if kind in UNSUPPORTED:
            return ParsedAction(Unsupported(kind), dict(raw), False, None)
        raise _reject(f"unknown variant `{kind}`")
    request, canonical = parser(raw)
    user_signed = kind in USER_SIGNED_TYPES
    nonce_field: int | None = None
    if isinstance(request, ApproveAgent):
        nonce_field = request.nonce
    elif isinstance(request, UsdSend | Withdraw):
        nonce_field = request.time
    return ParsedAction(request, canonical, user_signed, nonce_field)

"""``POST /info`` request handling, shared by REST and WebSocket ``post``.

Pure functions of the world state: no I/O. Bad requests raise ``InfoError``
carrying the HTTP status and the plain-text body Hyperliquid's (axum) server
uses: 422 "Failed to deserialize the JSON body into the target type: ...".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hlgateway.simulator import wire
from hlgateway.simulator.accounts import Wallet
from hlgateway.simulator.market import aggregate_book
from hlgateway.simulator.subscriptions import ADDRESS
from hlgateway.simulator.world import SimWorld

DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
MAX_RESPONSE_ROWS = 2000
_CLOID = re.compile(r"0x[0-9a-fA-F]{32}")


class InfoError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reject(detail: str) -> InfoError:
    return InfoError(422, f"{DESERIALIZE_ERROR}: {detail}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _user(body: dict[str, Any]) -> str:
    if "user" not in body:
        raise _reject("missing field `user`")
    user = body["user"]
    if not isinstance(user, str) or not ADDRESS.fullmatch(user):
        raise _reject("invalid value for field `user`")
    return user.lower()


def _main_dex(body: dict[str, Any]) -> None:
    # Only the main perp dex ("") exists here; builder dexes are not simulated.
    if body.get("dex") not in (None, ""):
        raise _reject("unknown dex")


def _optional_bool(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise _reject(f"invalid value for field `{name}`")


def _wallet(world: SimWorld, body: dict[str, Any]) -> Wallet | None:
    return world.accounts.wallet(_user(body))


def _meta(world: SimWorld, body: dict[str, Any]) -> Any:
    _main_dex(body)
    return wire.meta(world.market.coins)


def _spot_meta(world: SimWorld, body: dict[str, Any]) -> Any:
    return wire.spot_meta()


def _perp_dexs(world: SimWorld, body: dict[str, Any]) -> Any:
    return [None]  # the main dex is listed as null


def _all_mids(world: SimWorld, body: dict[str, Any]) -> Any:
    _main_dex(body)
    return wire.mids(world.market.mids())


def _l2_book(world: SimWorld, body: dict[str, Any]) -> Any:
    coin = body.get("coin")
    if not isinstance(coin, str):
        raise _reject("missing field `coin`")
    n_sig_figs = body.get("nSigFigs")
    mantissa = body.get("mantissa")
    if n_sig_figs is not None and not (_is_int(n_sig_figs) and 2 <= n_sig_figs <= 5):
        raise _reject("invalid value for field `nSigFigs`")
    if mantissa is not None and not (_is_int(mantissa) and mantissa in (1, 2, 5)):
        raise _reject("invalid value for field `mantissa`")
    if world.market.spec(coin) is None:
        return None
    return wire.l2_book(aggregate_book(world.book(coin), n_sig_figs, mantissa))


def _meta_and_asset_ctxs(world: SimWorld, body: dict[str, Any]) -> Any:
    _main_dex(body)
    coins = world.market.coins
    return wire.meta_and_asset_ctxs(coins, [world.market.ctx(spec.name) for spec in coins])


def _clearinghouse_state(world: SimWorld, body: dict[str, Any]) -> Any:
    user = _user(body)
    _main_dex(body)
    return wire.clearinghouse_state(world.accounts.account_view(user, world.now_ms))


def _open_orders(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _main_dex(body)
    orders = [] if wallet is None else wallet.open_orders()
    return [wire.open_order(u) for u in reversed(orders)]  # newest first


def _frontend_open_orders(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _main_dex(body)
    orders = [] if wallet is None else wallet.open_orders()
    return [wire.frontend_order(u) for u in reversed(orders)]


def _user_fills(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _optional_bool(body, "aggregateByTime")
    fills = [] if wallet is None else wallet.fills()
    return [wire.fill(f) for f in reversed(fills[-MAX_RESPONSE_ROWS:])]  # newest first


def _user_fills_by_time(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _optional_bool(body, "aggregateByTime")
    start = body.get("startTime")
    end = body.get("endTime")
    if not isinstance(start, int) or isinstance(start, bool):
        raise _reject("missing field `startTime`")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
        raise _reject("invalid value for field `endTime`")
    fills = [] if wallet is None else wallet.fills()
    selected = [f for f in fills if f.time >= start and (end is None or f.time <= end)]
    return [wire.fill(f) for f in selected[:MAX_RESPONSE_ROWS]]  # oldest first, for paging


def _order_status(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    oid = body.get("oid")
    if isinstance(oid, str) and _CLOID.fullmatch(oid):
        key: int | str = oid.lower()
    elif isinstance(oid, int) and not isinstance(oid, bool) and oid >= 0:
        key = oid
    else:
        raise _reject("invalid value for field `oid`")
    update = None if wallet is None else wallet.find_order(key)
    if update is None:
        return {"status": "unknownOid"}
    return {"status": "order", "order": wire.order_with_status(update)}


def _historical_orders(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    orders = [] if wallet is None else wallet.latest_orders()
    recent = orders[-MAX_RESPONSE_ROWS:]
    return [wire.order_with_status(u) for u in reversed(recent)]  # newest first


_HANDLERS: dict[str, Callable[[SimWorld, dict[str, Any]], Any]] = {
    "meta": _meta,
    "spotMeta": _spot_meta,
    "perpDexs": _perp_dexs,
    "allMids": _all_mids,
    "l2Book": _l2_book,
    "metaAndAssetCtxs": _meta_and_asset_ctxs,
    "clearinghouseState": _clearinghouse_state,
    "openOrders": _open_orders,
    "frontendOpenOrders": _frontend_open_orders,
    "userFills": _user_fills,
    "userFillsByTime": _user_fills_by_time,
    "orderStatus": _order_status,
    "historicalOrders": _historical_orders,
}
SUPPORTED_TYPES = tuple(_HANDLERS)


def handle_info(world: SimWorld, body: Any) -> Any:
    """Answer one info request body; raise ``InfoError`` for malformed ones."""
    if not isinstance(body, dict):
        raise _reject("invalid type: expected an object")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise _reject("missing field `type`")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise _reject(f"unknown variant `{kind}`")
    return handler(world, body)

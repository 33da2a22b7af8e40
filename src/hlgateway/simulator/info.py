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
from hlgateway.simulator.candles import INTERVALS, MAX_CANDLES
from hlgateway.simulator.market import aggregate_book
from hlgateway.simulator.subscriptions import ADDRESS
from hlgateway.simulator.world import SimWorld

DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
MAX_RESPONSE_ROWS = 2000
MAX_TWAP_FILLS = 2000  # userTwapSliceFills: "at most 2000 most recent"
_CLOID = re.compile(r"0x[0-9a-fA-F]{32}")
AGENT_VALID_UNTIL = 4_102_444_800_000  # approvals here do not expire (2100-01-01)


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


def _dex(world: SimWorld, body: dict[str, Any]) -> str:
    """The perp dex a request names: ``""`` (the main one) or a listed builder dex."""
    dex = body.get("dex")
    if dex in (None, ""):
        return ""
    if not isinstance(dex, str) or world.listing.dex(dex) is None:
        raise _reject("unknown dex")
    return dex


def _time_range(body: dict[str, Any]) -> tuple[int, int | None]:
    start = body.get("startTime")
    end = body.get("endTime")
    if not isinstance(start, int) or isinstance(start, bool):
        raise _reject("missing field `startTime`")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
        raise _reject("invalid value for field `endTime`")
    return start, end


def _optional_bool(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise _reject(f"invalid value for field `{name}`")


def _wallet(world: SimWorld, body: dict[str, Any]) -> Wallet | None:
    return world.accounts.wallet(_user(body))


def _meta(world: SimWorld, body: dict[str, Any]) -> Any:
    return wire.meta(world.listing.perps_of(_dex(world, body)))


def _spot_meta(world: SimWorld, body: dict[str, Any]) -> Any:
    return wire.spot_meta(world.listing)


def _spot_meta_and_asset_ctxs(world: SimWorld, body: dict[str, Any]) -> Any:
    market = world.market
    ctxs = (wire.spot_asset_ctx(pair, market.spot_ctx(pair.coin)) for pair in world.listing.pairs)
    return wire.spot_meta_and_asset_ctxs(world.listing, ctxs)


def _perp_dexs(world: SimWorld, body: dict[str, Any]) -> Any:
    return wire.perp_dexs(world.listing)


def mids_of(world: SimWorld, dex: str) -> dict[str, str]:
    """``allMids`` of one perp dex: the main one's holds every spot pair too."""
    listing = world.listing
    coins = listing.main_mids_coins() if dex == "" else [s.name for s in listing.perps_of(dex)]
    market = world.market
    return wire.mids({coin: market.mid(coin) for coin in coins})


def _all_mids(world: SimWorld, body: dict[str, Any]) -> Any:
    return mids_of(world, _dex(world, body))


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
    coins = world.listing.perps_of(_dex(world, body))
    return wire.meta_and_asset_ctxs(coins, [world.market.ctx(spec.name) for spec in coins])


def _clearinghouse_state(world: SimWorld, body: dict[str, Any]) -> Any:
    user = _user(body)
    dex = _dex(world, body)
    return wire.clearinghouse_state(world.accounts.account_view(user, world.now_ms, dex))


def _spot_clearinghouse_state(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    holds = None if wallet is None else world.matcher.spot_holds(wallet)
    return wire.spot_clearinghouse_state(world.listing, wallet, holds)


def _orders_on(world: SimWorld, body: dict[str, Any]) -> list[Any]:
    wallet = _wallet(world, body)
    dex = _dex(world, body)
    orders = [] if wallet is None else wallet.open_orders()
    # Spot orders are listed with the main dex's, as on Hyperliquid.
    return [u for u in reversed(orders) if world.listing.dex_of(u.coin) == dex]  # newest first


def _open_orders(world: SimWorld, body: dict[str, Any]) -> Any:
    return [wire.open_order(u) for u in _orders_on(world, body)]


def _frontend_open_orders(world: SimWorld, body: dict[str, Any]) -> Any:
    return [wire.frontend_order(u) for u in _orders_on(world, body)]


def _candle_snapshot(world: SimWorld, body: dict[str, Any]) -> Any:
    req = body.get("req")
    if not isinstance(req, dict):
        raise _reject("missing field `req`")
    coin, interval = req.get("coin"), req.get("interval")
    if not isinstance(coin, str):
        raise _reject("missing field `coin`")
    if not isinstance(interval, str) or interval not in INTERVALS:
        raise _reject("invalid value for field `interval`")
    start, end = _time_range(req)
    candles = world.candles
    if not candles.knows(coin):
        return []
    upto = world.now_ms if end is None else end
    return [wire.candle(c) for c in candles.history(coin, interval, start, upto, MAX_CANDLES)]


def _user_funding(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    start, end = _time_range(body)
    rows = [] if wallet is None else wallet.fundings()
    selected = [p for p in rows if p.time >= start and (end is None or p.time <= end)]
    return [wire.rest_funding(p) for p in selected[:MAX_RESPONSE_ROWS]]  # oldest first


def _user_non_funding_ledger_updates(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    start, end = _time_range(body)
    rows = [] if wallet is None else wallet.ledger_updates()
    selected = [u for u in rows if u.time >= start and (end is None or u.time <= end)]
    return [wire.ledger_update(u) for u in selected[:MAX_RESPONSE_ROWS]]  # oldest first


def _user_fills(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _optional_bool(body, "aggregateByTime")
    fills = [] if wallet is None else wallet.fills()
    return [wire.fill(f) for f in reversed(fills[-MAX_RESPONSE_ROWS:])]  # newest first


def _user_fills_by_time(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    _optional_bool(body, "aggregateByTime")
    start, end = _time_range(body)
    fills = [] if wallet is None else wallet.fills()
    selected = [f for f in fills if f.time >= start and (end is None or f.time <= end)]
    return [wire.fill(f) for f in selected[:MAX_RESPONSE_ROWS]]  # oldest first, for paging


def _user_twap_slice_fills(world: SimWorld, body: dict[str, Any]) -> Any:
    wallet = _wallet(world, body)
    fills = [] if wallet is None else wallet.twap_fills
    return [wire.twap_slice_fill(f) for f in reversed(fills[-MAX_TWAP_FILLS:])]  # newest first


def _twap_history(world: SimWorld, body: dict[str, Any]) -> Any:
    return [wire.twap_history(t) for t in world.matcher.twaps_of(_user(body))]


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


def _user_role(world: SimWorld, body: dict[str, Any]) -> Any:
    """What an address is: an approved agent (and whose), an account, or unknown."""
    user = _user(body)
    owner = world.exchange.owner_of(user)
    if owner is not None:
        return {"role": "agent", "data": {"user": owner}}
    return {"role": "user" if world.accounts.wallet(user) is not None else "missing"}


def _extra_agents(world: SimWorld, body: dict[str, Any]) -> Any:
    """The account's named API wallets (the unnamed one is not listed, as on Hyperliquid)."""
    agents = world.exchange.agents_of(_user(body))
    return [
        {"name": name, "address": agent, "validUntil": AGENT_VALID_UNTIL}
        for agent, name in sorted(agents.items())
        if name
    ]


_HANDLERS: dict[str, Callable[[SimWorld, dict[str, Any]], Any]] = {
    "meta": _meta,
    "spotMeta": _spot_meta,
    "spotMetaAndAssetCtxs": _spot_meta_and_asset_ctxs,
    "perpDexs": _perp_dexs,
    "allMids": _all_mids,
    "l2Book": _l2_book,
    "candleSnapshot": _candle_snapshot,
    "metaAndAssetCtxs": _meta_and_asset_ctxs,
    "clearinghouseState": _clearinghouse_state,
    "spotClearinghouseState": _spot_clearinghouse_state,
    "userFunding": _user_funding,
    "userNonFundingLedgerUpdates": _user_non_funding_ledger_updates,
    "openOrders": _open_orders,
    "frontendOpenOrders": _frontend_open_orders,
    "userFills": _user_fills,
    "userFillsByTime": _user_fills_by_time,
    "orderStatus": _order_status,
    "userTwapSliceFills": _user_twap_slice_fills,
    "twapHistory": _twap_history,
    "historicalOrders": _historical_orders,
    "userRole": _user_role,
    "extraAgents": _extra_agents,
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

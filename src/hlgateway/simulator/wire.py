"""Hyperliquid's JSON shapes, built from the model's exact values.

Numbers that Hyperliquid sends as strings are strings here too; ids, times,
counts and leverage stay JSON numbers, as on the live API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from hlgateway.simulator.accounts import AccountView, Fill, OrderUpdate, PositionView, Wallet
from hlgateway.simulator.candles import Candle
from hlgateway.simulator.cashflows import FUNDING_HASH, FundingPayment, LedgerUpdate
from hlgateway.simulator.listing import Listing, PerpDex, SpotPair, SpotToken
from hlgateway.simulator.market import AssetCtx, Book, CoinSpec, Level, SpotAssetCtx, Trade
from hlgateway.simulator.twap import Twap

Json = dict[str, Any]


def num(value: Decimal) -> str:
    """Plain decimal text like Hyperliquid's: no exponent, no trailing zeros, ``.0`` kept."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    else:
        text += ".0"
    return "0.0" if text == "-0.0" else text


def frame(channel: str, data: Any) -> Json:
    return {"channel": channel, "data": data}


_encode = msgspec.json.Encoder().encode


def dump(value: Any) -> str:
    """JSON text, as sent on the WebSocket."""
    return _encode(value).decode()


def error_text(text: str) -> str:
    """An `error` channel frame, as JSON text."""
    return dump(frame("error", text))


# -- market data -------------------------------------------------------------
def level(lvl: Level) -> Json:
    return {"px": num(lvl.px), "sz": num(lvl.sz), "n": lvl.n}


def l2_book(book: Book) -> Json:
    return {
        "coin": book.coin,
        "time": book.time,
        "levels": [[level(lvl) for lvl in book.bids], [level(lvl) for lvl in book.asks]],
    }


def bbo(book: Book) -> Json:
    best_bid = level(book.bids[0]) if book.bids else None
    best_ask = level(book.asks[0]) if book.asks else None
    return {"coin": book.coin, "time": book.time, "bbo": [best_bid, best_ask]}


def trade(t: Trade) -> Json:
    return {
        "coin": t.coin,
        "side": t.side,
        "px": num(t.px),
        "sz": num(t.sz),
        "time": t.time,
        "hash": t.hash,
        "tid": t.tid,
        "users": [t.users[0], t.users[1]],
    }


def mids(values: Mapping[str, Decimal]) -> dict[str, str]:
    return {coin: num(px) for coin, px in values.items()}


def asset_ctx(ctx: AssetCtx) -> Json:
    return {
        "funding": num(ctx.funding),
        "openInterest": num(ctx.open_interest),
        "prevDayPx": num(ctx.prev_day_px),
        "dayNtlVlm": num(ctx.day_ntl_vlm),
        "premium": num(ctx.premium),
        "oraclePx": num(ctx.oracle_px),
        "markPx": num(ctx.mark_px),
        "midPx": num(ctx.mid_px),
        "impactPxs": [num(ctx.impact_pxs[0]), num(ctx.impact_pxs[1])],
        "dayBaseVlm": num(ctx.day_base_vlm),
    }


def active_asset_ctx(coin: str, ctx: AssetCtx) -> Json:
    return {"coin": coin, "ctx": asset_ctx(ctx)}


def spot_asset_ctx(pair: SpotPair, ctx: SpotAssetCtx) -> Json:
    supply = pair.base.total_supply
    return {
        "prevDayPx": num(ctx.prev_day_px),
        "dayNtlVlm": num(ctx.day_ntl_vlm),
        "markPx": num(ctx.mark_px),
        "midPx": num(ctx.mid_px),
        "circulatingSupply": num(supply),
        "coin": pair.coin,
        "totalSupply": num(supply),
        "dayBaseVlm": num(ctx.day_base_vlm),
    }


def active_spot_asset_ctx(pair: SpotPair, ctx: SpotAssetCtx) -> Json:
    """The ``activeSpotAssetCtx`` channel's data (an ``activeAssetCtx`` subscription of a pair)."""
    return {"coin": pair.coin, "ctx": spot_asset_ctx(pair, ctx)}


def candle(c: Candle) -> Json:
    return {
        "t": c.t,
        "T": c.T,
        "s": c.coin,
        "i": c.interval,
        "o": num(c.o),
        "c": num(c.c),
        "h": num(c.h),
        "l": num(c.l),
        "v": num(c.v),
        "n": c.n,
    }


def meta(coins: Sequence[CoinSpec], collateral: int = 0) -> Json:
    # One single-tier margin table per distinct max leverage, keyed by that leverage.
    tables = sorted({spec.max_leverage for spec in coins}, reverse=True)
    return {
        "universe": [
            {
                "szDecimals": spec.sz_decimals,
                "name": spec.name,
                "maxLeverage": spec.max_leverage,
                "marginTableId": spec.max_leverage,
            }
            for spec in coins
        ],
        "marginTables": [
            [
                lev,
                {
                    "description": "",
                    "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}],
                },
            ]
            for lev in tables
        ],
        "collateralToken": collateral,
    }


def meta_and_asset_ctxs(coins: Sequence[CoinSpec], ctxs: Iterable[AssetCtx]) -> list[Any]:
    return [meta(coins), [asset_ctx(ctx) for ctx in ctxs]]


def _token(token: SpotToken) -> Json:
    return {
        "name": token.name,
        "szDecimals": token.sz_decimals,
        "weiDecimals": token.wei_decimals,
        "index": token.index,
        "tokenId": token.token_id,
        "isCanonical": token.index < 2,
        "evmContract": None,
        "fullName": token.full_name,
        "deployerTradingFeeShare": "0.0",
    }


def spot_meta(listing: Listing) -> Json:
    return {
        "universe": [
            {
                "tokens": [pair.base.index, pair.quote.index],
                "name": pair.coin,
                "index": pair.index,
                "isCanonical": pair.canonical,
            }
            for pair in listing.pairs
        ],
        "tokens": [_token(token) for token in listing.tokens],
    }


def spot_meta_and_asset_ctxs(listing: Listing, ctxs: Iterable[Json]) -> list[Any]:
    return [spot_meta(listing), list(ctxs)]


def perp_dex(dex: PerpDex) -> Json:
    return {
        "name": dex.name,
        "fullName": dex.full_name,
        "deployer": dex.deployer,
        "oracleUpdater": None,
        "feeRecipient": None,
        "assetToStreamingOiCap": [],
        "subDeployers": [],
        "deployerFeeScale": "1.0",
        "lastDeployerFeeScaleChangeTime": "1970-01-01T00:00:00",
        "assetToFundingMultiplier": [],
    }


def perp_dexs(listing: Listing) -> list[Json | None]:
    """``perpDexs``: the main dex as null, then every builder dex."""
    return [None, *(perp_dex(dex) for dex in listing.dexes)]


# -- accounts ----------------------------------------------------------------
def fill(f: Fill) -> Json:
    row: Json = {
        "coin": f.coin,
        "px": num(f.px),
        "sz": num(f.sz),
        "side": f.side,
        "time": f.time,
        "startPosition": num(f.start_position),
        "dir": f.dir,
        "closedPnl": num(f.closed_pnl),
        "hash": f.hash,
        "oid": f.oid,
        "crossed": f.crossed,
        "fee": num(f.fee),
        "tid": f.tid,
        "feeToken": f.fee_token,
        "twapId": f.twap_id,
    }
    # Present only when they apply, as on Hyperliquid.
    if f.builder_fee is not None:
        row["builderFee"] = num(f.builder_fee)
    if f.liquidation is not None:
        row["liquidation"] = {
            k: num(v) if isinstance(v, Decimal) else v for k, v in f.liquidation.items()
        }
    return row


def ws_funding(p: FundingPayment) -> Json:
    """A ``userFundings`` entry (the WebSocket's: no hash)."""
    return {
        "time": p.time,
        "coin": p.coin,
        "usdc": num(p.usdc),
        "szi": num(p.szi),
        "fundingRate": num(p.funding_rate),
        "nSamples": p.n_samples,
    }


def rest_funding(p: FundingPayment) -> Json:
    """A REST ``userFunding`` entry: ``{time, hash, delta}`` with a ``funding`` delta."""
    delta = {"type": "funding", **ws_funding(p)}
    del delta["time"]
    return {"time": p.time, "hash": FUNDING_HASH, "delta": delta}


def ledger_update(u: LedgerUpdate) -> Json:
    return {"time": u.time, "hash": u.hash, "delta": _plain(dict(u.delta))}


def _plain(value: Any) -> Any:
    """Decimals as Hyperliquid's number strings, all the way down."""
    if isinstance(value, Decimal):
        return num(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ws_order(u: OrderUpdate) -> Json:
    return {
        "coin": u.coin,
        "side": u.side,
        "limitPx": num(u.limit_px),
        "sz": num(u.sz),
        "oid": u.oid,
        "timestamp": u.timestamp,
        "origSz": num(u.orig_sz),
        "cloid": u.cloid,
    }


def order_update(u: OrderUpdate) -> Json:
    return {"order": ws_order(u), "status": u.status, "statusTimestamp": u.status_timestamp}


def open_order(u: OrderUpdate) -> Json:
    """REST ``openOrders`` row: ``cloid`` appears only when the order has one."""
    row = ws_order(u)
    if u.cloid is None:
        del row["cloid"]
    return row


def order_type(u: OrderUpdate) -> str:
    """Hyperliquid's orderType text: Limit, or Stop/Take Profit Market/Limit."""
    if u.trigger_px is None:
        return "Limit"
    above = u.trigger_condition.startswith("Price above")
    take_profit = above != (u.side == "B")  # tp sells fire above, tp buys below
    return f"{'Take Profit' if take_profit else 'Stop'} {'Market' if u.is_market else 'Limit'}"


def frontend_order(u: OrderUpdate) -> Json:
    return {
        "coin": u.coin,
        "side": u.side,
        "limitPx": num(u.limit_px),
        "sz": num(u.sz),
        "oid": u.oid,
        "timestamp": u.timestamp,
        "triggerCondition": u.trigger_condition,
        "isTrigger": u.trigger_px is not None,
        "triggerPx": "0.0" if u.trigger_px is None else num(u.trigger_px),
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": u.reduce_only,
        "orderType": order_type(u),
        "origSz": num(u.orig_sz),
        "tif": u.tif,
        "cloid": u.cloid,
    }


def ledger_order(u: OrderUpdate) -> Json:
    """One orderUpdates transition as the control API's ledger lists it (flat)."""
    return {
        "oid": u.oid,
        "coin": u.coin,
        "side": u.side,
        "status": u.status,
        "sz": num(u.sz),
        "origSz": num(u.orig_sz),
        "limitPx": num(u.limit_px),
        "statusTimestamp": u.status_timestamp,
        "timestamp": u.timestamp,
        "cloid": u.cloid,
    }


def twap_slice_fill(f: Fill) -> Json:
    """``userTwapSliceFills`` row."""
    return {"fill": fill(f), "twapId": f.twap_id}


def twap_history(t: Twap) -> Json:
    """``twapHistory`` row: the TWAP's state and status."""
    return {
        "time": (t.timestamp if t.ended_ms is None else t.ended_ms) // 1000,
        "state": {
            "coin": t.coin,
            "user": t.user,
            "side": "B" if t.is_buy else "A",
            "sz": num(t.sz),
            "executedSz": num(t.executed_sz),
            "executedNtl": num(t.executed_ntl),
            "minutes": t.minutes,
            "reduceOnly": t.reduce_only,
            "randomize": t.randomize,
            "timestamp": t.timestamp,
        },
        "status": {"status": t.status},
        "twapId": t.twap_id,
    }


def order_with_status(u: OrderUpdate) -> Json:
    """``historicalOrders`` row and ``orderStatus`` inner object."""
    return {"order": frontend_order(u), "status": u.status, "statusTimestamp": u.status_timestamp}


def _position(p: PositionView) -> Json:
    return {
        "type": "oneWay",
        "position": {
            "coin": p.coin,
            "szi": num(p.szi),
            "leverage": {"type": "cross", "value": p.leverage}
            if p.isolated_raw_usd is None
            else {"type": "isolated", "value": p.leverage, "rawUsd": num(p.isolated_raw_usd)},
            "entryPx": num(p.entry_px),
            "positionValue": num(p.position_value),
            "unrealizedPnl": num(p.unrealized_pnl),
            "returnOnEquity": num(p.return_on_equity),
            "liquidationPx": None if p.liquidation_px is None else num(p.liquidation_px),
            "marginUsed": num(p.margin_used),
            "maxLeverage": p.max_leverage,
            "cumFunding": {
                "allTime": num(p.cum_funding_all_time),
                "sinceOpen": num(p.cum_funding_since_open),
                "sinceChange": num(p.cum_funding_since_change),
            },
        },
    }


def clearinghouse_state(view: AccountView) -> Json:
    summary = {
        "accountValue": num(view.account_value),
        "totalNtlPos": num(view.total_ntl_pos),
        "totalRawUsd": num(view.total_raw_usd),
        "totalMarginUsed": num(view.total_margin_used),
    }
    return {
        "marginSummary": summary,
        "crossMarginSummary": dict(summary),
        "crossMaintenanceMarginUsed": num(view.cross_maintenance_margin_used),
        "withdrawable": num(view.withdrawable),
        "assetPositions": [_position(p) for p in view.positions],
        "time": view.time,
    }


def ws_clearinghouse_state(user: str, view: AccountView, dex: str = "") -> Json:
    return {"dex": dex, "user": user, "clearinghouseState": clearinghouse_state(view)}


def spot_clearinghouse_state(
    listing: Listing, wallet: Wallet | None, holds: Mapping[str, Decimal] | None = None
) -> Json:
    """``spotClearinghouseState``: token balances (the wallet's USDC is shared with perps
    here), and what its resting spot orders hold of each (`holds`, by token name)."""
    if wallet is None:
        return {"balances": []}
    held = holds or {}
    balances = [
        {
            "coin": "USDC",
            "token": 0,
            "hold": num(held.get("USDC", Decimal(0))),
            "total": num(wallet.balance),
            "entryNtl": "0.0",
        }
    ]
    for pair in listing.pairs:
        holding = wallet.spot.get(pair.coin)
        if holding is None or holding.balance == 0:
            continue
        balances.append(
            {
                "coin": pair.base.name,
                "token": pair.base.index,
                "hold": num(held.get(pair.base.name, Decimal(0))),
                "total": num(holding.balance),
                "entryNtl": num((holding.balance * holding.avg_cost).quantize(Decimal("1e-6"))),
            }
        )
    return {"balances": balances}

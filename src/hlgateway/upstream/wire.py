"""Hyperliquid's wire shapes, parsed with msgspec; strings become numbers here.

Nothing downstream of this module sees Hyperliquid's string-encoded numbers or
its field names: it gets the normalized events below, which are (or hold) the
payload shapes the gateway sends (`hlgateway.protocol.payloads`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from hlgateway.protocol import payloads


class Envelope(msgspec.Struct):
    channel: str
    data: msgspec.Raw = msgspec.Raw(b"null")


class _Level(msgspec.Struct):
    px: str
    sz: str
    n: int = 0


class _L2Book(msgspec.Struct):
    coin: str
    time: int
    levels: list[list[_Level]]


class _AllMids(msgspec.Struct):
    mids: dict[str, str]


class _Trade(msgspec.Struct):
    coin: str
    side: str
    px: str
    sz: str
    time: int
    tid: int
    hash: str = ""


class _Fill(msgspec.Struct):
    coin: str
    px: str
    sz: str
    side: str
    time: int
    oid: int
    tid: int
    fee: str = "0"
    closedPnl: str = "0"
    hash: str = ""
    dir: str = ""
    feeToken: str = "USDC"
    crossed: bool = False


class _UserFills(msgspec.Struct):
    user: str
    fills: list[_Fill]
    isSnapshot: bool = False


class _BasicOrder(msgspec.Struct):
    coin: str
    side: str
    limitPx: str
    sz: str
    oid: int
    timestamp: int
    origSz: str
    cloid: str | None = None


class _OrderUpdate(msgspec.Struct):
    order: _BasicOrder
    status: str
    statusTimestamp: int


class _Leverage(msgspec.Struct):
    type: str = "cross"
    value: float = 0


class _Position(msgspec.Struct):
    coin: str
    szi: str
    positionValue: str = "0"
    unrealizedPnl: str = "0"
    marginUsed: str = "0"
    entryPx: str | None = None
    liquidationPx: str | None = None
    leverage: _Leverage = msgspec.field(default_factory=_Leverage)


class _AssetPosition(msgspec.Struct):
    position: _Position
    type: str = "oneWay"


class _MarginSummary(msgspec.Struct):
    accountValue: str
    totalMarginUsed: str = "0"
    totalNtlPos: str = "0"


class _ClearinghouseState(msgspec.Struct):
    marginSummary: _MarginSummary
    withdrawable: str = "0"
    assetPositions: list[_AssetPosition] = []
    time: int = 0


class _ClearinghouseMsg(msgspec.Struct):
    user: str
    clearinghouseState: _ClearinghouseState
    dex: str = ""


class _SubscriptionResponse(msgspec.Struct):
    method: str
    subscription: dict[str, Any]


class _AssetCtx(msgspec.Struct):
    prevDayPx: str | None = None
    dayNtlVlm: str | None = None
    markPx: str | None = None


class _Asset(msgspec.Struct):
    name: str
    szDecimals: int = 0
    isDelisted: bool = False


class _Meta(msgspec.Struct):
    universe: list[_Asset]


# -- normalized events ----------------------------------------------------
# Trade, Fill, Order and Account are what the gateway sends its clients as is:
# the payload shapes (hlgateway.protocol.payloads), under the upstream edge's names.
Trade = payloads.Trade
Fill = payloads.Fill
Order = payloads.Order
Position = payloads.AccountPosition
Account = payloads.AccountState


class Mids(msgspec.Struct, frozen=True):
    mids: dict[str, float]


class Book(msgspec.Struct, frozen=True):
    symbol: str
    time: int
    bids: list[tuple[float, float]]  # best first (descending)
    asks: list[tuple[float, float]]  # best first (ascending)


class Trades(msgspec.Struct, frozen=True):
    symbol: str
    trades: list[Trade]


class Fills(msgspec.Struct, frozen=True):
    wallet: str
    is_snapshot: bool
    fills: list[Fill]


class OrderUpdates(msgspec.Struct, frozen=True):
    orders: list[Order]  # wallet filled in from the link that carried them


class Ack(msgspec.Struct, frozen=True):
    method: str
    subscription: dict[str, Any]


class Pong(msgspec.Struct, frozen=True):
    pass


class UpstreamError(msgspec.Struct, frozen=True):
    text: str


class PostAnswer(msgspec.Struct, frozen=True):
    """Hyperliquid's answer to a WebSocket `post`: its `type` and `payload` untouched."""

    id: int
    kind: str  # action | info | error
    payload: bytes  # JSON, as it came


class _PostResponse(msgspec.Struct):
    type: str
    payload: msgspec.Raw


class _Post(msgspec.Struct):
    id: int
    response: _PostResponse


class ActionAnswer(msgspec.Struct, frozen=True):
    """`/exchange`'s answer: `status` and, untouched, `response`."""

    status: str
    response: msgspec.Raw


_action_answer = msgspec.json.Decoder(ActionAnswer)


def parse_action_answer(body: bytes) -> ActionAnswer:
    """An `/exchange` answer (REST body, or a post answer's payload)."""
    try:
        return _action_answer.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None


class AssetContext(msgspec.Struct, frozen=True):
    prev_day_px: float | None
    day_ntl_vlm: float
    mark_px: float | None


Event = (
    Mids | Book | Trades | Fills | OrderUpdates | Account | Ack | Pong | UpstreamError | PostAnswer
)

_envelope = msgspec.json.Decoder(Envelope)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "allMids": msgspec.json.Decoder(_AllMids),
    "l2Book": msgspec.json.Decoder(_L2Book),
    "trades": msgspec.json.Decoder(list[_Trade]),
    "userFills": msgspec.json.Decoder(_UserFills),
    "orderUpdates": msgspec.json.Decoder(list[_OrderUpdate]),
    "clearinghouseState": msgspec.json.Decoder(_ClearinghouseMsg),
    "subscriptionResponse": msgspec.json.Decoder(_SubscriptionResponse),
    "error": msgspec.json.Decoder(str),
    "post": msgspec.json.Decoder(_Post),
}


class WireError(ValueError):
    """A frame that is JSON but not in a shape we know."""


def _side(code: str) -> str:
    return "buy" if code == "B" else "sell"


def _num(text: str | None) -> float | None:
    return None if text is None else float(text)


def parse(frame: str | bytes) -> Event | None:
    """Parse one upstream text frame. None: a channel we do not use.

    Raises WireError for malformed frames (non-JSON included); the caller skips them.
    """
    try:
        env = _envelope.decode(frame)
        if env.channel == "pong":
            return Pong()
        decoder = _decoders.get(env.channel)
        if decoder is None:
            return None
        payload = decoder.decode(env.data)
        return _normalize(env.channel, payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError) as exc:
        raise WireError(str(exc)) from None


def _normalize(channel: str, p: Any) -> Event:
    if channel == "allMids":
        return Mids({coin: float(px) for coin, px in p.mids.items()})
    if channel == "l2Book":
        bids, asks = p.levels[0], p.levels[1]
        return Book(
            p.coin,
            p.time,
            [(float(lv.px), float(lv.sz)) for lv in bids],
            [(float(lv.px), float(lv.sz)) for lv in asks],
        )
    if channel == "trades":
        trades = [Trade(t.tid, float(t.px), float(t.sz), _side(t.side), t.time) for t in p]
        return Trades(p[0].coin if p else "", trades)
    if channel == "userFills":
        wallet = p.user.lower()
        return Fills(wallet, p.isSnapshot, [_fill(f, wallet) for f in p.fills])
    if channel == "orderUpdates":
        return OrderUpdates([_order(u) for u in p])
    if channel == "clearinghouseState":
        return _account(p)
    if channel == "subscriptionResponse":
        return Ack(p.method, p.subscription)
    if channel == "post":
        return PostAnswer(p.id, p.response.type, bytes(p.response.payload))
    return UpstreamError(str(p))


def _fill(f: _Fill, wallet: str) -> Fill:
    return Fill(
        id=f.tid,
        orderId=f.oid,
        symbol=f.coin,
        side=_side(f.side),
        price=float(f.px),
        size=float(f.sz),
        fee=float(f.fee),
        closedPnl=float(f.closedPnl),
        timestamp=f.time,
        wallet=wallet,
        feeToken=f.feeToken,
        direction=f.dir,
        hash=f.hash,
    )


def _order(u: _OrderUpdate) -> Order:
    o = u.order
    amount, remaining = float(o.origSz), float(o.sz)
    return Order(
        id=o.oid,
        symbol=o.coin,
        side=_side(o.side),
        amount=amount,
        remaining=remaining,
        filled=round(amount - remaining, 12),
        price=float(o.limitPx),
        status=u.status,
        timestamp=u.statusTimestamp,
        wallet="",
        cloid=o.cloid,
    )


def _account(m: _ClearinghouseMsg) -> Account:
    s = m.clearinghouseState
    positions = [
        Position(
            symbol=ap.position.coin,
            size=float(ap.position.szi),
            entryPrice=_num(ap.position.entryPx),
            positionValue=float(ap.position.positionValue),
            unrealizedPnl=float(ap.position.unrealizedPnl),
            leverage=float(ap.position.leverage.value),
            liquidationPrice=_num(ap.position.liquidationPx),
            marginUsed=float(ap.position.marginUsed),
        )
        for ap in s.assetPositions
    ]
    return Account(
        wallet=m.user.lower(),
        accountValue=float(s.marginSummary.accountValue),
        marginUsed=float(s.marginSummary.totalMarginUsed),
        withdrawable=float(s.withdrawable),
        positions=positions,
        timestamp=s.time,
    )


_meta_and_ctxs = msgspec.json.Decoder(tuple[_Meta, list[_AssetCtx]])


def parse_meta_and_ctxs(body: bytes) -> tuple[list[str], dict[str, AssetContext]]:
    """REST `metaAndAssetCtxs`: the listed perp names and each one's 24 h context."""
    try:
        meta, ctxs = _meta_and_ctxs.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None
    names: list[str] = []
    contexts: dict[str, AssetContext] = {}
    for asset, ctx in zip(meta.universe, ctxs, strict=False):
        if asset.isDelisted:
            continue
        names.append(asset.name)
        contexts[asset.name] = AssetContext(
            prev_day_px=_num(ctx.prevDayPx),
            day_ntl_vlm=float(ctx.dayNtlVlm or 0),
            mark_px=_num(ctx.markPx),
        )
    return names, contexts


# -- REST /info responses ---------------------------------------------------


class HistoricalOrder(msgspec.Struct, frozen=True):
    """An order's latest state from REST `historicalOrders`."""

    order: Order  # status, remaining and statusTimestamp as of now
    created_at: int  # the order's own timestamp


class _HistoricalEntry(msgspec.Struct):
    order: _BasicOrder
    status: str
    statusTimestamp: int


_rest_fills = msgspec.json.Decoder(list[_Fill])
_rest_orders = msgspec.json.Decoder(list[_HistoricalEntry])
_rest_account = msgspec.json.Decoder(_ClearinghouseState)


def parse_rest_fills(body: bytes, user: str) -> list[Fill]:
    try:
        wallet = user.lower()
        return [_fill(f, wallet) for f in _rest_fills.decode(body)]
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(str(exc)) from None


def parse_historical_orders(body: bytes, user: str) -> list[HistoricalOrder]:
    try:
        wallet = user.lower()
        out: list[HistoricalOrder] = []
        for entry in _rest_orders.decode(body):
            update = _OrderUpdate(entry.order, entry.status, entry.statusTimestamp)
            order = msgspec.structs.replace(_order(update), wallet=wallet)
            out.append(HistoricalOrder(order, entry.order.timestamp))
        return out
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(str(exc)) from None


def parse_rest_account(body: bytes, user: str) -> Account:
    try:
        state = _rest_account.decode(body)
        return _account(_ClearinghouseMsg(user, state))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(str(exc)) from None

"""Hyperliquid's wire shapes, parsed with msgspec; strings become numbers here.

Nothing downstream of this module sees Hyperliquid's string-encoded numbers or
its field names: it gets the normalized events below, which are (or hold) the
payload shapes the gateway sends (`hlgateway.protocol.payloads`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from msgspec import UNSET

from hlgateway.protocol import payloads
from hlgateway.protocol.markets import SPOT, Market, perp


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
    dex: str = ""


class _Bbo(msgspec.Struct):
    coin: str
    time: int
    bbo: tuple[_Level | None, _Level | None]


class _Candle(msgspec.Struct):
    t: int
    T: int
    s: str
    i: str
    o: str
    c: str
    h: str
    l: str  # noqa: E741 (Hyperliquid's name)
    v: str
    n: int = 0


class _PerpCtx(msgspec.Struct):
    dayNtlVlm: str = "0"
    prevDayPx: str | None = None
    markPx: str | None = None
    midPx: str | None = None
    funding: str | None = None
    openInterest: str | None = None
    oraclePx: str | None = None
    premium: str | None = None
    circulatingSupply: str | None = None  # spot contexts


class _ActiveCtx(msgspec.Struct):
    coin: str
    ctx: _PerpCtx


class _WsFunding(msgspec.Struct):
    time: int
    coin: str
    usdc: str
    szi: str = "0"
    fundingRate: str = "0"


class _UserFundings(msgspec.Struct):
    user: str
    fundings: list[_WsFunding]
    isSnapshot: bool = False


class _LedgerEntry(msgspec.Struct):
    time: int
    delta: dict[str, Any]
    hash: str | None = None


class _UserLedger(msgspec.Struct):
    user: str
    nonFundingLedgerUpdates: list[_LedgerEntry]
    isSnapshot: bool = False


class _Trade(msgspec.Struct):
    coin: str
    side: str
    px: str
    sz: str
    time: int
    tid: int
    hash: str = ""


class _FillLiquidation(msgspec.Struct):
    markPx: str
    method: str
    liquidatedUser: str | None = None


class _Fill(msgspec.Struct):
    coin: str
    px: str
    sz: str
    side: str
    time: int
    oid: int
    tid: int | None = None  # fills recorded before Hyperliquid added it (2023) have none
    fee: str = "0"
    closedPnl: str = "0"
    hash: str = ""
    dir: str = ""
    feeToken: str = "USDC"
    crossed: bool = False
    startPosition: str = "0"
    builderFee: str | None = None
    twapId: int | None = None
    liquidation: _FillLiquidation | None = None


# Every field of Hyperliquid's fill that `Fill` carries; any other is kept under `raw`.
FILL_FIELDS = frozenset(_Fill.__struct_fields__)


class _UserFills(msgspec.Struct):
    user: str
    fills: list[dict[str, Any]]
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
    coin: str | None = None  # spot contexts name their pair


class _Asset(msgspec.Struct):
    name: str
    szDecimals: int = 0
    maxLeverage: int | None = None
    isDelisted: bool = False


class _Meta(msgspec.Struct):
    universe: list[_Asset]


class _SpotToken(msgspec.Struct):
    name: str
    index: int
    szDecimals: int = 0


class _SpotPair(msgspec.Struct):
    name: str
    tokens: list[int]
    index: int


class _SpotMeta(msgspec.Struct):
    universe: list[_SpotPair]
    tokens: list[_SpotToken]


class _PerpDex(msgspec.Struct):
    name: str


# -- normalized events ----------------------------------------------------
# Trade, Fill, Order and Account are what the gateway sends its clients as is:
# the payload shapes (hlgateway.protocol.payloads), under the upstream edge's names.
Trade = payloads.Trade
Fill = payloads.Fill
Order = payloads.Order
Position = payloads.AccountPosition
Account = payloads.AccountState
Candle = payloads.Candle
LedgerEvent = payloads.LedgerEvent


class Mids(msgspec.Struct, frozen=True):
    mids: dict[str, float]  # by Hyperliquid coin name (BTC, @107, xyz:XYZ100)
    dex: str = ""  # the perp dex whose allMids this is ("" also holds every spot pair)


class BestBidOffer(msgspec.Struct, frozen=True):
    coin: str
    time: int
    bid: tuple[float, float] | None
    ask: tuple[float, float] | None


class CandleUpdate(msgspec.Struct, frozen=True):
    coin: str
    interval: str
    candle: payloads.Candle


class ContextUpdate(msgspec.Struct, frozen=True):
    """An `activeAssetCtx` / `activeSpotAssetCtx` frame; `spot` says which one."""

    coin: str
    spot: bool
    mark_px: float | None
    mid_px: float | None
    day_ntl_vlm: float
    prev_day_px: float | None
    oracle_px: float | None = None
    funding: float | None = None
    premium: float | None = None
    open_interest: float | None = None
    circulating_supply: float | None = None


class LedgerEntries(msgspec.Struct, frozen=True):
    """A wallet's `userFundings` or `userNonFundingLedgerUpdates` frame, normalized."""

    wallet: str
    stream: str  # userFundings | userNonFundingLedgerUpdates
    is_snapshot: bool
    events: list[payloads.LedgerEvent]


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
    Mids
    | Book
    | Trades
    | Fills
    | OrderUpdates
    | Account
    | BestBidOffer
    | CandleUpdate
    | ContextUpdate
    | LedgerEntries
    | Ack
    | Pong
    | UpstreamError
    | PostAnswer
)

_envelope = msgspec.json.Decoder(Envelope)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "allMids": msgspec.json.Decoder(_AllMids),
    "l2Book": msgspec.json.Decoder(_L2Book),
    "trades": msgspec.json.Decoder(list[_Trade]),
    "userFills": msgspec.json.Decoder(_UserFills),
    "orderUpdates": msgspec.json.Decoder(list[_OrderUpdate]),
    "clearinghouseState": msgspec.json.Decoder(_ClearinghouseMsg),
    "bbo": msgspec.json.Decoder(_Bbo),
    "candle": msgspec.json.Decoder(_Candle),
    "activeAssetCtx": msgspec.json.Decoder(_ActiveCtx),
    "activeSpotAssetCtx": msgspec.json.Decoder(_ActiveCtx),
    "userFundings": msgspec.json.Decoder(_UserFundings),
    "userNonFundingLedgerUpdates": msgspec.json.Decoder(_UserLedger),
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


def is_spot_coin(coin: str) -> bool:
    """Hyperliquid names a spot pair `@N` (or, for a few canonical ones, `BASE/QUOTE`)."""
    return coin.startswith("@") or "/" in coin


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
        return Mids({coin: float(px) for coin, px in p.mids.items()}, p.dex)
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
        return Fills(wallet, p.isSnapshot, [_fill_of(f, wallet) for f in p.fills])
    if channel == "bbo":
        bid, ask = p.bbo
        return BestBidOffer(p.coin, p.time, _level(bid), _level(ask))
    if channel == "candle":
        return CandleUpdate(p.s, p.i, _candle(p))
    if channel in ("activeAssetCtx", "activeSpotAssetCtx"):
        return _context(p, channel == "activeSpotAssetCtx")
    if channel == "userFundings":
        wallet = p.user.lower()
        events = [
            funding_event(f.time, f.coin, f.usdc, f.szi, f.fundingRate, wallet) for f in p.fundings
        ]
        return LedgerEntries(wallet, channel, p.isSnapshot, events)
    if channel == "userNonFundingLedgerUpdates":
        wallet = p.user.lower()
        events = [ledger_event(e.time, e.hash, e.delta, wallet) for e in p.nonFundingLedgerUpdates]
        return LedgerEntries(wallet, channel, p.isSnapshot, events)
    if channel == "orderUpdates":
        return OrderUpdates([_order(u) for u in p])
    if channel == "clearinghouseState":
        return _account(p)
    if channel == "subscriptionResponse":
        return Ack(p.method, p.subscription)
    if channel == "post":
        return PostAnswer(p.id, p.response.type, bytes(p.response.payload))
    return UpstreamError(str(p))


def _level(level: _Level | None) -> tuple[float, float] | None:
    return None if level is None else (float(level.px), float(level.sz))


def _candle(c: _Candle) -> payloads.Candle:
    return payloads.Candle(
        c.t, c.T, float(c.o), float(c.h), float(c.l), float(c.c), float(c.v), c.n
    )


def _context(p: _ActiveCtx, spot: bool) -> ContextUpdate:
    c = p.ctx
    return ContextUpdate(
        coin=p.coin,
        spot=spot,
        mark_px=_num(c.markPx),
        mid_px=_num(c.midPx),
        day_ntl_vlm=float(c.dayNtlVlm),
        prev_day_px=_num(c.prevDayPx),
        oracle_px=_num(c.oraclePx),
        funding=_num(c.funding),
        premium=_num(c.premium),
        open_interest=_num(c.openInterest),
        circulating_supply=_num(c.circulatingSupply),
    )


def _fill_of(row: dict[str, Any], wallet: str) -> Fill:
    """A fill from Hyperliquid's dict: every field it sends either modelled or under `raw`."""
    fill = _fill(msgspec.convert(row, _Fill), wallet)
    extra = {key: value for key, value in row.items() if key not in FILL_FIELDS}
    return msgspec.structs.replace(fill, raw=extra) if extra else fill


def derived_tid(f: _Fill) -> int:
    """A stable id for a fill without `tid` (recorded before Hyperliquid sent one):
    53 bits of a digest of what makes it unique, so JavaScript reads it exactly."""
    key = f"{f.hash}|{f.oid}|{f.time}|{f.px}|{f.sz}|{f.side}|{f.startPosition}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 11


def _fill(f: _Fill, wallet: str) -> Fill:
    liquidation = (
        payloads.FillLiquidation(
            float(f.liquidation.markPx),
            f.liquidation.method,
            f.liquidation.liquidatedUser.lower()
            if f.liquidation.liquidatedUser is not None
            else UNSET,
        )
        if f.liquidation is not None
        else UNSET
    )
    return Fill(
        id=f.tid if f.tid is not None else derived_tid(f),
        orderId=f.oid,
        symbol=f.coin,  # Hyperliquid's coin (@107): the feeds name it (HYPE/USDC)
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
        market=SPOT if is_spot_coin(f.coin) else "perp",
        startPosition=float(f.startPosition),
        crossed=f.crossed,
        builderFee=float(f.builderFee) if f.builderFee is not None else UNSET,
        twapId=f.twapId if f.twapId is not None else UNSET,
        liquidation=liquidation,
    )


# -- ledger events ----------------------------------------------------------
# Hyperliquid's delta types, by the kind the gateway names them.
LEDGER_KINDS: dict[str, str] = {
    "deposit": "deposit",
    "withdraw": "withdraw",
    "internalTransfer": "transfer",
    "subAccountTransfer": "transfer",
    "accountClassTransfer": "transfer",
    "perpDexClassTransfer": "transfer",
    "send": "transfer",
    "spotTransfer": "spot_transfer",
    "liquidation": "liquidation",
    "vaultCreate": "vault",
    "vaultDeposit": "vault",
    "vaultWithdraw": "vault",
    "vaultDistribution": "vault",
    "vaultLeaderCommission": "vault",
}
# A transaction hash that is no transaction's (system entries): not an identity.
_NO_HASH = frozenset({None, "", "0x" + "0" * 64})


def funding_event(
    time: int, coin: str, usdc: str, szi: str, rate: str, wallet: str
) -> payloads.LedgerEvent:
    """A funding payment. Its id is (symbol, time): Hyperliquid's WebSocket entries
    carry no hash, and a perp settles funding once per hour."""
    raw = {"type": "funding", "coin": coin, "usdc": usdc, "szi": szi, "fundingRate": rate}
    return payloads.LedgerEvent(
        id=f"funding:{coin}:{time}",
        kind="funding",
        time=time,
        amount=float(usdc),
        token="USDC",
        wallet=wallet,
        symbol=coin,
        rate=float(rate),
        size=float(szi),
        raw=raw,
    )


def ledger_event(
    time: int, tx_hash: str | None, delta: dict[str, Any], wallet: str
) -> payloads.LedgerEvent:
    """A non-funding ledger entry. Its id is Hyperliquid's (hash, type); an entry
    without a real hash is keyed by its time and a digest of its delta instead."""
    kind_name = str(delta.get("type", ""))
    if kind_name == "funding":  # REST userFunding entries come this way
        return funding_event(
            time,
            str(delta.get("coin", "")),
            str(delta.get("usdc", "0")),
            str(delta.get("szi", "0")),
            str(delta.get("fundingRate", "0")),
            wallet,
        )
    kind = LEDGER_KINDS.get(kind_name, "other")
    if tx_hash in _NO_HASH:
        digest = hashlib.sha256(msgspec.json.encode(delta, order="sorted")).hexdigest()[:16]
        item_id = f"{time}:{kind_name}:{digest}"
    else:
        item_id = f"{tx_hash}:{kind_name}"
    amount, token, counterparty = _movement(kind_name, delta, wallet)
    fee = _float(delta.get("fee"))
    fee_token = delta.get("feeToken")
    return payloads.LedgerEvent(
        id=item_id,
        kind=kind,
        time=time,
        amount=amount,
        token=token,
        wallet=wallet,
        hash=tx_hash if tx_hash not in _NO_HASH and tx_hash is not None else UNSET,
        fee=fee if fee is not None else UNSET,
        feeToken=fee_token if isinstance(fee_token, str) and fee_token else UNSET,
        counterparty=counterparty if counterparty is not None else UNSET,
        raw=delta,
    )


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _movement(kind: str, delta: dict[str, Any], wallet: str) -> tuple[float, str, str | None]:
    """(signed amount, token, counterparty) of a delta, from `wallet`'s side."""
    usdc = _float(delta.get("usdc"))
    amount = _float(delta.get("amount"))
    token = str(delta.get("token") or "USDC")
    sender = str(delta.get("user", "")).lower()
    destination = str(delta.get("destination", "")).lower()
    outgoing = sender == wallet
    other = destination if outgoing else (sender or None)
    if kind == "deposit":
        return usdc or 0.0, "USDC", None
    if kind == "withdraw":
        return -(usdc or 0.0), "USDC", None
    if kind in ("internalTransfer", "subAccountTransfer"):
        value = usdc or 0.0
        return (-value if outgoing else value), "USDC", other or None
    if kind in ("spotTransfer", "send"):
        value = amount or 0.0
        return (-value if outgoing else value), token, other or None
    if kind == "accountClassTransfer":
        # Between the wallet's own perp and spot balances: signed for the perp side.
        value = usdc or 0.0
        return (value if delta.get("toPerp") else -value), "USDC", None
    if kind == "liquidation":
        return _float(delta.get("liquidatedNtlPos")) or 0.0, "USDC", None
    if kind in ("vaultDeposit", "vaultCreate"):
        return -(usdc or 0.0), "USDC", delta.get("vault")
    if kind == "vaultWithdraw":
        return _float(delta.get("netWithdrawnUsd")) or 0.0, "USDC", delta.get("vault")
    if kind in ("vaultDistribution", "vaultLeaderCommission"):
        return usdc or 0.0, "USDC", delta.get("vault")
    if kind == "cStakingTransfer":
        value = amount or 0.0
        return (-value if delta.get("isDeposit") else value), token, None
    if kind == "deployGasAuction":
        return -(amount or 0.0), token, None
    if usdc is not None:
        return usdc, "USDC", None
    return amount or 0.0, token, None


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
_spot_meta_and_ctxs = msgspec.json.Decoder(tuple[_SpotMeta, list[_AssetCtx]])
_perp_dexs = msgspec.json.Decoder(list[_PerpDex | None])


SPOT_ASSETS = 10_000  # spot pair N is asset 10000 + N
DEX_ASSETS = 110_000  # builder dex k's perps from 110000 + 10000 k (the SDK's numbering)


class Listing(msgspec.Struct, frozen=True):
    """Part of the exchange's market list, from one REST answer: the markets, each
    one's 24 h context (by Hyperliquid coin name), and the names it delists."""

    markets: list[Market]
    contexts: dict[str, AssetContext]
    delisted: list[str] = []


def _asset_context(ctx: _AssetCtx) -> AssetContext:
    return AssetContext(
        prev_day_px=_num(ctx.prevDayPx),
        day_ntl_vlm=float(ctx.dayNtlVlm or 0),
        mark_px=_num(ctx.markPx),
    )


def parse_meta_and_ctxs(body: bytes, first_asset: int = 0) -> Listing:
    """REST `metaAndAssetCtxs` (of the main dex, or of a builder dex: its perps are
    named `dex:COIN`): the listed perps and each one's 24 h context. Asset numbers
    count from `first_asset` in universe order (delisted entries keep theirs)."""
    try:
        meta, ctxs = _meta_and_ctxs.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None
    markets: list[Market] = []
    contexts: dict[str, AssetContext] = {}
    delisted: list[str] = []
    for index, (asset, ctx) in enumerate(zip(meta.universe, ctxs, strict=False)):
        if asset.isDelisted:
            delisted.append(asset.name)
            continue
        markets.append(perp(asset.name, asset.szDecimals, asset.maxLeverage, first_asset + index))
        contexts[asset.name] = _asset_context(ctx)
    return Listing(markets, contexts, delisted)


def parse_spot_meta_and_ctxs(body: bytes) -> Listing:
    """REST `spotMetaAndAssetCtxs`: every spot pair, named `BASE/QUOTE` from its tokens
    (the first pair to take a name keeps it, as in Hyperliquid's SDK; a pair whose
    name is taken, or whose tokens are unknown, is named by its `@N`), with `@N`
    accepted as an alias. Contexts name their pair (`coin`); they are not in the
    universe's order."""
    try:
        meta, ctxs = _spot_meta_and_ctxs.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None
    tokens = {token.index: token for token in meta.tokens}
    taken: set[str] = set()
    markets: list[Market] = []
    for pair in meta.universe:
        base = tokens.get(pair.tokens[0]) if pair.tokens else None
        quote = tokens.get(pair.tokens[1]) if len(pair.tokens) > 1 else None
        symbol = pair.name
        if base is not None and quote is not None:
            name = f"{base.name}/{quote.name}"
            if name.upper() not in taken:
                symbol = name
        taken.add(symbol.upper())
        aliases = (pair.name,) if pair.name != symbol else ()
        size = base.szDecimals if base is not None else 0
        markets.append(
            Market(symbol, SPOT, pair.name, "", size, None, aliases, SPOT_ASSETS + pair.index)
        )
    contexts = {ctx.coin: _asset_context(ctx) for ctx in ctxs if ctx.coin is not None}
    return Listing(markets, contexts)


def parse_perp_dexs(body: bytes) -> list[str]:
    """REST `perpDexs`: the builder-deployed dexes' names (the main dex is null)."""
    try:
        return [dex.name for dex in _perp_dexs.decode(body) if dex is not None]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(str(exc)) from None


# -- REST /info responses ---------------------------------------------------


class HistoricalOrder(msgspec.Struct, frozen=True):
    """An order's latest state from REST `historicalOrders`."""

    order: Order  # status, remaining and statusTimestamp as of now
    created_at: int  # the order's own timestamp


class _HistoricalEntry(msgspec.Struct):
    order: _BasicOrder
    status: str
    statusTimestamp: int


_rest_fills = msgspec.json.Decoder(list[dict[str, Any]])
_rest_ledger = msgspec.json.Decoder(list[_LedgerEntry])
_rest_candles = msgspec.json.Decoder(list[_Candle])
_rest_orders = msgspec.json.Decoder(list[_HistoricalEntry])
_rest_account = msgspec.json.Decoder(_ClearinghouseState)


def parse_rest_fills(body: bytes, user: str) -> list[Fill]:
    try:
        wallet = user.lower()
        return [_fill_of(f, wallet) for f in _rest_fills.decode(body)]
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


def parse_rest_ledger(body: bytes, user: str) -> list[payloads.LedgerEvent]:
    """REST `userNonFundingLedgerUpdates` or `userFunding`: `{time, hash, delta}` rows."""
    try:
        wallet = user.lower()
        return [ledger_event(e.time, e.hash, e.delta, wallet) for e in _rest_ledger.decode(body)]
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(str(exc)) from None


def parse_candles(body: bytes) -> list[payloads.Candle]:
    """REST `candleSnapshot`: oldest first."""
    try:
        return [_candle(c) for c in _rest_candles.decode(body)]
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(str(exc)) from None

"""The `data` payload of every channel, defined once (msgspec Structs).

The gateway's feeds build these (the upstream edge normalizes Hyperliquid's
events into `Trade`, `Fill`, `Order`, `AccountState`), and the Python client
decodes the same types (`DataMessage.payload()`), so a field added or renamed
here changes both sides at once. Field order is the JSON key order on the wire.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType


class PriceQuote(msgspec.Struct, frozen=True):
    price: float
    change24h: float  # percent
    volume24h: float  # USD notional
    timestamp: int


PricesData = dict[str, PriceQuote]  # `prices`: exactly the requested symbols


class OrderBook(msgspec.Struct, frozen=True):
    symbol: str
    bids: list[tuple[float, float]]  # [price, size], best first (descending)
    asks: list[tuple[float, float]]  # best first (ascending)
    timestamp: int


class Trade(msgspec.Struct, frozen=True):
    id: int
    price: float
    size: float
    side: str  # buy | sell (the aggressor)
    timestamp: int


class TradesData(msgspec.Struct, frozen=True):
    symbol: str
    trades: list[Trade]


class Order(msgspec.Struct, frozen=True):
    id: int
    symbol: str
    side: str
    amount: float  # original size
    remaining: float
    filled: float
    price: float
    status: str  # Hyperliquid's status: open, filled, canceled, rejected, ...
    timestamp: int
    wallet: str
    cloid: str | None = None


class OrderUpdate(msgspec.Struct, frozen=True):
    action: str  # created | updated | cancelled | filled
    order: Order


class FillLiquidation(msgspec.Struct, frozen=True):
    """A fill that was part of a liquidation: the mark price then, and how
    (Hyperliquid's `markPx`, named `markPrice` as everywhere on the wire)."""

    markPrice: float
    method: str  # market | backstop
    liquidatedUser: str | UnsetType = UNSET


class Fill(msgspec.Struct, frozen=True):
    id: int  # Hyperliquid's tid: unique per wallet
    orderId: int
    symbol: str  # canonical: BTC, HYPE/USDC, xyz:XYZ100
    side: str
    price: float
    size: float
    fee: float  # Hyperliquid's fee, in feeToken; a builder's fee is apart (builderFee)
    closedPnl: float
    timestamp: int
    wallet: str
    feeToken: str = "USDC"
    direction: str = ""  # Hyperliquid's `dir`: Open Long, Close Short, Buy, Sell, ...
    hash: str = ""
    market: str = "perp"  # perp | spot
    startPosition: float = 0.0  # position (spot: balance) before the fill
    crossed: bool = False  # taker
    # Present only when Hyperliquid sends them (UNSET fields are not encoded).
    builderFee: float | UnsetType = UNSET
    twapId: int | UnsetType = UNSET
    liquidation: FillLiquidation | UnsetType = UNSET
    raw: dict[str, Any] | UnsetType = UNSET  # fields of Hyperliquid's we do not model


class FillsData(msgspec.Struct, frozen=True):
    fills: list[Fill]


class AccountPosition(msgspec.Struct, frozen=True):
    symbol: str
    size: float  # signed: negative is short
    entryPrice: float | None
    positionValue: float
    unrealizedPnl: float
    leverage: float
    liquidationPrice: float | None
    marginUsed: float


class AccountState(msgspec.Struct, frozen=True):
    wallet: str
    accountValue: float
    marginUsed: float
    withdrawable: float
    positions: list[AccountPosition]
    timestamp: int


class Candle(msgspec.Struct, frozen=True):
    t: int  # open time, ms
    T: int  # close time, ms (inclusive)
    open: float
    high: float
    low: float
    close: float
    volume: float  # in the base asset
    trades: int


class CandlesData(msgspec.Struct, frozen=True):
    """`candles`: the last 500 on subscribe, then each update of the current one."""

    symbol: str
    interval: str
    candles: list[Candle]


class Bbo(msgspec.Struct, frozen=True):
    symbol: str
    bid: tuple[float, float] | None  # [price, size]
    ask: tuple[float, float] | None
    timestamp: int


class AssetContext(msgspec.Struct, frozen=True):
    """`asset_context`: a perp's fields, or the ones Hyperliquid gives for a spot pair
    (markPrice, midPrice, dayVolume, prevDayPrice, circulatingSupply)."""

    symbol: str
    markPrice: float | None
    midPrice: float | None
    dayVolume: float  # USD notional, 24 h
    prevDayPrice: float | None
    timestamp: int
    oraclePrice: float | UnsetType = UNSET
    funding: float | UnsetType = UNSET  # hourly rate
    premium: float | UnsetType | None = UNSET
    openInterest: float | UnsetType = UNSET  # in the base asset
    circulatingSupply: float | UnsetType = UNSET  # spot


class LedgerEvent(msgspec.Struct, frozen=True):
    """One entry of a wallet's ledger: a deposit, withdrawal, transfer, liquidation,
    vault movement, funding payment or anything else Hyperliquid books.

    `amount` is signed from the wallet's side (positive: in, negative: out), except
    for a liquidation, where it is the notional of the positions liquidated.
    """

    id: str  # unique per wallet: Hyperliquid's hash and kind (funding: symbol and time)
    kind: str  # deposit withdraw transfer spot_transfer liquidation vault funding other
    time: int
    amount: float
    token: str
    wallet: str
    hash: str | UnsetType = UNSET
    fee: float | UnsetType = UNSET
    feeToken: str | UnsetType = UNSET
    symbol: str | UnsetType = UNSET  # funding: the perp
    rate: float | UnsetType = UNSET  # funding rate
    size: float | UnsetType = UNSET  # funding: the position then (signed)
    counterparty: str | UnsetType = UNSET  # transfers: the other wallet
    raw: dict[str, Any] = msgspec.field(default_factory=dict)  # Hyperliquid's delta as is


class LedgerData(msgspec.Struct, frozen=True):
    events: list[LedgerEvent]


class SystemNotice(msgspec.Struct, frozen=True):
    event: str
    message: str


Payload = (
    PricesData
    | OrderBook
    | TradesData
    | OrderUpdate
    | FillsData
    | AccountState
    | SystemNotice
    | CandlesData
    | Bbo
    | AssetContext
    | LedgerData
)

# channel -> its payload type (rooms carry free-form data)
PAYLOAD_TYPES: Final[dict[str, Any]] = {
    "prices": PricesData,
    "orderbook": OrderBook,
    "trades": TradesData,
    "user_orders": OrderUpdate,
    "user_fills": FillsData,
    "account_updates": AccountState,
    "system": SystemNotice,
    "candles": CandlesData,
    "bbo": Bbo,
    "asset_context": AssetContext,
    "user_ledger": LedgerData,
}

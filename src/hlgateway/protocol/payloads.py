"""The `data` payload of every channel, defined once (msgspec Structs).

The gateway's feeds build these (the upstream edge normalizes Hyperliquid's
events into `Trade`, `Fill`, `Order`, `AccountState`), and the Python client
decodes the same types (`DataMessage.payload()`), so a field added or renamed
here changes both sides at once. Field order is the JSON key order on the wire.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec


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


class Fill(msgspec.Struct, frozen=True):
    id: int  # Hyperliquid's tid: unique per wallet
    orderId: int
    symbol: str
    side: str
    price: float
    size: float
    fee: float
    closedPnl: float
    timestamp: int
    wallet: str
    feeToken: str = "USDC"
    direction: str = ""
    hash: str = ""


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


class SystemNotice(msgspec.Struct, frozen=True):
    event: str
    message: str


Payload = (
    PricesData | OrderBook | TradesData | OrderUpdate | FillsData | AccountState | SystemNotice
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
}

"""Channels: their params, canonical form, and who may read them.

A subscription is identified by a `Topic`: the channel plus its canonical
params (keys sorted, defaults filled, symbols resolved and de-duplicated). For
user channels the topic also carries the wallets it reads, resolved from the
subscriber's token when the params name none; those are part of the identity
(two tokens with different wallets must not share a feed) but are not echoed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from hlgateway.auth import WALLET_RE, Principal
from hlgateway.directory import UserDirectory
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import Markets

PRICES = "prices"
ORDERBOOK = "orderbook"
TRADES = "trades"
USER_ORDERS = "user_orders"
USER_FILLS = "user_fills"
ACCOUNT_UPDATES = "account_updates"
CANDLES = "candles"
BBO = "bbo"
ASSET_CONTEXT = "asset_context"
USER_LEDGER = "user_ledger"
SYSTEM = "system"
ROOM = "room"

MARKET_CHANNELS = frozenset({PRICES, ORDERBOOK, TRADES, CANDLES, BBO, ASSET_CONTEXT})
USER_CHANNELS = frozenset({USER_ORDERS, USER_FILLS, ACCOUNT_UPDATES, USER_LEDGER})
CHANNELS = MARKET_CHANNELS | USER_CHANNELS | {SYSTEM}
# Channels whose messages are full snapshots: the latest one is all a new
# subscriber needs, so the hub keeps it and sends it on subscribe. (A candles
# update holds the current candle only; what a new subscriber gets is the last
# 500: the broker keeps that apart, see Publisher.publish_update.)
SNAPSHOT_CHANNELS = frozenset({PRICES, ORDERBOOK, ACCOUNT_UPDATES, CANDLES, BBO, ASSET_CONTEXT})
# Channels whose every message matters: positioned (offset, epoch) and kept in
# history, so that a client coming back with `since` misses none.
LOSSLESS_CHANNELS = frozenset({TRADES, USER_ORDERS, USER_FILLS, USER_LEDGER, ROOM})
# Hyperliquid's candle intervals.
INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip

DEFAULT_DEPTH = 10
MAX_DEPTH = 50
MAX_THROTTLE_MS = 60_000
MAX_SYMBOLS = 500
ROOM_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

_encoder = msgspec.json.Encoder(order="sorted")


class PricesParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbols: list[str] | None = None
    throttle: int | None = None


class OrderbookParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str
    depth: int = DEFAULT_DEPTH
    throttle: int | None = None


class TradesParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str


class SymbolParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str


class CandlesParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str
    interval: str


class UserParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    userId: str | int
    wallet: str | None = None


class NoParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


@dataclass(frozen=True, slots=True)
class Topic:
    """One subscription key. Equality is channel + canonical params (+ wallets)."""

    channel: str
    params_json: bytes
    wallets: tuple[str, ...] = ()
    # Derived from the above; kept for the feeds and replies, not part of identity.
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    symbols: tuple[str, ...] | None = field(default=None, compare=False, hash=False)
    depth: int = field(default=DEFAULT_DEPTH, compare=False, hash=False)
    throttle_ms: int = field(default=0, compare=False, hash=False)

    @property
    def lossless(self) -> bool:
        return self.channel in LOSSLESS_CHANNELS

    @property
    def snapshot(self) -> bool:
        return self.channel in SNAPSHOT_CHANNELS

    @property
    def interval(self) -> str:
        """A `candles` topic's interval (read from the params: a topic rebuilt from its
        spec on another node has them, broker/topics.py)."""
        return str(self.params.get("interval", ""))

    @property
    def symbol(self) -> str:
        assert self.symbols, "single-symbol channel"
        return self.symbols[0]


def _make(channel: str, params: dict[str, Any], **kw: Any) -> Topic:
    return Topic(channel=channel, params_json=_encoder.encode(params), params=params, **kw)


def room_topic(room: str) -> Topic:
    if not ROOM_RE.match(room):
        raise ProtocolError(
            ErrorCode.INVALID_PARAMS, "Room names are 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return _make(ROOM, {"room": room})


SYSTEM_TOPIC = _make(SYSTEM, {})


class MarketsNotLoaded(ProtocolError):
    """Transient: the exchange's market list has not been loaded yet."""

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.UPSTREAM_UNAVAILABLE, "Market list not loaded yet; try again shortly"
        )


class Catalog:
    """Turns (channel, params, principal) into a Topic, or a coded error."""

    def __init__(self, markets: Markets, directory: UserDirectory | None = None) -> None:
        self.markets = markets
        self.directory = directory if directory is not None else UserDirectory()

    def resolve(self, channel: str, params: dict[str, Any] | None, principal: Principal) -> Topic:
        if channel not in CHANNELS:
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"Unknown channel: {channel[:64]!r}")
        raw = params or {}
        if channel == PRICES:
            return self._prices(_convert(raw, PricesParams))
        if channel == ORDERBOOK:
            return self._orderbook(_convert(raw, OrderbookParams))
        if channel == TRADES:
            p = _convert(raw, TradesParams)
            symbol = self._symbol(p.symbol)
            return _make(TRADES, {"symbol": symbol}, symbols=(symbol,))
        if channel in (BBO, ASSET_CONTEXT):
            symbol = self._symbol(_convert(raw, SymbolParams).symbol)
            return _make(channel, {"symbol": symbol}, symbols=(symbol,))
        if channel == CANDLES:
            c = _convert(raw, CandlesParams)
            if c.interval not in INTERVALS:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS, f"interval must be one of {' '.join(INTERVALS)}"
                )
            symbol = self._symbol(c.symbol)
            params = {"interval": c.interval, "symbol": symbol}
            return _make(CANDLES, params, symbols=(symbol,))
        if channel in USER_CHANNELS:
            return self._user(channel, _convert(raw, UserParams), principal)
        _convert(raw, NoParams)
        return SYSTEM_TOPIC

    def _prices(self, p: PricesParams) -> Topic:
        throttle = _throttle(p.throttle)
        canonical: dict[str, Any] = {}
        symbols: tuple[str, ...] | None = None
        if p.symbols:
            if len(p.symbols) > MAX_SYMBOLS:
                raise ProtocolError(ErrorCode.INVALID_PARAMS, f"At most {MAX_SYMBOLS} symbols")
            symbols = tuple(sorted({self._symbol(s) for s in p.symbols}))
            canonical["symbols"] = list(symbols)
        else:
            self._require_markets()
        if throttle:
            canonical["throttle"] = throttle
        return _make(PRICES, canonical, symbols=symbols, throttle_ms=throttle)

    def _orderbook(self, p: OrderbookParams) -> Topic:
        if not 1 <= p.depth <= MAX_DEPTH:
            raise ProtocolError(ErrorCode.INVALID_PARAMS, f"depth must be 1..{MAX_DEPTH}")
        throttle = _throttle(p.throttle)
        symbol = self._symbol(p.symbol)
        canonical: dict[str, Any] = {"depth": p.depth, "symbol": symbol}
        if throttle:
            canonical["throttle"] = throttle
        return _make(ORDERBOOK, canonical, symbols=(symbol,), depth=p.depth, throttle_ms=throttle)

    def _user(self, channel: str, p: UserParams, principal: Principal) -> Topic:
        user_id = str(p.userId)
        wallet = p.wallet.lower() if p.wallet is not None else None
        if wallet is not None and not WALLET_RE.match(wallet):
            raise ProtocolError(ErrorCode.INVALID_PARAMS, "wallet must be 0x followed by 40 hex")
        own = user_id == principal.user_id
        if not own and not principal.is_admin:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"Not allowed to read {channel} of this user")
        if wallet is not None:
            if own and not principal.is_admin and not principal.owns_wallet(wallet):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"Not allowed to read {channel} of this wallet"
                )
            wallets: tuple[str, ...] = (wallet,)
        elif own:
            wallets = tuple(sorted(principal.wallets))
            if not wallets:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"Token grants no wallet to read {channel} with"
                )
        else:
            # An admin reading a user by id alone (the seed's way): every wallet
            # the gateway knows for that user, from tokens and the directory.
            known = self.directory.wallets_of(user_id)
            if not known:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS, f"Unknown user {user_id[:64]!r}: name a wallet"
                )
            wallets = known
        canonical: dict[str, Any] = {"userId": user_id}
        if wallet is not None:
            canonical["wallet"] = wallet
        return _make(channel, canonical, wallets=wallets)

    def _symbol(self, symbol: str) -> str:
        self._require_markets()
        resolved = self.markets.resolve(symbol)
        if resolved is None:
            delisted = self.markets.delisted(symbol)
            if delisted is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_PARAMS, f"Symbol delisted by the exchange: {delisted!r}"
                )
            raise ProtocolError(ErrorCode.INVALID_PARAMS, f"Unknown symbol: {symbol[:32]!r}")
        return resolved

    def _require_markets(self) -> None:
        if not self.markets.loaded:
            raise MarketsNotLoaded()


def _throttle(value: int | None) -> int:
    if value is None:
        return 0
    if not 0 <= value <= MAX_THROTTLE_MS:
        raise ProtocolError(ErrorCode.INVALID_PARAMS, f"throttle must be 0..{MAX_THROTTLE_MS} ms")
    return value


T = TypeVar("T")


def _convert(raw: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_PARAMS, f"Invalid params: {exc}") from None

"""The markets the exchange lists: the gateway accepts only these.

Hyperliquid has three kinds, and the gateway names each one way (its
canonical symbol), accepting a few other spellings:
- a perp of the main dex by its coin: ``BTC``;
- a spot pair as ``BASE/QUOTE`` (``HYPE/USDC``); Hyperliquid's own ``@N``
  (``@107``, the pair's index in ``spotMeta``) is an alias;
- a perp of a builder-deployed (HIP-3) dex as ``dex:COIN``, Hyperliquid's name.

Each market also knows its *coin*: the name Hyperliquid's API uses for it in
subscriptions and data (``BTC``, ``@107``, ``PURR/USDC``, ``xyz:XYZ100``).
Look-ups are case-insensitive; the canonical spelling is the exchange's own
(``kPEPE`` exists, ``KPEPE`` is only a way to ask for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

PERP = "perp"
SPOT = "spot"
DEX_PERP = "dex-perp"


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str  # canonical: BTC, HYPE/USDC, xyz:XYZ100
    kind: str  # perp | spot | dex-perp
    coin: str  # Hyperliquid's name: BTC, @107, PURR/USDC, xyz:XYZ100
    dex: str = ""  # the builder dex of a dex-perp; "" otherwise
    sz_decimals: int = 0
    max_leverage: int | None = None  # perps only
    aliases: tuple[str, ...] = ()  # other names accepted for it (@107)
    # Hyperliquid's asset number (what an order names): a main-dex perp's index in
    # `meta`, 10000 + a pair's index, 110000 + 10000 k + index for builder dex k.
    asset: int | None = None

    def describe(self) -> dict[str, object]:
        """The market as `GET /api/markets` lists it."""
        return {
            "symbol": self.symbol,
            "kind": self.kind,
            "dex": self.dex,
            "szDecimals": self.sz_decimals,
            "maxLeverage": self.max_leverage,
            "aliases": list(self.aliases),
        }


def perp(
    name: str, sz_decimals: int = 0, max_leverage: int | None = None, asset: int | None = None
) -> Market:
    """A perp of the main dex, or of a builder dex when its name is ``dex:COIN``."""
    dex, sep, _ = name.partition(":")
    if sep:
        return Market(name, DEX_PERP, name, dex, sz_decimals, max_leverage, (), asset)
    return Market(name, PERP, name, "", sz_decimals, max_leverage, (), asset)


class Markets:
    """Listed markets, looked up case-insensitively by symbol, alias or coin."""

    def __init__(self, markets: Iterable[Market | str] = ()) -> None:
        self._markets: dict[str, Market] = {}  # by symbol
        self._exact: dict[str, Market] = {}  # symbol, aliases and coin, as spelled
        self._folded: dict[str, Market] = {}  # the same, upper-cased
        self._by_coin: dict[str, Market] = {}
        self._delisted: dict[str, str] = {}  # upper-cased name -> canonical symbol
        self._names: tuple[str, ...] = ()
        self._loaded = False
        self._ready: asyncio.Event | None = None  # made by the first waiter
        if markets:
            self.load(markets)

    def load(self, markets: Iterable[Market | str], delisted: Iterable[str] = ()) -> None:
        """Replace the list. Markets that were listed and are gone are delisted now
        (refused by name with a clear message); so are those named in `delisted`."""
        listed = [perp(m) if isinstance(m, str) else m for m in markets]
        previous = self._markets
        self._markets = {m.symbol: m for m in listed}
        self._names = tuple(self._markets)
        self._by_coin = {m.coin: m for m in listed}
        exact: dict[str, Market] = {}
        folded: dict[str, Market] = {}
        for market in listed:
            for name in (market.symbol, *market.aliases, market.coin):
                exact.setdefault(name, market)
                folded.setdefault(name.upper(), market)
        self._exact, self._folded = exact, folded
        gone = [m for symbol, m in previous.items() if symbol not in self._markets]
        for market in gone:
            for name in (market.symbol, *market.aliases):
                self._delisted[name.upper()] = market.symbol
        for name in delisted:
            self._delisted[name.upper()] = name
        for name in list(self._delisted):
            if name in folded:
                del self._delisted[name]  # listed again
        self._loaded = True
        if self._ready is not None:
            self._ready.set()

    async def wait_loaded(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for the list; True once it is loaded."""
        if not self._loaded and timeout > 0:
            if self._ready is None:
                self._ready = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                pass
        return self._loaded

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def names(self) -> tuple[str, ...]:
        """Every listed market's canonical symbol."""
        return self._names

    def all(self) -> tuple[Market, ...]:
        return tuple(self._markets.values())

    def lookup(self, name: str) -> Market | None:
        """The market a client's spelling names (symbol, alias or coin, any case)."""
        return self._exact.get(name) or self._folded.get(name.upper())

    def resolve(self, name: str) -> str | None:
        """The canonical symbol for a client's spelling, or None if not listed."""
        market = self.lookup(name)
        return market.symbol if market is not None else None

    def delisted(self, name: str) -> str | None:
        """The symbol `name` was listed as, if the exchange has delisted it."""
        return self._delisted.get(name.upper())

    def get(self, symbol: str) -> Market | None:
        """A market by its canonical symbol."""
        return self._markets.get(symbol)

    def by_coin(self, coin: str) -> Market | None:
        """A market by Hyperliquid's name for it (``@107``, ``BTC``)."""
        return self._by_coin.get(coin)

    def coin_of(self, symbol: str) -> str:
        """Hyperliquid's name for a canonical symbol (the symbol itself if unknown)."""
        market = self._markets.get(symbol)
        return market.coin if market is not None else symbol

    def symbol_of(self, coin: str) -> str:
        """The canonical symbol of a Hyperliquid coin name (the coin itself if unknown)."""
        market = self._by_coin.get(coin)
        return market.symbol if market is not None else coin

    def dexes(self) -> tuple[str, ...]:
        """The builder dexes whose perps are listed."""
        return tuple(sorted({m.dex for m in self._markets.values() if m.dex}))

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol in self._markets

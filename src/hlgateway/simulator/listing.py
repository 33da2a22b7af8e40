"""What the simulated exchange lists: perps, spot tokens and pairs, builder dexes.

Hyperliquid names its markets three ways, and so does the simulator:
- a perp of the main dex by its coin (``BTC``);
- a spot pair by ``@N`` (its index in ``spotMeta``), except the canonical
  ``PURR/USDC``, which keeps its name; clients resolve ``@N`` to
  ``BASE/QUOTE`` through the pair's tokens;
- a perp of a builder-deployed (HIP-3) dex by ``dex:COIN``.

Every market trades in the one ``MarketModel`` (books, trades, candles); the
listing says which kind each one is and how ``meta``, ``spotMeta`` and
``perpDexs`` describe it. Token indices and reference prices follow mainnet's
(``spotMetaAndAssetCtxs`` of November 2025: HYPE is token 150 and pair @107).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from hlgateway.simulator.market import DEFAULT_COINS, CoinSpec
from hlgateway.simulator.rng import derive_address


@dataclass(frozen=True)
class SpotToken:
    name: str
    index: int
    sz_decimals: int
    wei_decimals: int
    full_name: str | None
    total_supply: Decimal

    @property
    def token_id(self) -> str:
        return f"0x{self.index:032x}"


@dataclass(frozen=True)
class SpotPair:
    index: int
    base: SpotToken
    quote: SpotToken
    ref_px: float
    day_volume_usd: float

    @property
    def canonical(self) -> bool:
        """Only the first pair keeps its ``BASE/QUOTE`` name on the wire."""
        return self.index == 0

    @property
    def coin(self) -> str:
        """The name Hyperliquid's API uses for the pair: ``@N`` or ``PURR/USDC``."""
        return f"{self.base.name}/{self.quote.name}" if self.canonical else f"@{self.index}"

    @property
    def display_name(self) -> str:
        return f"{self.base.name}/{self.quote.name}"

    def spec(self) -> CoinSpec:
        return CoinSpec(
            self.coin, self.base.sz_decimals, 0, self.ref_px, self.day_volume_usd, kind="spot"
        )


@dataclass(frozen=True)
class PerpDex:
    """A builder-deployed perp dex: its perps are named ``<name>:<COIN>``."""

    name: str
    full_name: str
    perps: tuple[CoinSpec, ...]
    deployer: str = field(default="")

    def __post_init__(self) -> None:
        for spec in self.perps:
            if not spec.name.startswith(f"{self.name}:"):
                raise ValueError(f"a perp of dex {self.name!r} must be named {self.name}:COIN")


USDC = SpotToken("USDC", 0, 8, 8, None, Decimal("1000000000"))
PURR = SpotToken("PURR", 1, 0, 5, None, Decimal("595985207.98445"))
HYPE = SpotToken("HYPE", 150, 2, 8, "Hyperliquid", Decimal("999516427.35515"))
UBTC = SpotToken("UBTC", 197, 5, 10, "Unit Bitcoin", Decimal("20999999.99861"))

DEFAULT_TOKENS: tuple[SpotToken, ...] = (USDC, PURR, HYPE, UBTC)
DEFAULT_PAIRS: tuple[SpotPair, ...] = (
    SpotPair(0, PURR, USDC, 0.113, 8.0e5),
    SpotPair(107, HYPE, USDC, 41.33, 7.4e7),
    SpotPair(142, UBTC, USDC, 103_900.0, 5.6e7),
)
DEFAULT_DEXES: tuple[PerpDex, ...] = (
    PerpDex(
        "xyz",
        "XYZ",
        (
            CoinSpec("xyz:XYZ100", 4, 20, 25_000.0, 5.0e7),
            CoinSpec("xyz:TSLA", 3, 10, 430.0, 2.0e7),
        ),
    ),
)


class Listing:
    """The simulated universe: main perps, spot tokens and pairs, builder dexes."""

    def __init__(
        self,
        perps: Sequence[CoinSpec] = DEFAULT_COINS,
        tokens: Sequence[SpotToken] = DEFAULT_TOKENS,
        pairs: Sequence[SpotPair] = DEFAULT_PAIRS,
        dexes: Sequence[PerpDex] = DEFAULT_DEXES,
        seed: int = 0,
    ) -> None:
        self.perps = tuple(perps)
        self.tokens = tuple(tokens)
        self.pairs = tuple(pairs)
        self.dexes = tuple(
            dex
            if dex.deployer
            else PerpDex(dex.name, dex.full_name, dex.perps, derive_address(seed, "dex", dex.name))
            for dex in dexes
        )
        indices = {token.index for token in self.tokens}
        for pair in self.pairs:
            if pair.base.index not in indices or pair.quote.index not in indices:
                raise ValueError(f"spot pair @{pair.index} uses an unlisted token")
        names = [spec.name for spec in self.coins()]
        if len(set(names)) != len(names):
            raise ValueError("market names must be unique")

    def coins(self) -> tuple[CoinSpec, ...]:
        """Every market the model trades: main perps, spot pairs, dex perps, in that order."""
        return (
            self.perps
            + tuple(pair.spec() for pair in self.pairs)
            + tuple(spec for dex in self.dexes for spec in dex.perps)
        )

    @cached_property
    def _pairs_by_coin(self) -> dict[str, SpotPair]:
        return {pair.coin: pair for pair in self.pairs}

    @cached_property
    def _dexes_by_name(self) -> dict[str, PerpDex]:
        return {dex.name: dex for dex in self.dexes}

    def pair(self, coin: str) -> SpotPair | None:
        return self._pairs_by_coin.get(coin)

    def dex(self, name: str) -> PerpDex | None:
        """A builder dex by name; ``""`` (the main dex) is not one."""
        return self._dexes_by_name.get(name)

    def dex_of(self, coin: str) -> str:
        """The perp dex a coin trades on: ``""`` for the main dex (and for spot)."""
        prefix, sep, _ = coin.partition(":")
        return prefix if sep else ""

    def is_spot(self, coin: str) -> bool:
        return coin in self._pairs_by_coin

    def perps_of(self, dex: str) -> tuple[CoinSpec, ...]:
        if dex == "":
            return self.perps
        found = self.dex(dex)
        return found.perps if found is not None else ()

    def perp_assets(self) -> dict[int, CoinSpec]:
        """Hyperliquid's asset numbers of the perps: the main dex's from 0, builder dex
        k's (in ``perpDexs`` order) from 110000 + 10000 k, as the official SDK numbers
        them."""
        assets = dict(enumerate(self.perps))
        for k, dex in enumerate(self.dexes):
            assets.update((110_000 + 10_000 * k + j, spec) for j, spec in enumerate(dex.perps))
        return assets

    def spot_assets(self) -> dict[int, CoinSpec]:
        """Hyperliquid's asset numbers of the spot pairs: 10000 + the pair's index."""
        return {10_000 + pair.index: pair.spec() for pair in self.pairs}

    def main_mids_coins(self) -> tuple[str, ...]:
        """The coins of the main ``allMids``: main perps and every spot pair."""
        return tuple(spec.name for spec in self.perps) + tuple(p.coin for p in self.pairs)

"""The simulated exchange: market and accounts advanced together, tick by tick.

Interleaving the two per market tick (rather than running the market to ``now``
and then the accounts) keeps wallet events priced off the tick they happen in,
so the outcome does not depend on how often the caller steps. Trades are folded
into candles as they happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hlgateway.simulator.accounts import AccountsEngine, Emitted, WalletActivity
from hlgateway.simulator.candles import CandleBook
from hlgateway.simulator.exchange import Exchange
from hlgateway.simulator.listing import Listing
from hlgateway.simulator.market import DEFAULT_COINS, Book, CoinSpec, MarketModel, Trade
from hlgateway.simulator.matching import Matcher


@dataclass(frozen=True)
class StepResult:
    trades: tuple[Trade, ...]
    activities: tuple[WalletActivity, ...]  # at most one per wallet, in first-event order
    candles: frozenset[tuple[str, str]] = frozenset()  # (coin, interval) changed


class SimWorld:
    def __init__(
        self,
        seed: int,
        start_ms: int,
        *,
        tick_ms: int = 100,
        order_interval_ms: int = 2_500,
        max_fill_gap_ms: int = 10_000,
        history_ms: int = 30_000,
        trade_rate: float = 2.0,
        coins: Sequence[CoinSpec] = DEFAULT_COINS,
        listing: Listing | None = None,
        funding_interval_ms: int = 3_600_000,
        transfer_interval_ms: int = 120_000,
        liquidation_interval_ms: int = 900_000,
        mainnet: bool = False,
    ) -> None:
        # `coins` are the main dex's perps; spot pairs and builder dexes come from
        # the listing (the default one when none is given).
        self.listing = listing if listing is not None else Listing(coins, seed=seed)
        all_coins = self.listing.coins()
        self.market = MarketModel(
            seed, start_ms, tick_ms=tick_ms, coins=all_coins, trade_rate=trade_rate
        )
        self.accounts = AccountsEngine(
            self.market,
            order_interval_ms=order_interval_ms,
            max_fill_gap_ms=max_fill_gap_ms,
            history_ms=history_ms,
            listing=self.listing,
            funding_interval_ms=funding_interval_ms,
            transfer_interval_ms=transfer_interval_ms,
            liquidation_interval_ms=liquidation_interval_ms,
        )
        self.candles = CandleBook(seed, start_ms, all_coins)
        # Orders that accounts place through /exchange, and the endpoint itself.
        self.matcher = Matcher(self.market, self.accounts, self.listing)
        self.exchange = Exchange(
            self.market,
            self.accounts,
            self.matcher,
            mainnet=mainnet,
            assets={**self.listing.perp_assets(), **self.listing.spot_assets()},
        )

    def book(self, coin: str) -> Book:
        """The book clients see: the market's, with resting /exchange orders in it."""
        return self.matcher.book(coin)

    @property
    def now_ms(self) -> int:
        return self.market.now_ms

    def step(self, now_ms: int) -> StepResult:
        trades: list[Trade] = []
        merged: dict[str, Emitted] = {}
        for _ in range(self.market.skip_backlog(now_ms)):
            tick_trades = self.market.advance_tick()
            trades.extend(tick_trades)
            activities = self.accounts.step(self.market.now_ms)
            # Resting /exchange orders meet the tick's trades and the moved book.
            events = self.matcher.step(self.market.now_ms, tick_trades)
            trades.extend(events.trades)
            for activity in [*activities, *events.activities()]:
                out = merged.setdefault(activity.user, Emitted())
                out.updates.extend(activity.order_updates)
                out.fills.extend(activity.fills)
                out.fundings.extend(activity.fundings)
                out.ledger.extend(activity.ledger)
                out.twaps.extend(activity.twaps)
        changed = self.candles.add(trades)
        return StepResult(
            trades=tuple(trades),
            activities=tuple(out.activity(user) for user, out in merged.items()),
            candles=frozenset(changed),
        )

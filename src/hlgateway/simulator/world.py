"""The simulated exchange: market and accounts advanced together, tick by tick.

Interleaving the two per market tick (rather than running the market to ``now``
and then the accounts) keeps wallet events priced off the tick they happen in,
so the outcome does not depend on how often the caller steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hlgateway.simulator.accounts import AccountsEngine, Fill, OrderUpdate, WalletActivity
from hlgateway.simulator.exchange import Exchange
from hlgateway.simulator.market import DEFAULT_COINS, Book, CoinSpec, MarketModel, Trade
from hlgateway.simulator.matching import Matcher


@dataclass(frozen=True)
class StepResult:
    trades: tuple[Trade, ...]
    activities: tuple[WalletActivity, ...]  # at most one per wallet, in first-event order


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
        mainnet: bool = False,
    ) -> None:
        self.market = MarketModel(
            seed, start_ms, tick_ms=tick_ms, coins=coins, trade_rate=trade_rate
        )
        self.accounts = AccountsEngine(
            self.market,
            order_interval_ms=order_interval_ms,
            max_fill_gap_ms=max_fill_gap_ms,
            history_ms=history_ms,
        )
        # Orders that accounts place through /exchange, and the endpoint itself.
        self.matcher = Matcher(self.market, self.accounts)
        self.exchange = Exchange(self.market, self.accounts, self.matcher, mainnet=mainnet)

    def book(self, coin: str) -> Book:
        """The book clients see: the market's, with resting /exchange orders in it."""
        return self.matcher.book(coin)

    @property
    def now_ms(self) -> int:
        return self.market.now_ms

    def step(self, now_ms: int) -> StepResult:
        trades: list[Trade] = []
        merged: dict[str, tuple[list[OrderUpdate], list[Fill]]] = {}
        for _ in range(self.market.skip_backlog(now_ms)):
            tick_trades = self.market.advance_tick()
            trades.extend(tick_trades)
            activities = self.accounts.step(self.market.now_ms)
            # Resting /exchange orders meet the tick's trades and the moved book.
            events = self.matcher.step(self.market.now_ms, tick_trades)
            trades.extend(events.trades)
            for activity in [*activities, *events.activities()]:
                updates, fills = merged.setdefault(activity.user, ([], []))
                updates.extend(activity.order_updates)
                fills.extend(activity.fills)
        return StepResult(
            trades=tuple(trades),
            activities=tuple(
                WalletActivity(user=user, order_updates=tuple(updates), fills=tuple(fills))
                for user, (updates, fills) in merged.items()
            ),
        )

"""What the notifier holds in memory besides its database (rebuilt from it at start).

Price alerts (`PriceAlert`, armed or not: a copy of the `alerts` rows, so that
every price tick is checked without a query), the liquidation tier each (chat,
wallet, symbol) was last warned of, the latest prices and account states the
gateway sent (for /alert and /positions), and the bot's username.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from hlgateway.notifier.alerts import Direction, PriceAlert
from hlgateway.notifier.repository import Tables

TierKey = tuple[int, str, str]  # (chat, wallet, symbol)


class BotState:
    def __init__(self) -> None:
        self.alerts: dict[int, PriceAlert] = {}
        self.tiers: dict[TierKey, int] = {}
        self.prices: dict[str, Decimal] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.bot_username: str | None = None

    async def load(self, t: Tables) -> None:
        for row in await t.alerts.all():
            self.alerts[row.id] = PriceAlert(
                row.id,
                row.chat_id,
                row.symbol,
                Direction(row.direction),
                Decimal(row.level),
                row.armed,
            )
        self.tiers = await t.tiers.all()

    def forget_watch(self, chat: int, wallet: str) -> None:
        for key in [k for k in self.tiers if k[0] == chat and k[1] == wallet]:
            del self.tiers[key]

    def move_chat(self, old: int, new: int) -> None:
        """A group became a supergroup (the database moved along already)."""
        for alert in self.alerts.values():
            if alert.chat_id == old:
                alert.chat_id = new
        self.tiers = {
            ((new if k[0] == old else k[0]), k[1], k[2]): v for k, v in self.tiers.items()
        }

    def observe_prices(self, prices: dict[str, Any]) -> None:
        for symbol, quote in prices.items():
            raw = quote.get("price") if isinstance(quote, dict) else None
            try:
                self.prices[symbol] = Decimal(str(raw))
            except (InvalidOperation, ValueError):
                continue

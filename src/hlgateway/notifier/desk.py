"""What a connected chat does at once, without a preview: list its open orders (with a
Cancel button each), cancel orders, set a coin's leverage. Each runs after the command's
transaction committed, signs with the chat's agent key and answers in the chat; a kill
in that moment loses the command (the chat sees no answer and may send it again:
cancelling or setting leverage twice does no harm)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hlgateway.client.errors import RequestFailed
from hlgateway.client.trading import Trader
from hlgateway.notifier.exchange import ExchangeError, ExchangeInfo
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.format import esc, number
from hlgateway.notifier.repository import AgentRow, Buttons, Repository

log = logging.getLogger("hlgateway.notifier.trading")

MAX_LISTED = 20


class Desk:
    def __init__(
        self,
        repo: Repository,
        feed: GatewayFeed,
        exchange: ExchangeInfo,
        trader: Callable[[int, AgentRow], Trader],
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.repo = repo
        self.feed = feed
        self.exchange = exchange
        self._trader = trader  # the chat's agent, able to sign
        self.now_ms = now_ms
        self.wake = wake

    async def _say(self, chat: int, html: str, buttons: Buttons | None = None) -> None:
        async with self.repo.transaction() as t:
            await t.outbox.add_message(chat, html, self.now_ms(), buttons=buttons)
        self.wake()

    async def list_orders(self, chat: int, agent: AgentRow) -> None:
        try:
            orders = await self.exchange.open_orders(agent.wallet)
        except ExchangeError as exc:
            await self._say(chat, esc(exc))
            return
        if not orders:
            await self._say(chat, "No open orders.")
            return
        lines, buttons = [], []
        try:
            await self.exchange.markets()  # spot pairs' names: @107 is HYPE/USDC
        except ExchangeError as exc:
            await self._say(chat, esc(exc))
            return
        for o in orders[:MAX_LISTED]:
            side = "buy" if o.get("side") == "B" else "sell"
            coin, oid = self.exchange.symbol(str(o.get("coin"))), o.get("oid")
            lines.append(
                f"{esc(side)} {esc(number(o.get('sz')))} {esc(coin)} @ "
                f"{esc(number(o.get('limitPx')))} (order {esc(oid)})"
            )
            buttons.append([(f"Cancel {side} {coin} #{oid}", f"cancel:{coin}:{oid}")])
        more = f"\n… and {len(orders) - MAX_LISTED} more" if len(orders) > MAX_LISTED else ""
        await self._say(chat, "Open orders:\n" + "\n".join(lines) + more, buttons)

    async def cancel(self, chat: int, agent: AgentRow, coin: str | None, oid: int | None) -> None:
        try:
            orders = await self.exchange.open_orders(agent.wallet)
            await self.exchange.markets()
        except ExchangeError as exc:
            await self._say(chat, esc(exc))
            return
        symbol = self.exchange.symbol
        targets = [
            o
            for o in orders
            if (coin is None or symbol(str(o.get("coin"))) == coin)
            and (oid is None or o.get("oid") == oid)
        ]
        if not targets:
            await self._say(
                chat, "No open order to cancel" + (f" on {esc(coin)}." if coin else ".")
            )
            return
        assets = self.exchange.assets()
        cancels = [{"a": assets[symbol(str(o["coin"]))], "o": o["oid"]} for o in targets]
        sent = await self._send(chat, agent, {"type": "cancel", "cancels": cancels})
        if sent is None:
            return
        ok = sum(1 for s in sent.statuses if s == "success")
        errors = [str(s["error"]) for s in sent.statuses if isinstance(s, dict) and "error" in s]
        text = f"Cancelled {ok} order(s)." if sent.ok else f"Not cancelled: {esc(sent.error)}"
        if errors:
            text += "\n" + "\n".join(esc(e) for e in errors)
        await self._say(chat, text)

    async def leverage(self, chat: int, agent: AgentRow, coin: str, leverage: int) -> None:
        try:
            market = await self.exchange.market(coin)
        except ExchangeError as exc:
            await self._say(chat, esc(exc))
            return
        if market.spot:
            await self._say(chat, f"{esc(coin)} is a spot pair: it has no leverage.")
            return
        if leverage > market.max_leverage:
            await self._say(chat, f"{esc(coin)} allows at most {market.max_leverage}x.")
            return
        action = {"type": "updateLeverage", "asset": market.asset, "isCross": True}
        sent = await self._send(chat, agent, {**action, "leverage": leverage})
        if sent is not None:
            await self._say(
                chat,
                f"Leverage of {esc(coin)}: {leverage}x (cross)."
                if sent.ok
                else f"Leverage not set: {esc(sent.error)}",
            )

    async def _send(self, chat: int, agent: AgentRow, action: dict[str, Any]) -> Any:
        # The agent's next nonce (shared with its confirmations and its other chats); a
        # kill after this transaction only skips a number.
        async with self.repo.transaction() as t:
            nonce = await t.nonces.next(agent.agent, self.now_ms())
        try:
            return await self._trader(chat, agent).send(action, nonce=nonce)
        except RequestFailed as exc:  # refused by the gateway: nothing was sent
            await self._say(chat, f"Not sent: the gateway said {esc(exc)}.")
            return None

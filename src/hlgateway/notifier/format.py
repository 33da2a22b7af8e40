"""Notification text: HTML with every dynamic field escaped, numbers as reported.

Telegram's HTML parse mode needs only `<`, `>` and `&` escaped (quotes too, inside
attributes, which we never build). Messages are packed from whole lines and never
exceed Telegram's 4,096 characters.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_MESSAGE = 4096


def esc(value: object) -> str:
    """Any dynamic value, safe in Telegram HTML."""
    return html.escape(str(value), quote=False)


def number(value: Any) -> str:
    """A number exactly as reported: decimal strings are kept; floats are printed in
    their shortest round-trip form without exponent (1e-05 -> 0.00001)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    if "e" in text or "E" in text:
        try:
            text = format(Decimal(text), "f")
        except InvalidOperation:  # inf, nan
            return text
    return text


def short_wallet(wallet: str) -> str:
    return f"{wallet[:6]}…{wallet[-4:]}" if len(wallet) > 12 else wallet


def fill_line(fill: dict[str, Any], label: str | None) -> str:
    """`Bought 0.5 BTC @ 43250.5 · fee 1.2 USDC · PnL 3.4 · label` in HTML."""
    side = str(fill.get("side", "")).lower()
    verb = "Bought" if side in ("buy", "b") else "Sold"
    parts = [
        f"<b>{verb} {esc(number(fill.get('size')))} {esc(fill.get('symbol'))}</b>"
        f" @ {esc(number(fill.get('price')))}",
        f"fee {esc(number(fill.get('fee', 0)))} {esc(fill.get('feeToken') or 'USDC')}",
    ]
    pnl = fill.get("closedPnl")
    if pnl not in (None, 0, 0.0, "0", "0.0"):
        parts.append(f"PnL {esc(number(pnl))}")
    who = label if label else short_wallet(str(fill.get("wallet", "")))
    parts.append(f"<i>{esc(who)}</i>")
    return " · ".join(parts)


# The ledger events `/ledger on` notifies (the gateway's `user_ledger` kinds).
LEDGER_KINDS = frozenset({"deposit", "withdraw", "liquidation"})


def ledger_line(event: dict[str, Any], label: str | None) -> str | None:
    """A deposit, withdrawal or liquidation in HTML; None for the kinds not notified."""
    kind = event.get("kind")
    who = f"<i>{esc(label if label else short_wallet(str(event.get('wallet', ''))))}</i>"
    amount = event.get("amount")
    token = esc(event.get("token") or "USDC")
    if kind == "deposit":
        return f"<b>Deposit</b> {esc(number(amount))} {token} · {who}"
    if kind == "withdraw":
        size = abs(amount) if isinstance(amount, int | float) else amount
        fee = event.get("fee")
        tail = f" (fee {esc(number(fee))})" if fee not in (None, 0, 0.0) else ""
        return f"<b>Withdrawal</b> {esc(number(size))} {token}{tail} · {who}"
    if kind == "liquidation":
        raw = event.get("raw") or {}
        positions = ", ".join(
            f"{esc(p.get('coin'))} {esc(p.get('szi'))}"
            for p in raw.get("liquidatedPositions") or []
            if isinstance(p, dict)
        )
        return (
            f"⚠️ <b>Liquidated</b>: {positions or 'positions'}"
            f" · notional {esc(number(amount))} {token} · {who}"
        )
    return None


def order_line(update: dict[str, Any], label: str | None) -> str:
    order = update.get("order") or {}
    action = str(update.get("action", "updated"))
    side = "buy" if str(order.get("side", "")).lower() in ("buy", "b") else "sell"
    who = label if label else short_wallet(str(order.get("wallet", "")))
    return (
        f"Order {esc(action)}: {esc(side)} {esc(number(order.get('amount')))}"
        f" {esc(order.get('symbol'))} @ {esc(number(order.get('price')))}"
        f" · <i>{esc(who)}</i>"
    )


def pack(lines: Iterable[str], limit: int = MAX_MESSAGE) -> list[str]:
    """Lines joined by newlines into as few messages as fit under `limit`, in order.
    A line longer than `limit` (never ours) is cut at the limit."""
    messages: list[str] = []
    current = ""
    for raw in lines:
        line = raw[:limit]
        if not current:
            current = line
        elif len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            messages.append(current)
            current = line
    if current:
        messages.append(current)
    return messages


def take_first(lines: list[str], limit: int = MAX_MESSAGE) -> int:
    """How many of `lines` (from the front) fit in one message."""
    size = 0
    for count, line in enumerate(lines):
        size += len(line[:limit]) + (1 if count else 0)
        if size > limit:
            return max(count, 1)
    return len(lines)


def positions_text(
    watches: Iterable[tuple[str, str | None]], accounts: dict[str, dict[str, Any]]
) -> str:
    """/positions: each watched wallet (wallet, label) with its account's open positions."""
    out: list[str] = []
    for wallet, label in watches:
        name = esc(label or short_wallet(wallet))
        state = accounts.get(wallet)
        if state is None:
            out.append(f"<b>{name}</b>: no account data yet")
            continue
        positions = [p for p in state.get("positions") or [] if p.get("size")]
        out.append(
            f"<b>{name}</b>: account {esc(number(state.get('accountValue')))}"
            + ("" if positions else ", no open positions")
        )
        for p in positions:
            size = p.get("size")
            numeric = isinstance(size, int | float)
            side = "long" if numeric and size > 0 else "short"
            amount = esc(number(abs(size) if numeric else size))
            liq = p.get("liquidationPrice")
            out.append(
                f"  {esc(p.get('symbol'))} {side} {amount}"
                f" @ {esc(number(p.get('entryPrice')))}"
                f" · uPnL {esc(number(p.get('unrealizedPnl')))}"
                + (f" · liq {esc(number(liq))}" if liq else "")
            )
    return "\n".join(out)


def liquidation_line(symbol: str, who: str, distance: Decimal, liquidation: Any, under: str) -> str:
    return (
        f"⚠️ <b>{esc(symbol)}</b> position of <i>{esc(who)}</i>"
        f" is {distance * 100:.1f}% from liquidation (liq {esc(number(liquidation))};"
        f" under {under})"
    )


def alert_line(symbol: str, above: bool, price: Decimal, direction: str, level: Decimal) -> str:
    verb = "reached" if above else "fell to"
    return (
        f"🔔 <b>{esc(symbol)}</b> {verb} {esc(number(str(price)))}"
        f" ({esc(direction)} {esc(str(level))})"
    )

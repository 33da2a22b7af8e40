"""What an order would be before it is placed (sans I/O).

A trading command becomes an `Intent`: coin, side, size and limit price rounded as
Hyperliquid wants them (sizes to the coin's `szDecimals` - a spot pair's: its base
token's -, prices to 5 significant figures and at most 6 - szDecimals decimals, 8 -
szDecimals for spot), a market order being an Ioc limit 5 % beyond the mid as the
official SDK sends it. `Preview` adds what the chat must see before it confirms:
notional, estimated fee, and for a perp the leverage and a liquidation-price estimate
(a spot pair has neither: it spends tokens, not margin). `cloid_for` derives the
order's client id from the confirmation itself, so that every attempt to place one
confirmation names the same order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from hlgateway.notifier import commands as c
from hlgateway.notifier.format import esc, short_wallet

SLIPPAGE = Decimal("0.05")  # a market order's limit, beyond the mid (the SDK's default)
TAKER_FEE = Decimal("0.00045")  # Hyperliquid's base tier; the preview says "about"
MAKER_FEE = Decimal("0.00015")
MAX_PERP_DECIMALS = 6
MAX_SPOT_DECIMALS = 8
Tif = Literal["Gtc", "Ioc"]


class NotPlaceable(ValueError):
    """Why this order cannot be previewed; the message is the chat's answer."""


@dataclass(frozen=True)
class Market:
    """One market as the exchange lists it (`meta`, `spotMeta`) and the gateway signs for
    it: a perp (`ETH`), or a spot pair named as the gateway names it (`HYPE/USDC`, asset
    10000 + the pair's index, the base token's szDecimals)."""

    name: str
    asset: int
    sz_decimals: int
    max_leverage: int  # 0 for a spot pair
    spot: bool = False
    base: str = ""  # a spot pair's base token (what /close sells)


@dataclass(frozen=True)
class Intent:
    """An order as it will be signed: what a confirmation places."""

    coin: str
    is_buy: bool
    size: Decimal
    price: Decimal  # the limit (for a market order: the worst price accepted)
    tif: Tif
    reduce_only: bool
    market: bool  # shown as "at market"
    spot: bool = False  # a spot pair: tokens, not a position (absent in older rows)

    def to_json(self) -> str:
        body = asdict(self)
        body["size"], body["price"] = str(self.size), str(self.price)
        return json.dumps(body, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Intent:
        body: dict[str, Any] = json.loads(text)
        body["size"], body["price"] = Decimal(body["size"]), Decimal(body["price"])
        return Intent(**body)


def round_size(size: Decimal, sz_decimals: int) -> Decimal:
    return plain(size.quantize(Decimal(1).scaleb(-sz_decimals), rounding=ROUND_DOWN))


def round_price(price: Decimal, sz_decimals: int, spot: bool = False) -> Decimal:
    """5 significant figures, at most 6 - szDecimals decimals (8 - szDecimals for a spot
    pair; integers always pass)."""
    if price >= 10**5:
        return plain(price.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    significant = price.quantize(Decimal(1).scaleb(price.adjusted() - 4), rounding=ROUND_HALF_EVEN)
    decimals = max(0, (MAX_SPOT_DECIMALS if spot else MAX_PERP_DECIMALS) - sz_decimals)
    return plain(significant.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))


def plain(value: Decimal) -> Decimal:
    """Without trailing zeros, and printed without an exponent (3E+3 -> 3000)."""
    return Decimal(format(value.normalize(), "f"))


def plan_trade(cmd: c.Trade, market: Market, mid: Decimal) -> Intent:
    size = round_size(cmd.size / mid if cmd.in_usdc else cmd.size, market.sz_decimals)
    if size <= 0:
        raise NotPlaceable(
            f"Too small: {market.name} trades in steps of {Decimal(1).scaleb(-market.sz_decimals)}"
        )
    if cmd.price is None:
        limit = mid * (1 + SLIPPAGE) if cmd.is_buy else mid * (1 - SLIPPAGE)
        price = round_price(limit, market.sz_decimals, market.spot)
        return Intent(market.name, cmd.is_buy, size, price, "Ioc", False, True, market.spot)
    return Intent(
        market.name,
        cmd.is_buy,
        size,
        round_price(cmd.price, market.sz_decimals, market.spot),
        "Gtc",
        False,
        False,
        market.spot,
    )


def plan_close(cmd: c.Close, market: Market, mid: Decimal, position: Decimal) -> Intent:
    """A reduce-only market order against `position` (signed size), `percent` of it."""
    if position == 0:
        raise NotPlaceable(f"No open {market.name} position.")
    size = round_size(abs(position) * cmd.percent / 100, market.sz_decimals)
    if size <= 0:
        raise NotPlaceable(f"{cmd.percent}% of the {market.name} position is below one step.")
    is_buy = position < 0
    limit = mid * (1 + SLIPPAGE) if is_buy else mid * (1 - SLIPPAGE)
    price = round_price(limit, market.sz_decimals)
    return Intent(market.name, is_buy, size, price, "Ioc", True, True)


def plan_spot_close(cmd: c.Close, market: Market, mid: Decimal, available: Decimal) -> Intent:
    """Closing a spot pair sells `percent` of the base token the wallet can spend (its
    balance less what its resting orders hold) at market. Not reduce-only: Hyperliquid
    has no position to reduce on spot, and refuses the flag there."""
    if available <= 0:
        raise NotPlaceable(f"No {market.base} to sell (none free in the spot balance).")
    size = round_size(available * cmd.percent / 100, market.sz_decimals)
    if size <= 0:
        raise NotPlaceable(f"{cmd.percent}% of the {market.base} balance is below one step.")
    price = round_price(mid * (1 - SLIPPAGE), market.sz_decimals, spot=True)
    return Intent(market.name, False, size, price, "Ioc", False, True, True)


@dataclass(frozen=True)
class Preview:
    intent: Intent
    notional: Decimal  # at the mid for a market order, at the limit otherwise
    fee: Decimal
    taker: bool
    leverage: int
    liquidation: Decimal | None  # an estimate; None when the account covers it all


def preview(
    intent: Intent,
    market: Market,
    mid: Decimal,
    leverage: int,
    account_value: Decimal | None,
) -> Preview:
    at = mid if intent.market else intent.price
    notional = (intent.size * at).quantize(Decimal("0.01"))
    crosses = intent.market or (intent.price >= mid if intent.is_buy else intent.price <= mid)
    fee = (notional * (TAKER_FEE if crosses else MAKER_FEE)).quantize(Decimal("0.01"))
    liquidation = None
    if not intent.reduce_only and not intent.spot:
        liquidation = liquidation_estimate(
            intent.is_buy, at, intent.size, leverage, market.max_leverage, account_value
        )
    return Preview(intent, notional, fee, crosses, leverage, liquidation)


def liquidation_estimate(
    is_buy: bool,
    price: Decimal,
    size: Decimal,
    leverage: int,
    max_leverage: int,
    account_value: Decimal | None,
) -> Decimal | None:
    """Hyperliquid's formula for one position: price - side * margin_available / size /
    (1 - l * side), l the maintenance margin rate (half the initial at max leverage).
    Cross margin uses the account's value; without one, the position's own margin."""
    side = 1 if is_buy else -1
    notional = price * size
    rate = Decimal(1) / (2 * max_leverage)
    margin = account_value if account_value is not None else notional / leverage
    available = margin - notional * rate
    liq = price - side * available / size / (1 - rate * side)
    return liq.quantize(Decimal("0.01")) if liq > 0 else None


def preview_text(p: Preview, wallet: str, seconds: int) -> str:
    i = p.intent
    verb = (
        ("Close with a buy of" if i.is_buy else "Close with a sale of")
        if i.reduce_only
        else ("Buy" if i.is_buy else "Sell")
    )
    where = f"at market (Ioc, worst {esc(i.price)})" if i.market else f"limit {esc(i.price)} (Gtc)"
    lines = [
        f"<b>{verb} {esc(i.size)} {esc(i.coin)}</b> {where}",
        f"Notional ≈ {esc(p.notional)} USDC · fee ≈ {esc(p.fee)} USDC"
        f" ({'taker' if p.taker else 'maker'})",
    ]
    if i.spot:
        base, _, quote = i.coin.partition("/")
        spent, got = (quote, base) if i.is_buy else (base, quote)
        lines.append(f"Spot: pays {esc(spent)}, receives {esc(got)} · no leverage")
    elif not i.reduce_only:
        liq = "none within the account" if p.liquidation is None else f"≈ {esc(p.liquidation)}"
        lines.append(f"Leverage {p.leverage}x · liquidation {liq} (estimate)")
    lines.append(f"Wallet {esc(short_wallet(wallet))} · confirm within {seconds} s.")
    return "\n".join(lines)


def check_limits(
    notional: Decimal, max_notional: Decimal, confirmed_today: int, daily_cap: int
) -> str | None:
    """Why this order is over a limit, or None."""
    if notional > max_notional:
        return f"Over this chat's limit: {notional} USDC > {max_notional} USDC per order (/limit)."
    if confirmed_today >= daily_cap:
        return f"This chat placed {confirmed_today} orders today: the daily cap is {daily_cap}."
    return None


def cloid_for(chat_id: int, preview_id: int, created_ms: int) -> str:
    """The order's client id: a function of the confirmation (chat, preview), so a double
    tap, a retried callback or a placement after a restart all name one order."""
    digest = hashlib.sha256(f"hlgateway notifier|{chat_id}|{preview_id}|{created_ms}".encode())
    return "0x" + digest.hexdigest()[:32]

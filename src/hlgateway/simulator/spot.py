"""Spot trading for the simulated wallets: token balances, not positions.

A spot fill moves the pair's base token and USDC. Hyperliquid labels spot
fills ``Buy`` / ``Sell`` (its ``dir``), reports ``startPosition`` as the base
balance before the fill, and charges the fee in the token received: the base
token on a buy, the quote token on a sell. A sell realises PnL against the
balance's average cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hlgateway.simulator.listing import SpotPair

ZERO = Decimal(0)
USD = Decimal("1e-6")


@dataclass
class SpotHolding:
    """One token balance of a wallet and its average cost in the quote token."""

    balance: Decimal = ZERO
    avg_cost: Decimal = ZERO


@dataclass(frozen=True)
class SpotSettlement:
    start: Decimal  # base balance before the fill
    direction: str  # Buy | Sell
    closed_pnl: Decimal
    fee: Decimal
    fee_token: str
    quote_delta: Decimal  # what the wallet's USDC moves by


def settle(
    holding: SpotHolding, pair: SpotPair, side: str, px: Decimal, sz: Decimal, fee_rate: Decimal
) -> SpotSettlement:
    """Apply a fill of ``sz`` at ``px`` to ``holding``; what it did to the wallet."""
    start = holding.balance
    lot = Decimal(1).scaleb(-pair.base.sz_decimals)
    if side == "B":
        fee = (sz * fee_rate).quantize(lot * Decimal("1e-3"))  # in the base token
        received = sz - fee
        cost = holding.avg_cost * holding.balance + px * sz
        holding.balance += received
        holding.avg_cost = (cost / holding.balance).quantize(Decimal("1e-8"))
        return SpotSettlement(start, "Buy", ZERO, fee, pair.base.name, -(px * sz))
    proceeds = px * sz
    fee = (proceeds * fee_rate).quantize(USD)  # in the quote token
    closed = ((px - holding.avg_cost) * sz).quantize(USD)
    holding.balance -= sz
    if holding.balance == 0:
        holding.avg_cost = ZERO
    return SpotSettlement(start, "Sell", closed, fee, pair.quote.name, proceeds - fee)


def sellable(holding: SpotHolding | None, pair: SpotPair) -> Decimal:
    """The base balance on the pair's lot grid (what a sell order may ask for)."""
    if holding is None or holding.balance <= 0:
        return ZERO
    lot = Decimal(1).scaleb(-pair.base.sz_decimals)
    return (holding.balance / lot).to_integral_value(rounding="ROUND_FLOOR") * lot

"""A wallet's ledger beyond its trades: funding, deposits, withdrawals, liquidations.

Sans I/O records, as Hyperliquid reports them: ``userFundings`` (WebSocket,
no hash) and ``userFunding`` (REST, a hash per entry) for funding payments,
``userNonFundingLedgerUpdates`` for everything else (``{time, hash, delta}``
with a typed ``delta``). The accounts engine makes them; ``wire`` formats them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Hyperliquid's REST funding entries carry no transaction of their own.
FUNDING_HASH = "0x" + "0" * 64
WITHDRAW_FEE = Decimal(1)


@dataclass(frozen=True)
class FundingPayment:
    """One hourly (``funding_interval``) funding settlement of one position."""

    time: int
    coin: str
    usdc: Decimal  # signed: positive is received
    szi: Decimal
    funding_rate: Decimal
    n_samples: int | None = None


@dataclass(frozen=True)
class LedgerUpdate:
    """One non-funding ledger entry; ``delta`` values that are Decimals go out as strings."""

    time: int
    hash: str
    delta: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.delta["type"])


@dataclass
class CashflowSchedule:
    """When a wallet's next transfer and next liquidation are due (model ms)."""

    rng: random.Random
    transfer_mean_ms: int
    liquidation_mean_ms: int
    next_transfer_ms: int = 0
    next_liquidation_ms: int = 0

    def restart(self, now_ms: int) -> None:
        self.next_transfer_ms = now_ms + self._draw(self.transfer_mean_ms)
        self.next_liquidation_ms = now_ms + self._draw(self.liquidation_mean_ms)

    def transfer_done(self, at_ms: int) -> None:
        self.next_transfer_ms = at_ms + self._draw(self.transfer_mean_ms)

    def liquidation_done(self, at_ms: int) -> None:
        self.next_liquidation_ms = at_ms + self._draw(self.liquidation_mean_ms)

    @property
    def due_ms(self) -> int:
        return min(self.next_transfer_ms, self.next_liquidation_ms)

    def _draw(self, mean_ms: int) -> int:
        return max(1_000, round(self.rng.expovariate(1.0 / mean_ms)))


def deposit(at_ms: int, tx_hash: str, usdc: Decimal) -> LedgerUpdate:
    return LedgerUpdate(at_ms, tx_hash, {"type": "deposit", "usdc": usdc})


def withdraw(at_ms: int, tx_hash: str, usdc: Decimal) -> LedgerUpdate:
    delta = {"type": "withdraw", "usdc": usdc, "nonce": at_ms, "fee": WITHDRAW_FEE}
    return LedgerUpdate(at_ms, tx_hash, delta)


def liquidation(
    at_ms: int,
    tx_hash: str,
    notional: Decimal,
    account_value: Decimal,
    positions: list[tuple[str, Decimal]],
) -> LedgerUpdate:
    delta = {
        "type": "liquidation",
        "liquidatedNtlPos": notional,
        "accountValue": account_value,
        "leverageType": "Cross",
        "liquidatedPositions": [{"coin": coin, "szi": szi} for coin, szi in positions],
    }
    return LedgerUpdate(at_ms, tx_hash, delta)

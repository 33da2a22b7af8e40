"""What the gateway tells the notifier, as plain events (`feed.py` makes them).

Lossless streams (`user_fills`, `user_orders`, `user_ledger`) carry their position (offset,
epoch) so that what they make can be stored with it; snapshots (`prices`,
`account_updates`) carry only the latest state; `Gap` and `Refused` are about
the subscriptions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hlgateway.client import Position

FILLS = "user_fills"
ORDERS = "user_orders"
ACCOUNT = "account_updates"
PRICES = "prices"
LEDGER = "user_ledger"  # read only for wallets a chat with /ledger on watches
LOSSLESS = (FILLS, ORDERS, LEDGER)


@dataclass(frozen=True)
class Fills:
    wallet: str
    fills: list[dict[str, Any]]
    position: Position | None


@dataclass(frozen=True)
class OrderEvent:
    wallet: str
    update: dict[str, Any]
    position: Position | None


@dataclass(frozen=True)
class LedgerEvents:
    wallet: str
    events: list[dict[str, Any]]
    position: Position | None


@dataclass(frozen=True)
class Account:
    wallet: str
    state: dict[str, Any]


@dataclass(frozen=True)
class Prices:
    prices: dict[str, Any]


@dataclass(frozen=True)
class Gap:
    """`channel` of `wallet` (re)started with no replay: what it missed must be reloaded."""

    wallet: str
    channel: str


@dataclass(frozen=True)
class Refused:
    wallet: str | None
    channel: str
    code: str
    message: str


FeedEvent = Fills | OrderEvent | LedgerEvents | Account | Prices | Gap | Refused

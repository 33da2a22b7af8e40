"""Validation and normalisation of WebSocket subscription objects.

The normalised form is what the ack echoes (defaults filled in, addresses in
lowercase) and, serialised, the identity used for "Already subscribed" checks,
so ``{"type":"l2Book","coin":"BTC"}`` and the same object with explicit
``nSigFigs: null`` are one subscription.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

USER_KINDS = frozenset(
    {
        "userFills",
        "orderUpdates",
        "userEvents",
        "clearinghouseState",
        "userFundings",
        "userNonFundingLedgerUpdates",
        "userTwapSliceFills",
        "userTwapHistory",
    }
)
COIN_KINDS = frozenset({"l2Book", "trades", "bbo", "activeAssetCtx", "candle"})
CANDLE_INTERVALS = frozenset(
    {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d", "3d", "1w", "1M"}
)
SUPPORTED_KINDS = USER_KINDS | COIN_KINDS | {"allMids"}
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")  # a wallet address, either case


MAX_ECHO = 1_000  # longest piece of client input echoed back in an error string


def compact_json(value: Any) -> str:
    """JSON as Hyperliquid echoes it in error strings: no spaces."""
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:MAX_ECHO]


class SubscriptionError(ValueError):
    """The subscription is not one the server accepts; ``str()`` is the wire text."""


@dataclass(frozen=True)
class Subscription:
    kind: str
    key: str  # compact JSON of the normalised object; equal keys = same subscription
    coin: str | None = None
    user: str | None = None
    n_sig_figs: int | None = None
    mantissa: int | None = None
    interval: str | None = None  # candle
    dex: str = ""  # allMids, clearinghouseState

    def normalized(self) -> dict[str, Any]:
        """A fresh copy of the normalised subscription object."""
        value: dict[str, Any] = json.loads(self.key)
        return value

    @property
    def channel(self) -> str:
        return "user" if self.kind == "userEvents" else self.kind


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_subscription(
    raw: Any,
    coin_exists: Callable[[str], bool],
    dex_exists: Callable[[str], bool] = lambda dex: dex == "",
) -> Subscription:
    """Validate ``raw``; raise ``SubscriptionError`` with Hyperliquid's wording if invalid."""
    invalid = SubscriptionError(f"Invalid subscription {compact_json(raw)[:MAX_ECHO]}")
    if not isinstance(raw, dict):
        raise invalid
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in SUPPORTED_KINDS:
        raise invalid
    normalized: dict[str, Any] = {"type": kind}
    coin: str | None = None
    user: str | None = None
    n_sig_figs: int | None = None
    mantissa: int | None = None
    interval: str | None = None
    dex = ""

    if kind == "allMids":
        if "dex" in raw:
            dex = raw["dex"]
            if not isinstance(dex, str) or not dex_exists(dex):
                raise invalid
            normalized["dex"] = dex
    elif kind in COIN_KINDS:
        coin = raw.get("coin")
        # Coin names are case-sensitive on Hyperliquid ("kPEPE"); no case folding here.
        if not isinstance(coin, str) or not coin_exists(coin):
            raise invalid
        normalized["coin"] = coin
        if kind == "l2Book":
            n_sig_figs = raw.get("nSigFigs")
            mantissa = raw.get("mantissa")
            fast = raw.get("fast", False)
            if n_sig_figs is not None and not (_is_int(n_sig_figs) and 2 <= n_sig_figs <= 5):
                raise invalid
            if mantissa is not None and not (
                _is_int(mantissa) and mantissa in (1, 2, 5) and n_sig_figs == 5
            ):
                raise invalid
            if not isinstance(fast, bool):
                raise invalid
            normalized.update(nSigFigs=n_sig_figs, mantissa=mantissa, fast=fast)
        elif kind == "candle":
            interval = raw.get("interval")
            if not isinstance(interval, str) or interval not in CANDLE_INTERVALS:
                raise invalid
            normalized["interval"] = interval
    else:
        raw_user = raw.get("user")
        if not isinstance(raw_user, str) or not ADDRESS.fullmatch(raw_user):
            raise invalid
        user = raw_user.lower()
        normalized["user"] = user
        if kind == "userFills":
            aggregate = raw.get("aggregateByTime", False)
            if not isinstance(aggregate, bool):
                raise invalid
            normalized["aggregateByTime"] = aggregate
        elif kind == "clearinghouseState":
            dex = raw.get("dex", "")
            if not isinstance(dex, str) or not dex_exists(dex):
                raise invalid
            normalized["dex"] = dex

    return Subscription(
        kind=kind,
        key=compact_json(normalized),
        coin=coin,
        user=user,
        n_sig_figs=n_sig_figs,
        mantissa=mantissa,
        interval=interval,
        dex=dex,
    )

"""Subscription normalisation and wire formatting, without sockets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hlgateway.simulator import wire
from hlgateway.simulator.accounts import Fill
from hlgateway.simulator.subscriptions import SubscriptionError, parse_subscription

COINS = {"BTC", "kPEPE"}


def parse(raw: Any) -> dict[str, Any]:
    return parse_subscription(raw, COINS.__contains__).normalized()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("97000"), "97000.0"),
        (Decimal("106217.0"), "106217.0"),
        (Decimal("0.00100"), "0.001"),
        (Decimal("1E+2"), "100.0"),
        (Decimal("-0.000"), "0.0"),
        (Decimal("-12.50"), "-12.5"),
        (Decimal("0.0000125"), "0.0000125"),
        (Decimal("1e-7"), "0.0000001"),
    ],
)
def test_number_strings(value: Decimal, text: str) -> None:
    assert wire.num(value) == text


def test_defaults_are_filled_in() -> None:
    assert parse({"type": "allMids"}) == {"type": "allMids"}
    assert parse({"type": "l2Book", "coin": "BTC"}) == {
        "type": "l2Book",
        "coin": "BTC",
        "nSigFigs": None,
        "mantissa": None,
        "fast": False,
    }
    assert parse({"type": "userFills", "user": "0x" + "AB" * 20}) == {
        "type": "userFills",
        "user": "0x" + "ab" * 20,
        "aggregateByTime": False,
    }
    assert parse({"type": "clearinghouseState", "user": "0x" + "ab" * 20})["dex"] == ""
    assert parse({"type": "userEvents", "user": "0x" + "ab" * 20, "junk": 1}) == {
        "type": "userEvents",
        "user": "0x" + "ab" * 20,
    }


def test_equivalent_subscriptions_share_a_key() -> None:
    plain = parse_subscription({"type": "l2Book", "coin": "BTC"}, COINS.__contains__)
    explicit = parse_subscription(
        {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "fast": False}, COINS.__contains__
    )
    assert plain.key == explicit.key
    upper = parse_subscription(
        {"type": "orderUpdates", "user": "0x" + "AB" * 20}, COINS.__contains__
    )
    lower = parse_subscription(
        {"type": "orderUpdates", "user": "0x" + "ab" * 20}, COINS.__contains__
    )
    assert upper.key == lower.key
    assert upper.channel == "orderUpdates"
    events = parse_subscription(
        {"type": "userEvents", "user": "0x" + "ab" * 20}, COINS.__contains__
    )
    assert events.channel == "user"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "allMids",
        {},
        {"type": "nope"},
        {"type": "candle", "coin": "BTC", "interval": "2m"},
        {"type": "candle", "coin": "BTC"},
        {"type": "trades"},
        {"type": "trades", "coin": "KPEPE"},
        {"type": "trades", "coin": 5},
        {"type": "l2Book", "coin": "BTC", "nSigFigs": 6},
        {"type": "l2Book", "coin": "BTC", "nSigFigs": True},
        {"type": "l2Book", "coin": "BTC", "nSigFigs": 4, "mantissa": 2},
        {"type": "l2Book", "coin": "BTC", "fast": "yes"},
        {"type": "userFills", "user": "0x123"},
        {"type": "userFills", "user": "0x" + "zz" * 20},
        {"type": "userFills", "user": "0x" + "ab" * 20, "aggregateByTime": 1},
        {"type": "clearinghouseState", "user": "0x" + "ab" * 20, "dex": "nope"},
        {"type": "allMids", "dex": "nope"},
        {"type": "allMids", "dex": 1},
    ],
)
def test_invalid_subscriptions(raw: Any) -> None:
    with pytest.raises(SubscriptionError, match=r"^Invalid subscription "):
        parse_subscription(raw, COINS.__contains__)


def test_fill_carries_every_ws_fill_field() -> None:
    f = Fill(
        coin="kPEPE",
        px=Decimal("0.012345"),
        sz=Decimal("1000"),
        side="B",
        time=1,
        start_position=Decimal("0"),
        dir="Open Long",
        closed_pnl=Decimal("0"),
        hash="0x" + "00" * 32,
        oid=2,
        crossed=False,
        fee=Decimal("0.001852"),
        tid=3,
    )
    assert wire.fill(f) == {
        "coin": "kPEPE",
        "px": "0.012345",
        "sz": "1000.0",
        "side": "B",
        "time": 1,
        "startPosition": "0.0",
        "dir": "Open Long",
        "closedPnl": "0.0",
        "hash": "0x" + "00" * 32,
        "oid": 2,
        "crossed": False,
        "fee": "0.001852",
        "tid": 3,
        "feeToken": "USDC",
        "twapId": None,
    }

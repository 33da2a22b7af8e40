"""Price alerts fire once per crossing; liquidation warnings once per tier."""

from __future__ import annotations

from decimal import Decimal as D

from hlgateway.notifier.alerts import Direction, PriceAlert, liquidation_distance, tier_step


def test_above_fires_once_then_rearms_only_after_moving_back() -> None:
    alert = PriceAlert(1, 5, "BTC", Direction.ABOVE, D("100"))
    fired = [alert.observe(D(p)) for p in ("99", "100", "101", "99.9", "100.5", "99.6", "100")]
    assert fired == [False, True, False, False, False, False, False]
    assert alert.observe(D("99.5")) is False  # 0.5 % below: re-armed
    assert alert.armed
    assert alert.observe(D("100.01")) is True


def test_below_mirrors_above() -> None:
    alert = PriceAlert(1, 5, "ETH", Direction.BELOW, D("2000"))
    fired = [alert.observe(D(p)) for p in ("2100", "1999", "2005", "1990", "2010", "1999")]
    assert fired == [False, True, False, False, False, True]


def test_liquidation_tiers_warn_once_each_going_deeper() -> None:
    tier, warns = 0, []
    for distance in ("0.30", "0.19", "0.18", "0.09", "0.095", "0.11", "0.21", "0.19"):
        tier, warn = tier_step(D(distance), tier)
        warns.append((tier, warn))
    assert warns == [
        (0, False),
        (1, True),  # into 20 %
        (1, False),
        (2, True),  # into 10 %
        (2, False),  # 9.5 %: still within 10 % + hysteresis
        (1, False),  # 11 %: back out of the 10 % tier (silently)
        (0, False),  # 21 %: beyond 20 % + 0.5 points
        (1, True),  # in again: warned again
    ]


def test_no_position_or_no_liquidation_price_resets() -> None:
    assert tier_step(None, 3) == (0, False)
    assert liquidation_distance(D("100"), D("0")) is None
    assert liquidation_distance(D("100"), D("90")) == D("0.1")

"""Spot orders through /exchange on the simulated book (sans I/O, a seeded world):
asset 10000 + the pair's index, token balances instead of margin."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hlgateway.simulator.actions import OrderSpec, Tif, Trigger
from hlgateway.simulator.market import Trade
from hlgateway.simulator.matching import Events
from hlgateway.simulator.world import SimWorld

from .test_matching import ALICE, BOB, START, order, place, statuses, wallet_of

HYPE = 10_107  # HYPE/USDC, "@107" on the wire
PURR = 10_000  # PURR/USDC
ETH = 1


@pytest.fixture
def world() -> SimWorld:
    w = SimWorld(5, START, trade_rate=0.0)  # no random public trades unless a test wants them
    w.step(START + 1_000)
    w.accounts.fund(ALICE, Decimal(100_000), w.now_ms)
    w.accounts.fund(BOB, Decimal(100), w.now_ms)
    return w


def spot(
    px: Decimal | str,
    sz: Decimal | str,
    *,
    buy: bool = True,
    asset: int = HYPE,
    tif: Tif | None = "Gtc",
    reduce_only: bool = False,
    trigger: Trigger | None = None,
) -> OrderSpec:
    """A spot order (HYPE/USDC unless said): test_matching's order, on a spot asset."""
    return order(px, sz, asset=asset, buy=buy, tif=tif, reduce_only=reduce_only, trigger=trigger)


def on_tick(world: SimWorld, px: Decimal) -> Decimal:
    spec = world.market.spec("@107")
    assert spec is not None
    return (px / spec.tick).to_integral_value() * spec.tick


def test_a_spot_buy_spends_usdc_and_a_sell_sells_the_tokens(world: SimWorld) -> None:
    wallet = wallet_of(world, ALICE)
    ask = world.market.book("@107").asks[0].px
    usdc = wallet.balance
    events = Events()
    status = place(world, ALICE, spot(on_tick(world, ask * Decimal("1.02")), "1.5"), events)
    assert isinstance(status, dict) and "filled" in status, status
    fills = events.fills[ALICE]
    assert fills and all(f.dir == "Buy" and f.fee_token == "HYPE" for f in fills)
    paid = sum((f.px * f.sz for f in fills), Decimal(0))
    assert wallet.balance == usdc - paid  # the fee of a buy is taken in the token received
    bought = wallet.spot["@107"].balance
    assert bought == Decimal("1.5") - sum((f.fee for f in fills), Decimal(0))
    assert not wallet.positions  # a spot pair has no position
    # A sell rests far above the market and holds its tokens; nothing more can be sold.
    far = on_tick(world, ask * Decimal("1.5"))
    resting = place(world, ALICE, spot(far, "1.49", buy=False))
    assert isinstance(resting, dict) and "resting" in resting, resting
    assert world.matcher.spot_holds(wallet) == {"HYPE": Decimal("1.49")}
    refused = place(world, ALICE, spot(far, "0.25", buy=False))
    assert refused == {"error": f"Insufficient spot balance asset={HYPE}"}
    oid = resting["resting"]["oid"]  # type: ignore[index]
    assert world.matcher.cancel(wallet, "@107", oid, world.now_ms, Events()) == "success"
    assert world.matcher.spot_holds(wallet) == {}
    # Sold at the market: the proceeds less the fee in USDC.
    before = wallet.balance
    bid = world.market.book("@107").bids[0]
    size = min(Decimal("1.49"), bid.sz)
    events = Events()
    sold = place(world, ALICE, spot(bid.px, size, buy=False, tif="Ioc"), events)
    assert isinstance(sold, dict) and "filled" in sold, sold
    (fill,) = events.fills[ALICE]
    assert (fill.dir, fill.fee_token, fill.start_position) == ("Sell", "USDC", bought)
    assert wallet.balance == before + fill.px * fill.sz - fill.fee
    assert wallet.spot["@107"].balance == bought - size


def test_a_spot_buy_needs_the_usdc_its_resting_buys_do_not_hold(world: SimWorld) -> None:
    bob = wallet_of(world, BOB)  # 100 USDC
    refused = place(world, BOB, spot("41.0", "3", tif="Gtc"))  # 123 USDC
    assert refused == {"error": f"Insufficient spot balance asset={HYPE}"}
    low = "30.0"  # far below the market: rests
    assert "resting" in place(world, BOB, spot(low, "2.5"))
    assert world.matcher.spot_holds(bob) == {"USDC": Decimal("75.0")}
    assert place(world, BOB, spot(low, "1")) == {"error": f"Insufficient spot balance asset={HYPE}"}
    # The held USDC is not margin for a perp order either.
    eth = world.market.mark_px("ETH")
    perp = OrderSpec(ETH, True, eth * Decimal("0.9"), Decimal("0.2"), False, "Gtc", None, None)
    answer = world.matcher.place(bob, perp, world.market.coins[ETH], world.now_ms, Events())
    assert answer == {"error": f"Insufficient margin to place order. asset={ETH}"}


def test_spot_prices_take_eight_decimals_less_the_size_decimals(world: SimWorld) -> None:
    # PURR has no size decimals: 8 price decimals, 5 significant figures at most.
    assert "resting" in place(world, ALICE, spot("0.0011312", "10000", asset=PURR))
    assert place(world, ALICE, spot("0.00113121", "10000", asset=PURR)) == {
        "error": f"Price must be divisible by tick size. asset={PURR}"
    }
    assert place(world, ALICE, spot("0.001", "9999", asset=PURR, buy=True)) == {
        "error": f"Order must have minimum value of $10. asset={PURR}"
    }


def test_reduce_only_is_for_perps(world: SimWorld) -> None:
    answer = place(world, ALICE, spot("41.0", "1", reduce_only=True))
    assert answer == {
        "error": f"Reduce only orders are for perps: a spot pair has no position. asset={HYPE}"
    }


def test_a_resting_spot_sell_fills_when_the_market_trades_through_it(world: SimWorld) -> None:
    wallet = wallet_of(world, ALICE)
    ask = world.market.book("@107").asks[0].px
    place(world, ALICE, spot(on_tick(world, ask * Decimal("1.02")), "1"))
    tokens = wallet.spot["@107"].balance
    px = on_tick(world, ask * Decimal("1.01"))
    status = place(world, ALICE, spot(px, "0.5", buy=False))
    oid = status["resting"]["oid"]  # type: ignore[index]
    usdc = wallet.balance
    at = world.now_ms + 100
    buyer = Trade("@107", "B", px, Decimal("2"), at, at, "0x" + "0" * 64, (BOB, BOB))
    world.matcher.step(at, [buyer])
    assert statuses(world, ALICE)[oid] == ["open", "filled"]
    fill = wallet.fills()[-1]
    assert (fill.px, fill.sz, fill.crossed, fill.time) == (px, Decimal("0.5"), False, at)
    assert wallet.spot["@107"].balance == tokens - Decimal("0.5")
    assert wallet.balance == usdc + px * Decimal("0.5") - fill.fee
    assert world.matcher.spot_holds(wallet) == {}


def test_a_spot_trigger_holds_nothing_and_is_canceled_if_uncovered(world: SimWorld) -> None:
    wallet = wallet_of(world, ALICE)
    mark = world.market.mark_px("@107")
    low = on_tick(world, mark * Decimal("0.9"))
    # A stop-loss sell fires when the mark falls to its trigger: here at once.
    stop = Trigger(px=mark, is_market=True, tpsl="sl")
    # Of tokens the wallet does not have: accepted, holding nothing...
    status = place(world, ALICE, spot(low, "1", buy=False, trigger=stop))
    uncovered = status["resting"]["oid"]  # type: ignore[index]
    assert world.matcher.spot_holds(wallet) == {}
    # ... and canceled when it triggers.
    world.matcher.step(world.now_ms, [])
    assert statuses(world, ALICE)[uncovered] == ["open", "triggered", "canceled"]
    # The same with the tokens sells them (at the market: what it meets).
    ask = world.market.book("@107").asks[0].px
    place(world, ALICE, spot(on_tick(world, ask * Decimal("1.02")), "1.2"))
    status = place(world, ALICE, spot(low, "1", buy=False, trigger=stop))
    covered = status["resting"]["oid"]  # type: ignore[index]
    world.matcher.step(world.now_ms, [])
    assert statuses(world, ALICE)[covered][:2] == ["open", "triggered"]
    assert wallet.fills()[-1].oid == covered and wallet.fills()[-1].dir == "Sell"

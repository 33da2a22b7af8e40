"""Orders placed through /exchange on the simulated book (sans I/O, a seeded world)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from hlgateway.simulator.accounts import OrderStatus, Wallet, legal_transition
from hlgateway.simulator.actions import OrderSpec, Tif, Trigger
from hlgateway.simulator.market import Trade
from hlgateway.simulator.matching import Events, Status
from hlgateway.simulator.world import SimWorld

START = 1_800_000_000_000
ETH = 1  # asset index (DEFAULT_COINS: BTC, ETH, ...)
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


@pytest.fixture
def world() -> SimWorld:
    w = SimWorld(5, START, trade_rate=0.0)  # no random public trades unless a test wants them
    w.step(START + 1_000)
    w.accounts.fund(ALICE, Decimal(100_000), w.now_ms)
    w.accounts.fund(BOB, Decimal(100_000), w.now_ms)
    return w


def order(
    px: Decimal | str,
    sz: Decimal | str,
    *,
    asset: int = ETH,
    buy: bool = True,
    tif: Tif | None = "Gtc",
    reduce_only: bool = False,
    trigger: Trigger | None = None,
    cloid: str | None = None,
) -> OrderSpec:
    return OrderSpec(
        asset=asset,
        is_buy=buy,
        px=Decimal(px),
        sz=Decimal(sz),
        reduce_only=reduce_only,
        tif=None if trigger is not None else tif,
        trigger=trigger,
        cloid=cloid,
    )


def place(world: SimWorld, user: str, spec: OrderSpec, events: Events | None = None) -> Status:
    wallet = wallet_of(world, user)
    coin = world.listing.spot_assets().get(spec.asset) or world.market.coins[spec.asset]
    return world.matcher.place(wallet, spec, coin, world.now_ms, events or Events())


def wallet_of(world: SimWorld, user: str) -> Wallet:
    wallet = world.accounts.wallet(user)
    assert wallet is not None
    return wallet


def top(world: SimWorld) -> tuple[Decimal, Decimal]:
    book = world.market.book("ETH")
    return book.bids[0].px, book.asks[0].px


def tick(world: SimWorld) -> Decimal:
    spec = world.market.spec("ETH")
    assert spec is not None
    return spec.tick


def statuses(world: SimWorld, user: str) -> dict[int, list[OrderStatus]]:
    seen: dict[int, list[OrderStatus]] = defaultdict(list)
    for update in wallet_of(world, user).order_history():
        seen[update.oid].append(update.status)
    return dict(seen)


def assert_legal(world: SimWorld, user: str) -> None:
    for oid, sequence in statuses(world, user).items():
        previous: OrderStatus | None = None
        for status in sequence:
            assert legal_transition(previous, status), (oid, sequence)
            previous = status


def test_a_resting_order_joins_the_book_clients_see(world: SimWorld) -> None:
    bid, _ = top(world)
    px = bid - 3 * tick(world)
    status = place(world, ALICE, order(px, "0.5"))
    assert isinstance(status, dict) and "resting" in status
    book = world.book("ETH")
    level = next(lv for lv in book.bids if lv.px == px)
    synthetic = next((lv for lv in world.market.book("ETH").bids if lv.px == px), None)
    assert level.sz == Decimal("0.5") + (synthetic.sz if synthetic else 0)
    assert level.n == 1 + (synthetic.n if synthetic else 0)
    assert [u.status for u in wallet_of(world, ALICE).open_orders()] == ["open"]


def test_a_crossing_order_sweeps_levels_and_rests_the_rest(world: SimWorld) -> None:
    book = world.market.book("ETH")
    first, second = book.asks[0], book.asks[1]
    wanted = first.sz + second.sz + Decimal("0.5")
    events = Events()
    status = place(world, ALICE, order(second.px, wanted), events)
    assert isinstance(status, dict) and "resting" in status  # the rest waits at its limit
    fills = events.fills[ALICE]
    assert [(f.px, f.sz, f.crossed) for f in fills] == [
        (first.px, first.sz, True),
        (second.px, second.sz, True),
    ]
    assert [t.px for t in events.trades] == [first.px, second.px]
    assert all(t.users[0] == ALICE for t in events.trades)  # the buyer
    # What it took stays taken for this tick; the remainder shows as the best bid.
    seen = world.book("ETH")
    assert seen.asks[0].px > second.px
    assert seen.bids[0].px == second.px and seen.bids[0].sz == Decimal("0.5")
    assert wallet_of(world, ALICE).positions["ETH"].szi == first.sz + second.sz


def test_a_fully_filled_order_reports_size_and_average_price(world: SimWorld) -> None:
    ask = world.market.book("ETH").asks[0]
    size = ask.sz / 2 if ask.sz >= Decimal("0.02") else ask.sz
    status = place(world, ALICE, order(ask.px, size, tif="Ioc"))
    assert isinstance(status, dict)
    filled = status["filled"]
    assert isinstance(filled, dict)
    assert Decimal(str(filled["totalSz"])) == size and Decimal(str(filled["avgPx"])) == ask.px
    assert statuses(world, ALICE)[int(str(filled["oid"]))] == ["open", "filled"]


def test_ioc_that_meets_nothing_and_alo_that_would_cross_are_refused(world: SimWorld) -> None:
    bid, ask = top(world)
    oids_before = world.accounts.next_oid()
    ioc = place(world, ALICE, order(bid, "0.5", tif="Ioc"))
    assert ioc == {
        "error": f"Order could not immediately match against any resting orders. asset={ETH}"
    }
    alo = place(world, ALICE, order(ask, "0.5", tif="Alo"))
    assert isinstance(alo, dict)
    assert str(alo["error"]).startswith("Post only order would have immediately matched, bbo was")
    assert world.accounts.next_oid() == oids_before + 1  # refused orders took no oid
    assert statuses(world, ALICE) == {}


@pytest.mark.parametrize(
    ("px", "sz", "error"),
    [
        ("3000.123", "1", "Price must be divisible by tick size."),
        ("3000.5", "0.00001", "Order has invalid size."),
        ("3000.5", "0.001", "Order must have minimum value of $10."),
        ("3000.5", "0", "Order has invalid size."),
    ],
)
def test_malformed_orders_are_refused(world: SimWorld, px: str, sz: str, error: str) -> None:
    assert place(world, ALICE, order(px, sz)) == {"error": f"{error} asset={ETH}"}


def test_margin_and_reduce_only_are_checked(world: SimWorld) -> None:
    bid, _ = top(world)
    far = bid * Decimal("0.9")
    far = (far / tick(world)).to_integral_value() * tick(world)
    assert place(world, ALICE, order(far, "1000")) == {
        "error": f"Insufficient margin to place order. asset={ETH}"
    }
    assert place(world, ALICE, order(far, "0.5", reduce_only=True)) == {
        "error": f"Reduce only order would increase position. asset={ETH}"
    }


def test_two_accounts_trade_with_each_other(world: SimWorld) -> None:
    bid, ask = top(world)
    inside = bid + tick(world) if ask - bid > tick(world) else bid
    place(world, ALICE, order(inside, "0.4"))
    events = Events()
    status = place(world, BOB, order(inside, "0.4", buy=False, tif="Ioc"), events)
    assert isinstance(status, dict) and "filled" in status
    (maker,) = events.fills[ALICE]
    (taker,) = events.fills[BOB]
    assert (maker.px, maker.sz, maker.crossed, maker.side) == (inside, Decimal("0.4"), False, "B")
    assert (taker.px, taker.sz, taker.crossed, taker.side) == (inside, Decimal("0.4"), True, "A")
    assert maker.fee < taker.fee  # maker pays less than taker
    (trade,) = events.trades
    assert trade.users == (ALICE, BOB) and trade.side == "A"
    assert wallet_of(world, ALICE).positions["ETH"].szi == Decimal("0.4")
    assert wallet_of(world, BOB).positions["ETH"].szi == Decimal("-0.4")


def test_an_order_that_would_trade_with_its_own_account_expires_the_maker(
    world: SimWorld,
) -> None:
    bid, ask = top(world)
    inside = bid + tick(world) if ask - bid > tick(world) else bid
    resting = place(world, ALICE, order(inside, "0.4"))
    assert isinstance(resting, dict)
    maker_oid = resting["resting"]["oid"]  # type: ignore[index]
    events = Events()
    place(world, ALICE, order(inside, "0.4", buy=False, tif="Ioc"), events)
    assert statuses(world, ALICE)[maker_oid] == ["open", "selfTradeCanceled"]
    assert all(f.px != inside or f.side == "A" for f in events.fills[ALICE])


def test_a_resting_order_fills_when_the_market_trades_through_it(world: SimWorld) -> None:
    trading = SimWorld(5, START, trade_rate=20.0)
    trading.step(START + 1_000)
    trading.accounts.fund(ALICE, Decimal(100_000), trading.now_ms)
    bid, _ = top(trading)
    status = place(trading, ALICE, order(bid, "0.05"))
    assert isinstance(status, dict)
    oid = status["resting"]["oid"]  # type: ignore[index]
    now = trading.now_ms
    for _ in range(600):
        now += trading.market.tick_ms
        trading.step(now)
        if statuses(trading, ALICE)[oid][-1] == "filled":
            break
    fills = wallet_of(trading, ALICE).fills()
    assert fills and all(f.px == bid and not f.crossed for f in fills)
    assert sum(f.sz for f in fills) == Decimal("0.05")
    assert_legal(trading, ALICE)


def test_a_tick_from_before_an_order_was_placed_does_not_fill_it(world: SimWorld) -> None:
    # The world's clock task ran late: the order is placed at the exchange's "now",
    # ahead of ticks still to be processed. Those ticks' trades did not meet it.
    bid, _ = top(world)
    placed_at = world.now_ms + 500
    coin = world.market.coins[ETH]
    status = world.matcher.place(
        wallet_of(world, ALICE), order(bid, "0.05"), coin, placed_at, Events()
    )
    oid = status["resting"]["oid"]  # type: ignore[index]

    def sell_through(at_ms: int) -> Trade:
        return Trade("ETH", "A", bid, Decimal("1"), at_ms, at_ms, "0x" + "0" * 64, (BOB, BOB))

    earlier = placed_at - 100
    world.matcher.step(earlier, [sell_through(earlier)])
    assert statuses(world, ALICE)[oid] == ["open"] and not wallet_of(world, ALICE).fills()
    world.matcher.step(placed_at + 100, [sell_through(placed_at + 100)])
    assert statuses(world, ALICE)[oid] == ["open", "filled"]
    (fill,) = wallet_of(world, ALICE).fills()
    assert fill.time == placed_at + 100


def test_a_stop_loss_triggers_on_the_mark_and_closes_the_position(world: SimWorld) -> None:
    _, ask = top(world)
    place(world, ALICE, order(ask, "0.2", tif="Ioc"))
    mark = world.market.mark_px("ETH")
    floor = (mark * Decimal("0.9") / tick(world)).to_integral_value() * tick(world)
    stop = Trigger(px=mark + tick(world), is_market=True, tpsl="sl")  # fires: mark <= trigger
    status = place(world, ALICE, order(floor, "0.2", buy=False, reduce_only=True, trigger=stop))
    assert isinstance(status, dict)
    oid = status["resting"]["oid"]  # type: ignore[index]
    (shown,) = [u for u in wallet_of(world, ALICE).open_orders() if u.oid == oid]
    assert shown.tif is None and shown.trigger_condition == f"Price below {stop.px}"
    world.step(world.now_ms + world.market.tick_ms)
    assert statuses(world, ALICE)[oid] == ["open", "triggered", "filled"]
    assert wallet_of(world, ALICE).positions["ETH"].szi == 0
    assert_legal(world, ALICE)


def test_a_closed_position_cancels_its_resting_reduce_only_orders(world: SimWorld) -> None:
    _, ask = top(world)
    place(world, ALICE, order(ask, "0.2", tif="Ioc"))
    high = (ask * Decimal("1.05") / tick(world)).to_integral_value() * tick(world)
    status = place(world, ALICE, order(high, "0.2", buy=False, reduce_only=True))
    assert isinstance(status, dict)
    oid = status["resting"]["oid"]  # type: ignore[index]
    bid, _ = top(world)
    place(world, ALICE, order(bid - 50 * tick(world), "0.2", buy=False, tif="Ioc"))
    assert statuses(world, ALICE)[oid] == ["open", "reduceOnlyCanceled"]


def test_modify_replaces_the_order_and_keeps_its_cloid(world: SimWorld) -> None:
    bid, _ = top(world)
    cloid = "0x" + "0c" * 16
    wallet = wallet_of(world, ALICE)
    coin = world.market.coins[ETH]
    first = place(world, ALICE, order(bid - 5 * tick(world), "0.3", cloid=cloid))
    assert isinstance(first, dict)
    old = first["resting"]["oid"]  # type: ignore[index]
    events = Events()
    moved = world.matcher.modify(
        wallet, cloid, order(bid - 6 * tick(world), "0.2", cloid=cloid), coin, world.now_ms, events
    )
    assert isinstance(moved, dict)
    new = moved["resting"]["oid"]  # type: ignore[index]
    assert new != old and wallet.find_order(cloid) is not None
    assert wallet.find_order(cloid).oid == new  # type: ignore[union-attr]
    assert statuses(world, ALICE) == {old: ["open", "canceled"], new: ["open"]}
    refused = world.matcher.modify(
        wallet, new, order(bid - 6 * tick(world), "1000"), coin, world.now_ms, events
    )
    assert refused == {"error": f"Insufficient margin to place order. asset={ETH}"}
    assert statuses(world, ALICE)[new] == ["open"]  # a refused modify leaves the order be


def test_a_cloid_is_used_once_per_account(world: SimWorld) -> None:
    bid, _ = top(world)
    cloid = "0x" + "0d" * 16
    first = place(world, ALICE, order(bid - 5 * tick(world), "0.3", cloid=cloid))
    assert isinstance(first, dict)
    again = place(world, ALICE, order(bid - 5 * tick(world), "0.3", cloid=cloid))
    oid = first["resting"]["oid"]  # type: ignore[index]
    assert again == {"error": f"Duplicate cloid: already used by order {oid}. asset={ETH}"}
    assert isinstance(place(world, BOB, order(bid - 5 * tick(world), "0.3", cloid=cloid)), dict)


def test_a_scheduled_cancel_cancels_every_open_order_at_its_time(world: SimWorld) -> None:
    bid, _ = top(world)
    wallet = wallet_of(world, ALICE)
    for depth in (500, 600):  # deep enough not to fill while the test waits
        place(world, ALICE, order(bid - depth * tick(world), "0.3"))
    now = world.now_ms
    too_soon = world.matcher.schedule_cancel(wallet, now + 4_000, now)
    assert too_soon is not None and "at least 5 seconds" in too_soon
    assert world.matcher.schedule_cancel(wallet, now + 5_000, now) is None
    world.step(now + 4_900)
    assert len(wallet.open_orders()) == 2
    world.step(now + 5_100)
    assert wallet.open_orders() == []
    assert {tuple(s) for s in statuses(world, ALICE).values()} == {("open", "scheduledCancel")}

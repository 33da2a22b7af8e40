"""The matcher's per-user index of resting orders and the wallets' held totals
(matching.Matcher ladders, accounts.LiveOrders) answer what walking every order did.

Pinned behaviours among many resting orders of one account (a grid bot's), and a
differential check on random sequences: the order-by-order computations the index
replaced, kept here as the reference, against the index, before every step.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from hlgateway.simulator.accounts import LiveOrder, OrderStatus, Wallet
from hlgateway.simulator.actions import Tif, Trigger
from hlgateway.simulator.market import CoinSpec, Side
from hlgateway.simulator.matching import Events, Matcher, Status
from hlgateway.simulator.world import SimWorld

from .test_matching import ALICE, BOB, START, place, wallet_of
from .test_matching import order as spec

BTC, ETH = 0, 1
HYPE = 10_107  # HYPE/USDC spot
CAROL = "0x" + "c4" * 20  # a demo wallet with its own flow, funded to trade too
ZERO = Decimal(0)


@pytest.fixture
def world() -> SimWorld:
    w = SimWorld(5, START, trade_rate=0.0)
    w.step(START + 1_000)
    w.accounts.fund(ALICE, Decimal(100_000), w.now_ms)
    w.accounts.fund(BOB, Decimal(100_000), w.now_ms)
    return w


def coin_of(world: SimWorld, asset: int) -> CoinSpec:
    return world.listing.spot_assets().get(asset) or world.market.coins[asset]


def on_tick(world: SimWorld, asset: int, px: Decimal) -> Decimal:
    tick = coin_of(world, asset).tick
    return (px / tick).to_integral_value() * tick


def oid_of(status: Status) -> int:
    assert isinstance(status, dict) and "resting" in status, status
    resting = status["resting"]
    assert isinstance(resting, dict)
    return int(resting["oid"])


def transitions(events: Events, user: str, status: OrderStatus) -> list[int]:
    return [u.oid for u in events.updates.get(user, []) if u.status == status]


def grid(world: SimWorld, user: str, n: int, *, reduce_only: bool = False) -> list[int]:
    """``n`` bids and ``n`` asks of ``user`` on ETH, 5% to 5% + n ticks from the mid."""
    mid = world.market.mark_px("ETH")
    tick = coin_of(world, ETH).tick
    oids = []
    for i in range(n):
        bid = on_tick(world, ETH, mid * Decimal("0.95")) - i * tick
        ask = on_tick(world, ETH, mid * Decimal("1.05")) + i * tick
        for px, buy in ((bid, True), (ask, False)):
            order = spec(px, "0.01", buy=buy, reduce_only=reduce_only)
            oids.append(oid_of(place(world, user, order)))
    return oids


# -- pinned behaviours among many resting orders ---------------------------------------
def test_closing_a_position_cancels_its_reduce_only_orders_in_placement_order(
    world: SimWorld,
) -> None:
    mid = world.market.mark_px("ETH")
    opened = place(world, ALICE, spec(on_tick(world, ETH, mid * Decimal("1.02")), "0.05"))
    assert isinstance(opened, dict) and "filled" in opened
    plain = grid(world, ALICE, 50)
    # Reduce-only sells among them, placed out of price order, and a BTC one.
    asks = [mid * Decimal(f) for f in ("1.05", "1.03", "1.04")]
    reduce_only = [
        oid_of(
            place(world, ALICE, spec(on_tick(world, ETH, px), "0.01", buy=False, reduce_only=True))
        )
        for px in asks
    ]
    wallet = wallet_of(world, ALICE)
    events = Events()
    closed = place(
        world,
        ALICE,
        spec(on_tick(world, ETH, mid * Decimal("0.98")), "0.05", buy=False, tif="Ioc"),
        events,
    )
    assert isinstance(closed, dict) and "filled" in closed
    assert wallet.positions["ETH"].szi == 0
    assert transitions(events, ALICE, "reduceOnlyCanceled") == reduce_only
    assert sorted(o for o in wallet.live_orders if o in plain) == sorted(plain)


def test_a_taker_expires_exactly_the_own_orders_it_crosses_in_placement_order(
    world: SimWorld,
) -> None:
    mid = world.market.mark_px("ETH")
    tick = coin_of(world, ETH).tick
    # Own asks just above the book's best ask, placed in a shuffled price order.
    best_ask = world.market.book("ETH").asks[0].px
    offsets = [7, 2, 9, 4, 1, 30, 3]
    own = {
        k: oid_of(place(world, ALICE, spec(best_ask + k * tick, "0.01", buy=False)))
        for k in offsets
    }
    grid(world, ALICE, 100)
    limit = best_ask + 5 * tick
    events = Events()
    place(world, ALICE, spec(limit, "0.01", tif="Ioc"), events)
    expected = [own[k] for k in offsets if k <= 5]
    assert transitions(events, ALICE, "selfTradeCanceled") == expected
    assert all(own[k] in wallet_of(world, ALICE).live_orders for k in offsets if k > 5)
    assert mid  # the book was not moved by the test


def test_of_equal_prices_the_first_to_rest_fills_first(world: SimWorld) -> None:
    asks = world.market.book("ETH").asks
    px = asks[1].px  # others' orders there fill before the book's own size at that price
    below = sum((level.sz for level in asks if level.px < px), ZERO)
    grid(world, BOB, 50)
    first = oid_of(place(world, BOB, spec(px, "0.01", buy=False)))
    world.accounts.fund(CAROL, Decimal(100_000), world.now_ms)
    second = oid_of(place(world, CAROL, spec(px, "0.01", buy=False)))
    third = oid_of(place(world, BOB, spec(px, "0.01", buy=False)))
    events = Events()
    place(world, ALICE, spec(px, below + Decimal("0.02"), tif="Ioc"), events)
    filled = [f.oid for user in (BOB, CAROL) for f in events.fills.get(user, [])]
    assert sorted(filled) == sorted([first, second])
    sellers = [t.users[1] for t in events.trades if t.users[1] in (BOB, CAROL)]
    assert sellers == [BOB, CAROL]  # in the order they came to rest
    assert third in wallet_of(world, BOB).live_orders


def test_cancel_and_modify_by_cloid_among_many_resting_orders(world: SimWorld) -> None:
    grid(world, ALICE, 150)
    wallet = wallet_of(world, ALICE)
    mid = world.market.mark_px("ETH")
    px = on_tick(world, ETH, mid * Decimal("0.95"))
    cloid = "0x" + "0f" * 16
    oid = oid_of(place(world, ALICE, spec(px, "0.01", cloid=cloid)))
    coin = coin_of(world, ETH)
    events = Events()
    moved = spec(px - 1, "0.02", cloid=cloid)
    answer = world.matcher.modify(wallet, cloid, moved, coin, world.now_ms, events)
    new_oid = oid_of(answer)
    assert transitions(events, ALICE, "canceled") == [oid]
    assert wallet.live_orders[new_oid].limit_px == px - 1 and wallet.cloids[cloid] == new_oid
    again = spec(px, "0.01", cloid=cloid)
    assert place(world, ALICE, again) == {
        "error": f"Duplicate cloid: already used by order {new_oid}. asset={ETH}"
    }
    assert world.matcher.cancel(wallet, "ETH", cloid, world.now_ms, Events()) == "success"
    assert world.matcher.cancel(wallet, "ETH", cloid, world.now_ms, Events()) == {
        "error": "Order was never placed, already canceled, or filled."
    }
    assert len(wallet.live_orders) == 300


@pytest.mark.parametrize("leverage", [20, 3])
def test_margin_runs_out_at_the_same_order_with_many_resting(
    world: SimWorld, leverage: int
) -> None:
    """200 resting bids of 100 USDC notional hold all of a 1000 / 20 account: the
    201st is refused, and a modify that keeps the size still fits (its own margin is
    not counted twice). At leverage 3 the margins do not divide exactly: the answers
    are the order-by-order sum's."""
    carol = world.accounts.fund(CAROL, Decimal(20_000) / leverage, world.now_ms)
    carol.leverages["ETH"] = leverage
    px = Decimal(2_000)  # far below the market
    sz = Decimal("0.05")  # 100 USDC
    oids = [oid_of(place(world, CAROL, spec(px, sz))) for _ in range(199)]
    oids.append(oid_of(place(world, CAROL, spec(px / 2, sz * 2))))  # the last 100
    refused = place(world, CAROL, spec(px, sz))
    matcher = world.matcher
    free = matcher.free_usdc(carol, world.now_ms)
    view = world.accounts.account_view(CAROL, world.now_ms)
    by_order = matcher._reserved_by_order(carol, None)
    assert free == view.account_value - view.total_margin_used - by_order
    expected_refusal = free < sz * px / leverage
    if leverage == 20:
        assert free == 0 and expected_refusal
    assert (refused == {"error": f"Insufficient margin to place order. asset={ETH}"}) == (
        expected_refusal
    )
    coin = coin_of(world, ETH)
    same = spec(px - 500, sz)
    answer = matcher.modify(carol, oids[0], same, coin, world.now_ms, Events())
    assert isinstance(answer, dict) and "resting" in answer


def test_resting_spot_sells_hold_their_tokens(world: SimWorld) -> None:
    ask = world.market.book("@107").asks[0].px
    bought = place(world, ALICE, spec(on_tick(world, HYPE, ask * Decimal("1.02")), "3", asset=HYPE))
    assert isinstance(bought, dict) and "filled" in bought
    wallet = wallet_of(world, ALICE)
    tokens = wallet.spot["@107"].balance
    far = on_tick(world, HYPE, ask * Decimal("1.5"))
    grid(world, ALICE, 100)
    lot = coin_of(world, HYPE).lot
    lots = int(tokens / lot)
    n = lots // 3
    sells = [
        oid_of(place(world, ALICE, spec(far + i, n * lot, buy=False, asset=HYPE))) for i in range(3)
    ]
    refused = place(world, ALICE, spec(far, n * lot, buy=False, asset=HYPE))
    assert refused == {"error": f"Insufficient spot balance asset={HYPE}"}
    coin = coin_of(world, HYPE)
    # Its own size is not held twice: it may grow to what the other two leave.
    bigger = spec(far, (lots - 2 * n) * lot, buy=False, asset=HYPE)
    answer = world.matcher.modify(wallet, sells[0], bigger, coin, world.now_ms, Events())
    assert isinstance(answer, dict) and "resting" in answer


# -- the differential check ------------------------------------------------------------
def old_best(m: Matcher, coin: str, side: Side, excluding: str | None) -> Decimal | None:
    """``Matcher.best`` as it walked every resting order."""
    m._fresh_tick()
    synthetic = m._market.book(coin)
    levels = synthetic.asks if side == "B" else synthetic.bids
    best: Decimal | None = None
    for level in levels:
        if level.sz - m._taken.get((coin, side, level.px), ZERO) > 0:
            best = level.px
            break
    for wallet, order in m._resting_entries(coin, "A" if side == "B" else "B"):
        if wallet.address == excluding:
            continue
        if best is None or (order.limit_px < best if side == "B" else order.limit_px > best):
            best = order.limit_px
    return best


def old_best_maker(m: Matcher, owner: Wallet, taker: LiveOrder) -> LiveOrder | None:
    best: LiveOrder | None = None
    other: Side = "A" if taker.side == "B" else "B"
    for wallet, order in m._resting_entries(taker.coin, other):
        crosses = (
            order.limit_px <= taker.limit_px
            if taker.side == "B"
            else order.limit_px >= taker.limit_px
        )
        if wallet is owner or not crosses:
            continue
        if best is None or (
            order.limit_px < best.limit_px if taker.side == "B" else order.limit_px > best.limit_px
        ):
            best = order
    return best


def old_own_crossed(m: Matcher, wallet: Wallet, coin: str, buy: bool, px: Decimal) -> list[int]:
    other: Side = "A" if buy else "B"
    return [
        order.oid
        for owner, order in m._resting_entries(coin, other)
        if owner is wallet and (order.limit_px <= px if buy else order.limit_px >= px)
    ]


def old_held(wallet: Wallet) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    held: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = {}
    for order in wallet.live_orders.values():
        if order.tif is None:
            continue
        sz, notional, n = held.get((order.coin, order.side), (ZERO, ZERO, 0))
        add = ZERO if order.reduce_only else order.sz * order.limit_px
        held[order.coin, order.side] = (sz + order.sz, notional + add, n + 1)
    return held


def check(world: SimWorld, users: list[str], rng: random.Random, used: set[str]) -> None:
    m = world.matcher
    for user in users:
        wallet = wallet_of(world, user)
        totals = {k: (h.sz, h.notional, h.orders) for k, h in wallet.live_orders.held.items()}
        assert totals == old_held(wallet)
        live = list(wallet.live_orders.values())
        for replacing in [None, *rng.sample(live, min(3, len(live)))]:
            reserved = m._reserved(wallet, replacing)
            assert reserved == m._reserved_by_order(wallet, replacing)
            if m._reserved_from_totals(wallet, replacing) is not None:
                used.add("totals")
            else:
                used.add("by order")
    for coin in ("BTC", "ETH", "@107"):
        mid = world.market.mark_px(coin)
        for side in ("A", "B"):
            for excluding in (None, *users):
                assert m.best(coin, side, excluding=excluding) == old_best(m, coin, side, excluding)
            for user in users:
                wallet = wallet_of(world, user)
                for f in ("0.97", "0.995", "1.005", "1.03"):
                    taker = LiveOrder(0, coin, side, mid * Decimal(f), ZERO, ZERO, 0, None)
                    found = m._best_maker(wallet, taker)
                    assert (found and found[1]) is old_best_maker(m, wallet, taker)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_answers_what_walking_every_order_did(seed: int) -> None:
    rng = random.Random(seed)
    world = SimWorld(seed, START, trade_rate=3.0)
    world.step(START + 1_000)
    world.accounts.fund(ALICE, Decimal(50_000), world.now_ms)
    world.accounts.fund(BOB, Decimal(50_000), world.now_ms)
    # A demo wallet that also trades through /exchange: its own flow fills and cancels
    # orders behind the matcher's back.
    world.accounts.track(CAROL, world.now_ms)
    world.accounts.fund(CAROL, Decimal(50_000), world.now_ms)
    users = [ALICE, BOB, CAROL]
    used: set[str] = set()
    expired = 0
    for step in range(400):
        if step % 20 == 0:
            check(world, users, rng, used)
        user = rng.choice(users)
        wallet = wallet_of(world, user)
        asset = rng.choice([BTC, ETH, ETH, ETH, HYPE])
        coin = coin_of(world, asset)
        mid = world.market.mark_px(coin.name)
        roll = rng.random()
        mine = [o for o in wallet.live_orders.values() if o.coin == coin.name]
        if roll < 0.08:
            world.step(world.now_ms + world.market.tick_ms * rng.randint(1, 20))
        elif roll < 0.12 and not coin.spot:
            wallet.leverages[coin.name] = rng.choice([3, 7, 10, 20, 25])
        elif roll < 0.27 and mine:
            order = rng.choice(mine)
            key: int | str = order.cloid if order.cloid and rng.random() < 0.5 else order.oid
            world.matcher.cancel(wallet, coin.name, key, world.now_ms, Events())
        elif roll < 0.4 and mine:
            order = rng.choice(mine)
            px = on_tick(world, asset, order.limit_px * Decimal(rng.uniform(0.99, 1.01)))
            new = spec(px, order.orig_sz, buy=order.side == "B", cloid=order.cloid, asset=asset)
            world.matcher.modify(wallet, order.oid, new, coin, world.now_ms, Events())
        else:
            buy = rng.random() < 0.5
            tif: Tif = rng.choice(["Gtc", "Gtc", "Gtc", "Alo", "Ioc"])
            away = Decimal(rng.uniform(-0.03, 0.03))
            px = on_tick(world, asset, mid * (1 + (away if tif != "Ioc" else Decimal("0.02"))))
            if tif == "Ioc" and not buy:
                px = on_tick(world, asset, mid * Decimal("0.98"))
            lots = max(1, int(Decimal(rng.randint(12, 300)) / (px * coin.lot)))
            pos = wallet.positions.get(coin.name)
            reduce_only = not coin.spot and pos is not None and rng.random() < 0.3
            trigger = None
            if rng.random() < 0.08:
                trigger = Trigger(
                    px=px, is_market=rng.random() < 0.5, tpsl=rng.choice(["tp", "sl"])
                )
            cloid = f"0x{rng.getrandbits(128):032x}" if rng.random() < 0.4 else None
            order_spec = spec(
                px,
                lots * coin.lot,
                asset=asset,
                buy=buy,
                tif=tif,
                reduce_only=reduce_only,
                trigger=trigger,
                cloid=cloid,
            )
            predicted = old_own_crossed(world.matcher, wallet, coin.name, buy, px)
            events = Events()
            status = place(world, user, order_spec, events)
            if trigger is None and not (isinstance(status, dict) and "error" in status):
                assert transitions(events, user, "selfTradeCanceled") == predicted
                expired += len(predicted)
        for oid, (_, _, owner, _) in world.matcher._rungs.items():
            if oid not in wallet_of(world, owner).live_orders:
                used.add("stale")  # gone by the demo flow, in the index until met
        for manual in (ALICE, BOB):
            # A manual account's resting reduce-only orders never outlive its position.
            w = wallet_of(world, manual)
            for _, order in world.matcher._resting_entries(coin.name, None):
                if order.reduce_only and order.oid in w.live_orders:
                    held = w.positions.get(coin.name)
                    assert held is not None and held.szi != 0
    check(world, users, rng, used)
    assert used == {"totals", "by order", "stale"}  # both ways of summing margins ran
    assert expired  # self-trade prevention ran

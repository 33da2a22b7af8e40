"""Per-wallet order flow, driven without sockets through SimWorld."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hlgateway.simulator import wire
from hlgateway.simulator.accounts import Fill, OrderStatus, OrderUpdate, legal_transition
from hlgateway.simulator.world import SimWorld

START = 1_700_000_000_000
ALICE = "0x" + "11" * 20
BOB = "0x" + "2F" * 20  # uppercase hex: wallets are keyed case-insensitively
CAROL = "0x" + "c3" * 20


def make_world(seed: int = 1, *, gap_ms: int = 1_000, history_ms: int = 3_000) -> SimWorld:
    return SimWorld(
        seed,
        START,
        tick_ms=50,
        order_interval_ms=200,
        max_fill_gap_ms=gap_ms,
        history_ms=history_ms,
    )


def run(world: SimWorld, until_ms: int, step_ms: int = 50) -> None:
    t = world.now_ms
    while t < until_ms:
        t = min(until_ms, t + step_ms)
        world.step(t)


def fills_of(world: SimWorld, user: str) -> list[Fill]:
    wallet = world.accounts.wallet(user)
    assert wallet is not None
    return wallet.fills()


def orders_of(world: SimWorld, user: str) -> list[OrderUpdate]:
    wallet = world.accounts.wallet(user)
    assert wallet is not None
    return wallet.order_history()


def test_untracked_wallets_do_nothing() -> None:
    world = make_world()
    run(world, START + 5_000)
    assert world.accounts.wallet(ALICE) is None
    view = world.accounts.account_view(ALICE, world.now_ms)
    assert view.account_value == 0 and view.positions == ()


def test_fill_at_least_every_max_fill_gap() -> None:
    world = make_world(gap_ms=1_000, history_ms=0)
    tracked_at = world.now_ms
    world.accounts.track(ALICE, tracked_at)
    world.accounts.track(BOB, tracked_at)
    run(world, START + 60_000)
    for user in (ALICE, BOB):
        times = [tracked_at] + [f.time for f in fills_of(world, user)] + [world.now_ms]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= 1_000, max(gaps)
        assert times == sorted(times)


def test_default_intervals_guarantee_ten_second_gap() -> None:
    world = SimWorld(3, START)  # defaults: 2.5 s order interval, 10 s fill gap
    world.accounts.track(CAROL, world.now_ms)
    run(world, START + 300_000, step_ms=100)
    times = [f.time for f in fills_of(world, CAROL)]
    assert len(times) > 30
    assert max(b - a for a, b in itertools.pairwise(times)) <= 10_000
    events = orders_of(world, CAROL)
    # "an order event every few seconds": on average at least one per 5 s.
    assert len(events) >= 300_000 // 5_000


def test_status_transitions_are_legal_and_sizes_add_up() -> None:
    world = make_world()
    world.accounts.track(ALICE, world.now_ms)
    run(world, START + 30_000)
    last: dict[int, OrderStatus] = {}
    remaining: dict[int, Decimal] = {}
    seen_statuses: set[str] = set()
    partial = False
    for update in orders_of(world, ALICE):
        assert legal_transition(last.get(update.oid), update.status), update
        if update.oid in remaining:
            assert update.sz <= remaining[update.oid]
            partial |= update.status == "open" and update.sz < remaining[update.oid]
        else:
            assert update.sz == update.orig_sz
        last[update.oid] = update.status
        remaining[update.oid] = update.sz
        seen_statuses.add(update.status)
        if update.status == "filled":
            assert update.sz == 0
    assert seen_statuses == {"open", "filled", "canceled"}
    assert partial, "expected at least one partial fill"
    filled: dict[int, Decimal] = {}
    for f in fills_of(world, ALICE):
        filled[f.oid] = filled.get(f.oid, Decimal(0)) + f.sz
    wallet = world.accounts.wallet(ALICE)
    assert wallet is not None
    for oid, qty in filled.items():
        final = wallet.find_order(oid)
        assert final is not None
        assert final.orig_sz - final.sz == qty
    assert {u.oid for u in wallet.open_orders()} == {o for o, s in last.items() if s == "open"}


def test_tids_unique_per_wallet_and_oids_unique_globally() -> None:
    world = make_world()
    for user in (ALICE, BOB, CAROL):
        world.accounts.track(user, world.now_ms)
    run(world, START + 20_000)
    placements: list[int] = []
    for user in (ALICE, BOB, CAROL):
        tids = [f.tid for f in fills_of(world, user)]
        assert len(tids) == len(set(tids))
        placements += [u.oid for u in orders_of(world, user) if u.status == "open"]
        hashes = [f.hash for f in fills_of(world, user)]
        assert len(hashes) == len(set(hashes))
    first_seen = list(dict.fromkeys(placements))
    owners: dict[int, str] = {}
    for user in (ALICE, BOB, CAROL):
        for u in orders_of(world, user):
            assert owners.setdefault(u.oid, user) == user
    assert len(first_seen) == len(owners)


def test_a_run_started_later_with_the_same_seed_repeats_no_tid_or_oid() -> None:
    # `make serve` again after Ctrl-C: a new simulator, the same seed, the gateway's
    # state directory kept. Its exactly-once ledger knows the last run's tids: had the
    # new run drawn the same ones, the gateway would have dropped its first fills.
    ids: list[tuple[set[int], set[int], set[str]]] = []
    for start in (START, START + 90_000):
        world = SimWorld(1, start, tick_ms=50, order_interval_ms=200, max_fill_gap_ms=1_000)
        world.accounts.track(ALICE, start)
        until = start + 20_000
        while world.now_ms < until:
            world.step(world.now_ms + 50)
        fills = fills_of(world, ALICE)
        ids.append(
            (
                {f.tid for f in fills},
                {u.oid for u in orders_of(world, ALICE)},
                {f.hash for f in fills},
            )
        )
    (tids, oids, hashes), (later_tids, later_oids, later_hashes) = ids
    assert tids and later_tids and oids and later_oids
    assert not tids & later_tids and not oids & later_oids and not hashes & later_hashes


def test_positions_follow_fills() -> None:
    world = make_world()
    world.accounts.track(BOB, world.now_ms)
    run(world, START + 30_000)
    running: dict[str, Decimal] = {}
    for f in fills_of(world, BOB):
        if world.listing.is_spot(f.coin):
            continue  # balances, not positions: test_spot_fills_move_balances
        start = running.get(f.coin, Decimal(0))
        assert f.start_position == start
        signed = f.sz if f.side == "B" else -f.sz
        new = start + signed
        if start == 0 or (start > 0) == (signed > 0):
            assert f.dir == ("Open Long" if f.side == "B" else "Open Short")
            assert f.closed_pnl == 0
        elif (start > 0) == (new > 0) or new == 0:
            assert f.dir == ("Close Long" if start > 0 else "Close Short")
        else:
            assert f.dir in ("Long > Short", "Short > Long")
        assert f.fee > 0 and f.fee_token == "USDC"
        running[f.coin] = new
    view = world.accounts.account_view(BOB, world.now_ms)
    held = {p.coin: p.szi for p in view.positions}
    on_main = {c: szi for c, szi in running.items() if world.listing.dex_of(c) == ""}
    assert held == {coin: szi for coin, szi in on_main.items() if szi != 0}
    for p in view.positions:
        assert p.position_value == (abs(p.szi) * world.market.mark_px(p.coin)).quantize(
            Decimal("1e-6")
        )
        assert 1 <= p.leverage <= p.max_leverage
    assert view.account_value > 0
    state = wire.clearinghouse_state(view)
    assert state["marginSummary"] == state["crossMarginSummary"]
    for row in state["assetPositions"]:
        assert row["type"] == "oneWay" and row["position"]["leverage"]["type"] == "cross"
        assert set(row["position"]["cumFunding"]) == {"allTime", "sinceOpen", "sinceChange"}


def test_same_seed_same_wallet_data_regardless_of_subscription_order() -> None:
    def fingerprint(world: SimWorld, user: str) -> list[tuple[object, ...]]:
        # oids come from one global counter, so they depend on the other wallets;
        # everything else about a wallet's flow must not.
        return [(f.coin, f.px, f.sz, f.side, f.time, f.tid, f.hash) for f in fills_of(world, user)]

    first = make_world(seed=5)
    first.accounts.track(ALICE, first.now_ms)
    first.accounts.track(BOB, first.now_ms)
    run(first, START + 15_000)

    second = make_world(seed=5)
    second.accounts.track(BOB, second.now_ms)
    second.accounts.track(ALICE.upper().replace("0X", "0x"), second.now_ms)
    run(second, START + 15_000, step_ms=170)

    assert fingerprint(first, ALICE) == fingerprint(second, ALICE)
    assert fingerprint(first, BOB) == fingerprint(second, BOB)
    assert fingerprint(first, ALICE) != fingerprint(first, BOB)

    other_seed = make_world(seed=6)
    other_seed.accounts.track(ALICE, other_seed.now_ms)
    run(other_seed, START + 15_000)
    assert fingerprint(other_seed, ALICE) != fingerprint(first, ALICE)


def test_first_tracking_invents_history_and_untrack_pauses() -> None:
    world = make_world(history_ms=3_000)
    run(world, START + 1_000)
    world.accounts.track(ALICE, world.now_ms)
    history = fills_of(world, ALICE)
    assert history, "first subscription should see some recent fills"
    assert all(world.now_ms - 3_000 <= f.time <= world.now_ms for f in history)
    world.accounts.untrack(ALICE)
    count = len(orders_of(world, ALICE))
    run(world, START + 10_000)
    assert len(orders_of(world, ALICE)) == count
    resumed_at = world.now_ms
    world.accounts.track(ALICE, resumed_at)
    assert len(orders_of(world, ALICE)) == count  # no invented history the second time
    run(world, START + 15_000)
    later = [f for f in fills_of(world, ALICE) if f.time > resumed_at]
    assert later and later[0].time - resumed_at <= 1_000


def test_step_reports_activity_per_wallet_in_order() -> None:
    world = make_world(history_ms=0)
    world.accounts.track(ALICE, world.now_ms)
    emitted_updates: list[OrderUpdate] = []
    emitted_fills: list[Fill] = []
    t = world.now_ms
    for _ in range(200):
        t += 50
        for act in world.step(t).activities:
            assert act.user == ALICE.lower()
            emitted_updates += act.order_updates
            emitted_fills += act.fills
    assert emitted_updates == orders_of(world, ALICE)
    assert emitted_fills == fills_of(world, ALICE)


def test_cloid_lookup() -> None:
    world = make_world()
    world.accounts.track(ALICE, world.now_ms)
    run(world, START + 10_000)
    wallet = world.accounts.wallet(ALICE)
    assert wallet is not None
    with_cloid = [u for u in wallet.latest_orders() if u.cloid is not None]
    assert with_cloid
    target = with_cloid[0]
    assert target.cloid is not None
    assert wallet.find_order(target.cloid.upper().replace("0X", "0x")) == target
    assert wallet.find_order(target.oid) == target
    assert wallet.find_order(1) is None

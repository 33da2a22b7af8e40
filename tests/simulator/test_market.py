"""The market model, driven without sockets."""

from __future__ import annotations

from decimal import Decimal

from hlgateway.simulator import wire
from hlgateway.simulator.market import (
    BOOK_DEPTH,
    DEFAULT_COINS,
    Book,
    MarketModel,
    Trade,
    aggregate_book,
)

START = 1_700_000_000_000


def run(model: MarketModel, seconds: float, step_ms: int) -> list[Trade]:
    trades: list[Trade] = []
    end = START + int(seconds * 1000)
    t = START
    while t < end:
        t = min(end, t + step_ms)
        trades.extend(model.step(t))
    return trades


def snapshot(model: MarketModel) -> list[Book]:
    return [model.book(spec.name) for spec in model.coins]


def test_universe_is_realistic() -> None:
    names = [spec.name for spec in DEFAULT_COINS]
    assert len(names) >= 10
    assert {"BTC", "ETH", "SOL", "ARB", "AVAX", "DOGE", "MATIC", "kPEPE"} <= set(names)
    model = MarketModel(0, START)
    assert model.spec("kPEPE") is not None
    assert model.spec("KPEPE") is None  # coin names are case-sensitive
    btc = model.spec("BTC")
    assert btc is not None and btc.sz_decimals == 5 and btc.tick == Decimal(1)


def test_same_seed_same_data_regardless_of_step_batching() -> None:
    a, b = MarketModel(42, START), MarketModel(42, START)
    trades_a = run(a, 30, 100)
    trades_b = run(b, 30, 1_700)
    assert trades_a and trades_a == trades_b
    assert snapshot(a) == snapshot(b)
    assert a.mids() == b.mids()
    assert [a.ctx(s.name) for s in a.coins] == [b.ctx(s.name) for s in b.coins]


def test_different_seeds_differ() -> None:
    a, b = MarketModel(1, START), MarketModel(2, START)
    run(a, 5, 100)
    run(b, 5, 100)
    assert a.mids() != b.mids()


def test_books_sorted_on_grid_and_formatted() -> None:
    model = MarketModel(3, START)
    for _ in range(20):
        model.step(model.now_ms + 500)
        for spec in model.coins:
            book = model.book(spec.name)
            assert len(book.bids) == BOOK_DEPTH and len(book.asks) == BOOK_DEPTH
            bids = [lvl.px for lvl in book.bids]
            asks = [lvl.px for lvl in book.asks]
            assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
            assert asks == sorted(asks) and len(set(asks)) == len(asks)
            assert bids[0] < asks[0]
            for lvl in (*book.bids, *book.asks):
                assert lvl.px % spec.tick == 0 and lvl.px > 0
                assert lvl.sz % spec.lot == 0 and lvl.sz > 0
                assert lvl.n >= 1
                # Hyperliquid: <= 6 - szDecimals decimals and <= 5 significant figures
                # (integers are always allowed).
                text = wire.num(lvl.px)
                decimals = len(text.split(".")[1].rstrip("0"))
                assert decimals <= 6 - spec.sz_decimals
                digits = text.replace(".", "").lstrip("0").rstrip("0")
                assert lvl.px == lvl.px.to_integral_value() or len(digits) <= 5
            mid = model.mid(spec.name)
            assert bids[0] < mid < asks[0]


def test_trades_have_unique_increasing_tids_per_coin() -> None:
    model = MarketModel(5, START)
    trades = run(model, 60, 250)
    by_coin: dict[str, list[Trade]] = {}
    for t in trades:
        by_coin.setdefault(t.coin, []).append(t)
    assert len(by_coin) == len(model.coins)
    for coin_trades in by_coin.values():
        tids = [t.tid for t in coin_trades]
        assert tids == sorted(tids) and len(set(tids)) == len(tids)
    for t in trades:
        spec = model.spec(t.coin)
        assert spec is not None
        assert t.side in ("B", "A")
        assert t.hash.startswith("0x") and len(t.hash) == 66
        assert len(t.users) == 2 and t.users[0] != t.users[1]
        assert all(u.startswith("0x") and len(u) == 42 for u in t.users)
        assert t.sz > 0 and t.sz % spec.lot == 0
        assert START < t.time <= model.now_ms
    assert model.recent_trades("BTC", 5) == by_coin["BTC"][-5:]


def test_trades_execute_at_the_touch() -> None:
    model = MarketModel(9, START)
    for _ in range(300):
        for t in model.step(model.now_ms + 100):
            book = model.book(t.coin)
            assert t.px == (book.asks[0].px if t.side == "B" else book.bids[0].px)


def test_asset_ctx_is_consistent() -> None:
    model = MarketModel(11, START)
    run(model, 10, 100)
    for spec in model.coins:
        ctx = model.ctx(spec.name)
        book = model.book(spec.name)
        assert ctx.mid_px == (book.bids[0].px + book.asks[0].px) / 2
        assert ctx.mark_px % spec.tick == 0
        assert ctx.impact_pxs[0] <= book.bids[0].px and ctx.impact_pxs[1] >= book.asks[0].px
        assert ctx.prev_day_px > 0 and ctx.day_ntl_vlm > 0 and ctx.day_base_vlm > 0
        assert ctx.open_interest > 0 and ctx.oracle_px > 0
        assert abs(ctx.funding) <= Decimal("0.0004")
        formatted = wire.asset_ctx(ctx)
        assert all(isinstance(v, str) for k, v in formatted.items() if k != "impactPxs")


def test_step_ignores_time_going_backwards_and_huge_jumps() -> None:
    model = MarketModel(0, START)
    model.step(START + 1_000)
    before = model.now_ms
    assert model.step(START) == []
    assert model.now_ms == before
    model.step(START + 10 * 24 * 3_600_000)  # ten days later: jumps, does not replay
    assert model.now_ms == START + 10 * 24 * 3_600_000


def test_aggregate_book_buckets_levels() -> None:
    model = MarketModel(0, START)
    book = model.book("BTC")
    agg = aggregate_book(book, 3, None)
    for side, levels in ((book.bids, agg.bids), (book.asks, agg.asks)):
        assert sum(lvl.sz for lvl in levels) == sum(lvl.sz for lvl in side)
        assert sum(lvl.n for lvl in levels) == sum(lvl.n for lvl in side)
        assert all(lvl.px % 100 == 0 for lvl in levels)
    assert agg.bids[0].px <= book.bids[0].px and agg.asks[0].px >= book.asks[0].px
    assert aggregate_book(book, None, None) is book
    fine = aggregate_book(book, 5, 5)
    assert all(lvl.px % 5 == 0 for lvl in (*fine.bids, *fine.asks))

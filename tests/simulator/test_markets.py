"""Spot pairs, a builder dex, candles and cashflows of the simulated exchange, sans I/O."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hlgateway.simulator import wire
from hlgateway.simulator.candles import INTERVALS, PREHISTORY, CandleBook, bounds
from hlgateway.simulator.info import handle_info
from hlgateway.simulator.listing import Listing
from hlgateway.simulator.market import Trade
from hlgateway.simulator.world import SimWorld

from .test_accounts import ALICE, BOB, START, fills_of, run

LIQUID = "0x" + "d4" * 20


def busy_world(seed: int = 3) -> SimWorld:
    # Short cashflow intervals so that a few simulated minutes see every kind.
    return SimWorld(
        seed,
        START,
        tick_ms=50,
        order_interval_ms=200,
        max_fill_gap_ms=1_000,
        history_ms=3_000,
        funding_interval_ms=5_000,
        transfer_interval_ms=3_000,
        liquidation_interval_ms=20_000,
    )


def test_listing_names_markets_as_hyperliquid_does() -> None:
    listing = Listing()
    coins = [spec.name for spec in listing.coins()]
    assert coins[:3] == ["BTC", "ETH", "SOL"]
    assert {"PURR/USDC", "@107", "@142", "xyz:XYZ100", "xyz:TSLA"} <= set(coins)
    hype = listing.pair("@107")
    assert hype is not None and hype.display_name == "HYPE/USDC" and not hype.canonical
    assert listing.dex_of("xyz:TSLA") == "xyz" and listing.dex_of("@107") == ""
    assert listing.main_mids_coins()[-3:] == ("PURR/USDC", "@107", "@142")
    spot = wire.spot_meta(listing)
    tokens = {t["index"]: t["name"] for t in spot["tokens"]}
    names = {
        u["name"]: f"{tokens[u['tokens'][0]]}/{tokens[u['tokens'][1]]}" for u in spot["universe"]
    }
    assert names == {"PURR/USDC": "PURR/USDC", "@107": "HYPE/USDC", "@142": "UBTC/USDC"}


def test_spot_prices_keep_spot_decimals() -> None:
    listing = Listing()
    purr = next(s for s in listing.coins() if s.name == "PURR/USDC")
    # 0.113: 5 significant figures (8 - szDecimals 0 would allow 8 decimals)
    assert purr.spot and purr.px_decimals == 5
    ubtc = next(s for s in listing.coins() if s.name == "@142")
    assert ubtc.px_decimals == 0


def test_spot_fills_move_balances_not_positions() -> None:
    world = busy_world()
    for user in (ALICE, BOB, LIQUID):
        world.accounts.track(user, world.now_ms)
    run(world, START + 60_000)
    seen_spot = 0
    for user in (ALICE, BOB, LIQUID):
        wallet = world.accounts.wallet(user)
        assert wallet is not None
        balance: dict[str, Decimal] = defaultdict(Decimal)
        for f in fills_of(world, user):
            pair = world.listing.pair(f.coin)
            if pair is None:
                continue
            seen_spot += 1
            assert f.start_position == balance[f.coin]
            assert f.dir == ("Buy" if f.side == "B" else "Sell")
            if f.side == "B":
                assert f.fee_token == pair.base.name and f.closed_pnl == 0
                balance[f.coin] += f.sz - f.fee
            else:
                assert f.fee_token == pair.quote.name
                assert f.sz <= balance[f.coin], "never sells what it does not hold"
                balance[f.coin] -= f.sz
            assert f.coin not in wallet.positions
        for coin, amount in balance.items():
            assert wallet.spot[coin].balance == amount
    assert seen_spot > 0


def test_builder_fees_and_liquidations_show_on_fills() -> None:
    world = busy_world()
    world.accounts.track(LIQUID, world.now_ms)
    run(world, START + 120_000)
    fills = fills_of(world, LIQUID)
    assert any(f.builder_fee is not None and f.builder_fee > 0 for f in fills)
    liquidated = [f for f in fills if f.liquidation is not None]
    wallet = world.accounts.wallet(LIQUID)
    assert wallet is not None
    liquidations = [u for u in wallet.ledger_updates() if u.kind == "liquidation"]
    assert liquidated and liquidations
    for entry in liquidations:
        closed = {(f.coin, f.time) for f in liquidated if f.time == entry.time}
        assert {(p["coin"], entry.time) for p in entry.delta["liquidatedPositions"]} == closed
    for f in liquidated:
        assert f.liquidation is not None and f.liquidation["method"] == "market"
        assert f.crossed and f.dir.startswith("Close")
        row = wire.fill(f)
        assert row["liquidation"]["liquidatedUser"] == LIQUID
        assert isinstance(row["liquidation"]["markPx"], str)


def test_funding_every_interval_and_transfers_move_the_balance() -> None:
    world = busy_world()
    world.accounts.track(ALICE, world.now_ms)
    run(world, START + 60_000)
    wallet = world.accounts.wallet(ALICE)
    assert wallet is not None
    fundings = wallet.fundings()
    assert fundings and all(p.time % 5_000 == 0 for p in fundings)
    assert len({(p.coin, p.time) for p in fundings}) == len(fundings)
    kinds = {u.kind for u in wallet.ledger_updates()}
    assert {"deposit", "withdraw"} <= kinds
    hashes = [(u.hash, u.kind) for u in wallet.ledger_updates()]
    assert len(hashes) == len(set(hashes))
    ws = wire.ws_funding(fundings[0])
    rest = wire.rest_funding(fundings[0])
    assert set(ws) == {"time", "coin", "usdc", "szi", "fundingRate", "nSamples"}
    assert rest["delta"]["type"] == "funding" and rest["time"] == ws["time"]
    assert rest["delta"]["usdc"] == ws["usdc"]


def test_rest_answers_every_market_kind() -> None:
    world = busy_world()
    world.accounts.track(ALICE, world.now_ms)
    run(world, START + 20_000)
    mids = handle_info(world, {"type": "allMids"})
    assert "@107" in mids and "BTC" in mids and "xyz:TSLA" not in mids
    assert set(handle_info(world, {"type": "allMids", "dex": "xyz"})) == {"xyz:XYZ100", "xyz:TSLA"}
    meta = handle_info(world, {"type": "meta", "dex": "xyz"})
    assert [a["name"] for a in meta["universe"]] == ["xyz:XYZ100", "xyz:TSLA"]
    spot_meta, ctxs = handle_info(world, {"type": "spotMetaAndAssetCtxs"})
    assert [c["coin"] for c in ctxs] == [u["name"] for u in spot_meta["universe"]]
    assert set(ctxs[1]) == {
        "prevDayPx", "dayNtlVlm", "markPx", "midPx", "circulatingSupply", "coin",
        "totalSupply", "dayBaseVlm",
    }  # fmt: skip
    dex_state = handle_info(world, {"type": "clearinghouseState", "user": ALICE, "dex": "xyz"})
    main_state = handle_info(world, {"type": "clearinghouseState", "user": ALICE})
    assert all(p["position"]["coin"].startswith("xyz:") for p in dex_state["assetPositions"])
    assert not any(p["position"]["coin"].startswith("xyz:") for p in main_state["assetPositions"])
    funding = handle_info(world, {"type": "userFunding", "user": ALICE, "startTime": 0})
    ledger = handle_info(
        world, {"type": "userNonFundingLedgerUpdates", "user": ALICE, "startTime": 0}
    )
    wallet = world.accounts.wallet(ALICE)
    assert wallet is not None
    assert len(funding) == len(wallet.fundings()) and len(ledger) == len(wallet.ledger_updates())
    assert [e["time"] for e in ledger] == sorted(e["time"] for e in ledger)
    spot = handle_info(world, {"type": "spotClearinghouseState", "user": ALICE})
    assert spot["balances"][0]["coin"] == "USDC"


def test_candle_bounds_follow_hyperliquids_calendar() -> None:
    t = int(datetime(2025, 11, 13, 15, 37, 12, tzinfo=UTC).timestamp() * 1000)
    assert bounds("1m", t) == (t - 12_000, t - 12_000 + 59_999)
    day = int(datetime(2025, 11, 13, tzinfo=UTC).timestamp() * 1000)
    assert bounds("1d", t) == (day, day + 86_400_000 - 1)
    monday = int(datetime(2025, 11, 10, tzinfo=UTC).timestamp() * 1000)
    assert bounds("1w", t)[0] == monday
    first = int(datetime(2025, 11, 1, tzinfo=UTC).timestamp() * 1000)
    december = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp() * 1000)
    assert bounds("1M", t) == (first, december - 1)
    dec = int(datetime(2025, 12, 31, 23, tzinfo=UTC).timestamp() * 1000)
    january = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert bounds("1M", dec)[1] == january - 1


def trade(coin: str, px: str, sz: str, time: int, tid: int) -> Trade:
    return Trade(coin, "B", Decimal(px), Decimal(sz), time, tid, "0x", ("0x1", "0x2"))


def test_candles_fold_trades() -> None:
    listing = Listing()
    start = 1_700_000_040_000  # a whole minute
    book = CandleBook(1, start, listing.coins())
    changed = book.add(
        [
            trade("@107", "41.3", "2", start + 1_000, 1),
            trade("@107", "41.5", "1", start + 2_000, 2),
            trade("@107", "41.1", "0.5", start + 59_000, 3),
            trade("@107", "41.2", "1", start + 61_000, 4),
        ]
    )
    assert changed == {("@107", interval) for interval in INTERVALS}
    minute = book.history("@107", "1m", start, start + 120_000)
    assert [(c.o, c.h, c.l, c.c, c.v, c.n) for c in minute] == [
        (Decimal("41.3"), Decimal("41.5"), Decimal("41.1"), Decimal("41.1"), Decimal("3.5"), 3),
        (Decimal("41.2"), Decimal("41.2"), Decimal("41.2"), Decimal("41.2"), Decimal("1"), 1),
    ]
    current = book.current("@107", "1h")
    assert current is not None and current.n == 4 and current.v == Decimal("4.5")


def test_candle_prehistory_ends_where_live_begins() -> None:
    listing = Listing()
    start = 1_700_000_000_000
    book = CandleBook(1, start, listing.coins())
    book.add([trade("BTC", "97000", "0.1", start + 5, 1)])
    series = book.history("BTC", "5m", 0, start + 600_000)
    assert len(series) == PREHISTORY + 1
    times = [c.t for c in series]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(c.T - c.t + 1 == 300_000 for c in series)
    assert series[-1].n == 1 and series[-2].t < start
    for c in series:
        assert c.l <= min(c.o, c.c) <= max(c.o, c.c) <= c.h
    again = CandleBook(1, start, listing.coins()).history("BTC", "5m", 0, start)
    assert again == series[:-1], "invented history is a function of the seed"


@pytest.mark.parametrize("interval", ["1m", "1h", "1w", "1M"])
def test_candle_snapshot_over_rest(interval: str) -> None:
    world = busy_world()
    run(world, START + 5_000)
    rows = handle_info(
        world,
        {
            "type": "candleSnapshot",
            "req": {"coin": "@107", "interval": interval, "startTime": 0, "endTime": START + 5_000},
        },
    )
    assert len(rows) >= PREHISTORY
    assert set(rows[-1]) == {"t", "T", "s", "i", "o", "c", "h", "l", "v", "n"}
    assert rows[-1]["s"] == "@107" and rows[-1]["i"] == interval

"""Real recorded mainnet responses through the upstream parser: exact values out,
nothing dropped (tests/fixtures/hyperliquid/PROVENANCE.md says where each comes from)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from hlgateway.protocol.markets import Markets
from hlgateway.upstream import wire

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hyperliquid"
LEDGER_USER = "0x2ba553d9f990a3b66b03b2dc0d030dfc1c061036"
FILLS_USER = "0xb7b6f3cea3f66bf525f5d8f965f6dbf6d9b017b2"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def loaded(name: str) -> Any:
    return json.loads(raw(name))


def test_spot_pairs_are_named_from_their_tokens() -> None:
    listing = wire.parse_spot_meta_and_ctxs(raw("spot_meta_and_asset_ctxs.json"))
    meta, ctxs = loaded("spot_meta_and_asset_ctxs.json")
    assert len(listing.markets) == len(meta["universe"]) == 233
    markets = Markets(listing.markets)
    hype = markets.lookup("@107")
    assert hype is not None and hype.symbol == "HYPE/USDC" and hype.coin == "@107"
    assert hype.kind == "spot" and hype.sz_decimals == 2 and hype.aliases == ("@107",)
    assert markets.resolve("hype/usdc") == "HYPE/USDC"
    purr = markets.lookup("PURR/USDC")
    assert purr is not None and purr.coin == "PURR/USDC" and purr.aliases == ()
    assert markets.resolve("@142") == "UBTC/USDC"
    assert markets.symbol_of("@107") == "HYPE/USDC" and markets.coin_of("HYPE/USDC") == "@107"
    # Every pair gets a name of its own, and every one of them resolves back.
    assert len(set(markets.names)) == len(meta["universe"])
    tokens = {t["index"]: t["name"] for t in meta["tokens"]}
    for pair in meta["universe"]:
        base, quote = (tokens[i] for i in pair["tokens"])
        assert markets.symbol_of(pair["name"]) == f"{base}/{quote}"
    # Contexts name their pair and are not in the universe's order (16 are of pairs
    # the universe no longer lists): every one is read, exactly.
    by_coin = {c["coin"]: c for c in ctxs}
    assert set(listing.contexts) == set(by_coin) > {p["name"] for p in meta["universe"]}
    for coin, ctx in listing.contexts.items():
        assert ctx.mark_px == float(by_coin[coin]["markPx"])
        assert ctx.prev_day_px == float(by_coin[coin]["prevDayPx"])
        assert ctx.day_ntl_vlm == float(by_coin[coin]["dayNtlVlm"])
    assert listing.contexts["@107"].mark_px == 41.328


def test_ledger_updates_keep_every_entry_and_field() -> None:
    rows = loaded("user_non_funding_ledger_updates.json")
    events = wire.parse_rest_ledger(raw("user_non_funding_ledger_updates.json"), LEDGER_USER)
    assert len(events) == len(rows) == 146
    assert len({e.id for e in events}) == len(events)
    for event, row in zip(events, rows, strict=True):
        assert event.raw == row["delta"], "Hyperliquid's delta, untouched"
        assert event.time == row["time"] and event.hash == row["hash"]
        assert event.id == f"{row['hash']}:{row['delta']['type']}"
        assert event.wallet == LEDGER_USER
    kinds = Counter(e.kind for e in events)
    assert kinds == {
        "transfer": 83,  # accountClassTransfer 76, subAccountTransfer 6, internalTransfer 1
        "spot_transfer": 31,
        "deposit": 11,
        "withdraw": 11,
        "other": 9,  # spotGenesis 8, cStakingTransfer 1
        "liquidation": 1,
    }
    first = events[0]
    assert first.kind == "deposit" and first.amount == 2703997.4500000002 and first.token == "USDC"
    withdraw = next(e for e in events if e.kind == "withdraw")
    assert withdraw.amount == -float(withdraw.raw["usdc"]) and withdraw.fee == 1.0
    spot = next(e for e in events if e.kind == "spot_transfer")
    assert spot.raw["user"] == LEDGER_USER and spot.amount == -10.5
    assert spot.counterparty == "0xaaa0c2769cb990f4f37db951a9e48de2385c2733"
    liquidation = next(e for e in events if e.kind == "liquidation")
    assert liquidation.amount == 713779.9733
    assert liquidation.raw["liquidatedPositions"] == [{"coin": "TRUMP", "szi": "-12511.7"}]
    staking = next(e for e in events if e.raw["type"] == "cStakingTransfer")
    assert staking.token == "HYPE" and staking.amount == -89968.0


def test_funding_payments_are_keyed_by_coin_and_time() -> None:
    rows = loaded("user_funding.json")
    events = wire.parse_rest_ledger(raw("user_funding.json"), FILLS_USER)
    assert len(events) == len(rows)
    assert len({e.id for e in events}) == len(events)
    for event, row in zip(events, rows, strict=True):
        delta = row["delta"]
        assert event.kind == "funding" and event.time == row["time"]
        assert event.id == f"funding:{delta['coin']}:{row['time']}"
        assert event.symbol == delta["coin"] and event.amount == float(delta["usdc"])
        assert event.rate == float(delta["fundingRate"]) and event.size == float(delta["szi"])
    # The same payment from the WebSocket (no hash there) gets the same id.
    row = rows[0]
    ws = wire.funding_event(
        row["time"],
        row["delta"]["coin"],
        row["delta"]["usdc"],
        row["delta"]["szi"],
        row["delta"]["fundingRate"],
        FILLS_USER,
    )
    assert ws.id == events[0].id


def test_recorded_fills_carry_every_field() -> None:
    rows = loaded("user_fills.json")
    fills = wire.parse_rest_fills(raw("user_fills.json"), FILLS_USER)
    assert len(fills) == len(rows) == 500
    assert len({f.id for f in fills}) == len(fills), "derived ids are unique too"
    for fill, row in zip(fills, rows, strict=True):
        assert "tid" not in row  # recorded in 2023: Hyperliquid had no tid yet
        assert fill.symbol == row["coin"] and fill.orderId == row["oid"]
        assert fill.price == float(row["px"]) and fill.size == float(row["sz"])
        assert fill.fee == float(row["fee"]) and fill.closedPnl == float(row["closedPnl"])
        assert fill.startPosition == float(row["startPosition"])
        assert fill.crossed is row["crossed"] and fill.direction == row["dir"]
        assert fill.hash == row["hash"] and fill.timestamp == row["time"]
        assert fill.side == ("buy" if row["side"] == "B" else "sell")
        assert fill.market == "perp"
        assert isinstance(fill.raw, msgspec.UnsetType), "every recorded field is modelled"
        assert 0 < fill.id < 2**53


def test_a_current_fill_keeps_builder_fee_twap_and_liquidation() -> None:
    # Today's shape (Hyperliquid's docs and SDK types): tid, feeToken, builderFee,
    # twapId, liquidation, and a field we do not know, which lands under `raw`.
    frame = {
        "channel": "userFills",
        "data": {
            "user": FILLS_USER,
            "fills": [
                {
                    "coin": "@107", "px": "41.33", "sz": "12.5", "side": "B", "time": 1,
                    "startPosition": "0.0", "dir": "Buy", "closedPnl": "0.0",
                    "hash": "0x" + "ab" * 32, "oid": 7, "crossed": True, "fee": "0.005625",
                    "tid": 99, "feeToken": "HYPE", "builderFee": "0.05", "twapId": 5,
                    "liquidation": {"liquidatedUser": "0x" + "CD" * 20, "markPx": "41.3",
                                    "method": "market"},
                    "somethingNew": [1, 2],
                }
            ],
        },
    }  # fmt: skip
    event = wire.parse(json.dumps(frame))
    assert isinstance(event, wire.Fills)
    (fill,) = event.fills
    assert fill.market == "spot" and fill.feeToken == "HYPE" and fill.direction == "Buy"
    assert fill.builderFee == 0.05 and fill.twapId == 5 and fill.id == 99
    assert not isinstance(fill.liquidation, msgspec.UnsetType)
    assert fill.liquidation.markPrice == 41.3 and fill.liquidation.method == "market"
    assert fill.liquidation.liquidatedUser == "0x" + "cd" * 20
    assert fill.raw == {"somethingNew": [1, 2]}
    encoded = json.loads(msgspec.json.encode(fill))
    assert encoded["builderFee"] == 0.05 and encoded["liquidation"]["markPrice"] == 41.3
    plain = msgspec.structs.replace(
        fill, builderFee=msgspec.UNSET, twapId=msgspec.UNSET, liquidation=msgspec.UNSET
    )
    assert not {"builderFee", "twapId", "liquidation"} & set(json.loads(msgspec.json.encode(plain)))


def test_recorded_candles_and_book_and_account() -> None:
    rows = loaded("candle_snapshot.json")
    candles = wire.parse_candles(raw("candle_snapshot.json"))
    assert len(candles) == len(rows)
    for candle, row in zip(candles, rows, strict=True):
        assert (candle.t, candle.T, candle.trades) == (row["t"], row["T"], row["n"])
        assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == tuple(
            float(row[k]) for k in ("o", "h", "l", "c", "v")
        )
    book = loaded("l2_book.json")
    event = wire.parse(json.dumps({"channel": "l2Book", "data": book}))
    assert isinstance(event, wire.Book) and event.symbol == "DYDX"
    assert event.bids == [(float(lv["px"]), float(lv["sz"])) for lv in book["levels"][0]]
    state = loaded("clearinghouse_state.json")
    account = wire.parse_rest_account(raw("clearinghouse_state.json"), "0x" + "5e" * 20)
    assert account.accountValue == float(state["marginSummary"]["accountValue"])
    assert [p.symbol for p in account.positions] == [
        p["position"]["coin"] for p in state["assetPositions"]
    ]
    orders = wire.parse_historical_orders(raw("historical_orders.json"), "0x" + "31" * 20)
    assert [o.order.status for o in orders] == [
        r["status"] for r in loaded("historical_orders.json")
    ]

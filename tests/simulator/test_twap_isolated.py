"""TWAP orders and isolated margin on the simulator's /exchange, sans I/O: a seeded world,
actions signed by hand with the official SDK's signing helpers (the SDK has no TWAP
call), slices driven by the model clock."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

import eth_account
import pytest
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)

from hlgateway.simulator.accounts import Fill
from hlgateway.simulator.info import handle_info
from hlgateway.simulator.market import CoinSpec
from hlgateway.simulator.twap import SLICE_MS, ZERO_HASH, Twap, worst_price
from hlgateway.simulator.world import SimWorld

START = 1_800_000_000_000
ETH = 1
HYPE = 10_107  # HYPE/USDC
Body = dict[str, Any]


class Desk:
    """One funded account trading on a seeded world through ``Exchange.handle``."""

    def __init__(self) -> None:
        self.world = SimWorld(5, START, trade_rate=0.0)
        self.world.step(START + 1_000)
        self.account: LocalAccount = eth_account.Account.create()
        self.user = self.account.address.lower()
        self.world.accounts.fund(self.user, Decimal(100_000), self.world.now_ms)
        self._nonce = 0
        self.fills: list[Fill] = []
        self.updates: list[Any] = []
        self.twaps: list[Any] = []  # the twapHistory rows the streams were given

    def send(self, action: Body, nonce: int | None = None) -> Any:
        if nonce is None:
            self._nonce += 1
            nonce = self.world.now_ms + self._nonce
        signature = sign_l1_action(self.account, action, None, nonce, None, False)
        body = {"action": action, "nonce": nonce, "signature": signature}
        result = self.world.exchange.handle(body, self.world.now_ms)
        self._keep(result.activities)
        assert result.status == 200, result.body
        return result.body

    def ok(self, action: Body) -> Any:
        answer = self.send(action)
        assert answer["status"] == "ok", answer
        return answer["response"]

    def advance(self, ms: int) -> None:
        self._keep(self.world.step(self.world.now_ms + ms).activities)

    def _keep(self, activities: Any) -> None:
        for activity in activities:
            if activity.user == self.user:
                self.fills.extend(activity.fills)
                self.updates.extend(activity.order_updates)
                self.twaps.extend(activity.twaps)

    def info(self, kind: str) -> Any:
        return handle_info(self.world, {"type": kind, "user": self.user})

    def position(self, coin: str = "ETH") -> Any:
        state = self.info("clearinghouseState")
        return next(p["position"] for p in state["assetPositions"] if p["position"]["coin"] == coin)

    def mark(self, coin: str = "ETH") -> Decimal:
        return self.world.market.mark_px(coin)


@pytest.fixture
def desk() -> Desk:
    return Desk()


def twap(asset: int, buy: bool, sz: str, minutes: int, reduce_only: bool = False) -> Body:
    return {
        "type": "twapOrder",
        "twap": {"a": asset, "b": buy, "s": sz, "r": reduce_only, "m": minutes, "t": False},
    }


def market(desk: Desk, buy: bool, sz: float, asset: int = ETH) -> Any:
    px = float(worst_price(desk.mark(), buy, spec(desk, "ETH")))
    wire = order_request_to_order_wire(
        {
            "coin": "ETH",
            "is_buy": buy,
            "sz": sz,
            "limit_px": px,
            "order_type": {"limit": {"tif": "Ioc"}},
            "reduce_only": False,
        },
        asset,
    )
    return desk.ok(order_wires_to_order_action([wire]))


def spec(desk: Desk, coin: str) -> CoinSpec:
    found = desk.world.market.spec(coin)
    assert found is not None
    return found


# -- TWAP -------------------------------------------------------------------------
def test_a_twap_slices_every_30_seconds_within_3_percent(desk: Desk) -> None:
    answer = desk.ok(twap(ETH, True, "1", 5))
    twap_id = answer["data"]["status"]["running"]["twapId"]
    assert answer["type"] == "twapOrder" and isinstance(twap_id, int)
    by_slice: list[list[Fill]] = []
    for step in [100] + [SLICE_MS] * 9:  # 5 minutes: 10 slices, the first at the next tick
        marks = desk.mark()
        before = len(desk.fills)
        desk.advance(step)
        new = desk.fills[before:]
        by_slice.append(new)
        for fill in new:
            assert fill.px <= marks * Decimal("1.03") * Decimal("1.001")  # the mark moves a tick
    fills = [f for group in by_slice for f in group]
    assert {f.twap_id for f in fills} == {twap_id}
    assert {f.hash for f in fills} == {ZERO_HASH}
    assert sum(f.sz for f in fills) == Decimal(1)
    assert all(sum(f.sz for f in group) == Decimal("0.1") for group in by_slice)
    assert desk.updates == []  # slices are the exchange's orders: fills only
    assert Decimal(desk.position()["szi"]) == Decimal(1)
    (row,) = desk.info("twapHistory")
    assert row["twapId"] == twap_id and row["status"] == {"status": "finished"}
    assert row["state"]["executedSz"] == "1.0" and row["state"]["sz"] == "1.0"
    slices = desk.info("userTwapSliceFills")
    assert {s["twapId"] for s in slices} == {twap_id}
    assert sorted(s["fill"]["tid"] for s in slices) == sorted(f.tid for f in fills)
    # userFills has them too, with their twapId.
    assert {f["twapId"] for f in desk.info("userFills")} == {twap_id}
    desk.advance(5 * SLICE_MS)
    assert len(desk.fills) == len(fills)  # finished: nothing more
    assert [(t["twapId"], t["status"]["status"]) for t in desk.twaps] == [
        (twap_id, "activated"),
        (twap_id, "finished"),
    ]
    assert desk.twaps[-1]["state"]["executedSz"] == "1.0"


def test_twap_cancel_stops_it_and_answers_as_hyperliquid(desk: Desk) -> None:
    twap_id = desk.ok(twap(ETH, False, "2", 10))["data"]["status"]["running"]["twapId"]
    desk.advance(SLICE_MS + 100)  # two slices ran: at the placement and 30 s later
    done = sum(f.sz for f in desk.fills)
    assert done == Decimal("0.2")
    cancel = {"type": "twapCancel", "a": ETH, "t": twap_id}
    assert desk.ok(cancel) == {"type": "twapCancel", "data": {"status": "success"}}
    desk.advance(5 * SLICE_MS)
    assert sum(f.sz for f in desk.fills) == done  # what filled stays; nothing after
    again = desk.ok(cancel)
    assert again == {
        "type": "twapCancel",
        "data": {"status": {"error": "TWAP was never placed, already canceled, or filled."}},
    }
    wrong_asset = desk.ok({"type": "twapCancel", "a": 0, "t": twap_id + 1})
    assert "error" in wrong_asset["data"]["status"]
    (row,) = desk.info("twapHistory")
    assert row["status"] == {"status": "terminated"} and row["state"]["executedSz"] == "0.2"
    assert [t["status"]["status"] for t in desk.twaps] == ["activated", "terminated"]


def test_twap_refusals_spend_the_nonce_and_change_nothing(desk: Desk) -> None:
    nonce = desk.world.now_ms + 500
    answer = desk.send(twap(ETH, True, "1", 1), nonce)
    assert answer == {
        "status": "ok",
        "response": {
            "type": "twapOrder",
            "data": {"status": {"error": "Invalid TWAP duration: 1 min(s)"}},
        },
    }
    assert desk.send(twap(ETH, True, "1", 5), nonce)["response"] == (
        f"Invalid nonce: duplicate nonce {nonce}"
    )
    odd = desk.ok(twap(ETH, True, "0.00001", 5))  # off ETH's lot grid
    assert odd["data"]["status"] == {"error": "Order has invalid size."}
    spot_reduce = desk.ok(twap(HYPE, False, "1", 5, reduce_only=True))
    assert "error" in spot_reduce["data"]["status"]
    unknown = desk.send(twap(9_999, True, "1", 5))
    assert unknown == {"status": "err", "response": "Unknown asset: 9999 is not listed"}
    assert desk.info("twapHistory") == []
    desk.advance(2 * SLICE_MS)
    assert desk.fills == []


def test_a_reduce_only_twap_only_reduces(desk: Desk) -> None:
    desk.ok(twap(ETH, False, "1", 5, reduce_only=True))
    desk.advance(2 * SLICE_MS)
    assert desk.fills == []  # no position: slices place nothing
    market(desk, True, 0.15)
    desk.fills.clear()
    desk.advance(8 * SLICE_MS + 100)
    assert sum(f.sz for f in desk.fills) == Decimal("0.15")  # clipped to the position
    assert all(f.side == "A" and f.twap_id is not None for f in desk.fills)
    state = desk.info("clearinghouseState")
    assert state["assetPositions"] == []


def test_a_spot_twap_moves_token_balances(desk: Desk) -> None:
    twap_id = desk.ok(twap(HYPE, True, "10", 5))["data"]["status"]["running"]["twapId"]
    desk.advance(10 * SLICE_MS)
    assert sum(f.sz for f in desk.fills) == Decimal(10)
    assert {(f.coin, f.twap_id) for f in desk.fills} == {("@107", twap_id)}
    balances = {b["coin"]: b for b in desk.info("spotClearinghouseState")["balances"]}
    assert Decimal(balances["HYPE"]["total"]) == Decimal(10) * (1 - Decimal("0.00045"))


def test_a_slice_that_fell_behind_catches_up_at_most_threefold() -> None:
    late = Twap(1, "0x", "ETH", ETH, True, Decimal(1), False, 5, False, START)
    late.slices_run = 3  # three slices ran and filled nothing
    assert late.slice_size(Decimal("0.0001")) == Decimal("0.3")  # 3 x 0.1, not 0.4
    late.executed_sz = Decimal("0.35")
    assert late.slice_size(Decimal("0.0001")) == Decimal("0.05")  # back on pace


def test_the_worst_price_stays_within_3_percent_on_a_valid_tick(desk: Desk) -> None:
    eth = spec(desk, "ETH")
    assert worst_price(Decimal("3000.123"), True, eth) == Decimal("3090.1")
    assert worst_price(Decimal("3000.123"), False, eth) == Decimal("2910.2")
    assert worst_price(Decimal("100000"), True, spec(desk, "BTC")) == Decimal("103000")


# -- isolated margin -----------------------------------------------------------
def margin_action(ntli: int, asset: int = ETH) -> Body:
    # As the SDK's update_isolated_margin sends it: isBuy true, ntli in micro-USDC.
    return {"type": "updateIsolatedMargin", "asset": asset, "isBuy": True, "ntli": ntli}


def leverage(n: int, cross: bool, asset: int = ETH) -> Body:
    return {"type": "updateLeverage", "asset": asset, "isCross": cross, "leverage": n}


def test_isolated_margin_moves_into_and_out_of_the_position(desk: Desk) -> None:
    assert desk.ok(leverage(5, cross=False)) == {"type": "default"}
    withdrawable = Decimal(desk.info("clearinghouseState")["withdrawable"])
    (status,) = market(desk, True, 1.0)["data"]["statuses"]
    entry = Decimal(status["filled"]["avgPx"])
    pos = desk.position()
    assert pos["leverage"]["type"] == "isolated" and pos["leverage"]["value"] == 5
    margin = entry / 5
    upnl = Decimal(pos["unrealizedPnl"])
    assert Decimal(pos["marginUsed"]) == pytest.approx(margin + upnl, abs=Decimal("0.01"))
    assert Decimal(pos["leverage"]["rawUsd"]) == pytest.approx(margin - entry, abs=Decimal("0.01"))
    liq_before = Decimal(pos["liquidationPx"])
    assert liq_before < entry
    state = desk.info("clearinghouseState")
    fee = sum(
        (Decimal(f["fee"]) + Decimal(f.get("builderFee", "0")) for f in desk.info("userFills")),
        Decimal(0),
    )
    assert Decimal(state["withdrawable"]) == pytest.approx(
        withdrawable - margin - fee, abs=Decimal("0.02")
    )

    assert desk.ok(margin_action(100_000_000)) == {"type": "default"}  # +100 USDC
    pos = desk.position()
    assert Decimal(pos["marginUsed"]) == pytest.approx(margin + 100 + upnl, abs=Decimal("0.01"))
    assert Decimal(pos["liquidationPx"]) < liq_before  # further away for a long
    after_add = Decimal(desk.info("clearinghouseState")["withdrawable"])
    assert after_add == pytest.approx(withdrawable - margin - fee - 100, abs=Decimal("0.02"))

    # Removing below the initial margin is refused and changes nothing.
    too_much = desk.send(margin_action(-(int(margin) + 50) * 1_000_000))
    assert too_much == {
        "status": "err",
        "response": "Insufficient margin to remove from isolated position.",
    }
    assert desk.position()["marginUsed"] == pos["marginUsed"]
    assert desk.ok(margin_action(-60_000_000)) == {"type": "default"}
    assert Decimal(desk.position()["marginUsed"]) == pytest.approx(
        margin + 40 + upnl, abs=Decimal("0.01")
    )
    # Closing the position releases the margin: withdrawable is the balance again.
    market(desk, False, 1.0)
    state = desk.info("clearinghouseState")
    assert state["assetPositions"] == []
    assert Decimal(state["withdrawable"]) == Decimal(state["marginSummary"]["accountValue"])


def test_isolated_margin_refusals(desk: Desk) -> None:
    no_position = desk.send(margin_action(1_000_000))
    assert no_position == {
        "status": "err",
        "response": "Cannot update margin: no isolated position in ETH.",
    }
    market(desk, True, 0.5)  # a cross position (the default)
    assert desk.send(margin_action(1_000_000))["status"] == "err"
    switch = desk.send(leverage(5, cross=False))
    assert switch == {
        "status": "err",
        "response": "Cannot switch leverage type with open position.",
    }
    spot = desk.send(margin_action(1_000_000, asset=HYPE))
    assert spot == {"status": "err", "response": "Margin is for perps: @107 is a spot pair"}
    assert desk.position()["leverage"]["type"] == "cross"


def test_noop_spends_the_nonce_only(desk: Desk) -> None:
    nonce = desk.world.now_ms + 700
    assert desk.send({"type": "noop"}, nonce) == {"status": "ok", "response": {"type": "default"}}
    assert desk.send(twap(ETH, True, "1", 5), nonce)["status"] == "err"  # nonce spent
    assert desk.info("twapHistory") == []


# -- randomize -------------------------------------------------------------------
def randomized(asset: int, buy: bool, sz: str, minutes: int) -> Body:
    action = twap(asset, buy, sz, minutes)
    action["twap"]["t"] = True
    return action


def slices_of(desk: Desk, action: Body, minutes: int) -> tuple[int, list[tuple[int, Decimal]]]:
    """Place the TWAP, run the clock a second at a time past its end: (its id, each
    slice's time and filled size)."""
    placed = desk.world.now_ms
    twap_id = desk.ok(action)["data"]["status"]["running"]["twapId"]
    by_time: dict[int, Decimal] = {}
    for _ in range(minutes * 60 + 60):
        before = len(desk.fills)
        desk.advance(1_000)
        for fill in desk.fills[before:]:
            assert fill.twap_id == twap_id
            by_time[fill.time - placed] = by_time.get(fill.time - placed, Decimal(0)) + fill.sz
    return twap_id, sorted(by_time.items())


def test_a_randomized_twap_varies_its_slices_within_hyperliquids_rules(desk: Desk) -> None:
    twap_id, slices = slices_of(desk, randomized(ETH, True, "1", 5), 5)
    times = [t for t, _ in slices]
    sizes = [sz for _, sz in slices]
    assert len(slices) == 10 and sum(sizes) == Decimal(1)  # done, on time
    assert times[0] <= 1_000 and times[-1] < 5 * 60_000  # first at once, last within 5 min
    gaps = [b - a for a, b in pairwise(times)]
    # Each slice within its 30 s slot, up to 15 s late: gaps of 15-45 s (a tick of 1 s).
    assert all(15_000 - 1_000 <= gap <= 45_000 + 1_000 for gap in gaps), gaps
    assert len(set(gaps)) > 1  # not the regular 30 s
    assert len(set(sizes)) > 1 and max(sizes) <= Decimal("0.3")  # varied, at most 3 normal
    for k, (at, _) in enumerate(slices):
        # Near the execution target: each slice is ±20% of what it lacks (0.1 plus the
        # last slice's miss), so the miss stays within 0.2 x 0.1 / 0.8 = 0.025.
        done = sum(sizes[: k + 1], Decimal(0))
        assert abs(done - Decimal(k + 1) / 10) <= Decimal("0.025"), (k, done)
        assert k * SLICE_MS <= at < k * SLICE_MS + SLICE_MS // 2 + 1_000
    (row,) = desk.info("twapHistory")
    assert row["twapId"] == twap_id and row["state"]["randomize"] is True
    assert row["status"] == {"status": "finished"}


def test_a_randomized_twap_is_the_same_for_the_same_seed() -> None:
    runs = []
    for _ in range(2):
        desk = Desk()
        runs.append(slices_of(desk, randomized(ETH, False, "0.5", 5), 5)[1])
    assert runs[0] == runs[1]


def test_without_randomize_the_slices_stay_on_the_grid(desk: Desk) -> None:
    _, slices = slices_of(desk, twap(ETH, True, "1", 5), 5)
    assert [sz for _, sz in slices] == [Decimal("0.1")] * 10
    times = [t for t, _ in slices]
    assert times[0] <= 1_000 and times[1:] == [SLICE_MS * k for k in range(1, 10)]


def test_a_randomized_slice_catches_up_at_most_threefold() -> None:
    late = Twap(1, "0x", "ETH", ETH, True, Decimal(1), False, 5, True, START, seed=5)
    late.slices_run = 3  # three slices ran and filled nothing: 0.4 behind, x0.8-1.2
    assert late.slice_size(Decimal("0.0001")) == Decimal("0.3")
    late.slices_run = 9  # the last slice completes whatever is left, within the cap
    late.executed_sz = Decimal("0.85")
    assert late.slice_size(Decimal("0.0001")) == Decimal("0.15")


# -- funding of isolated positions ---------------------------------------------------
def test_an_isolated_position_pays_funding_from_its_own_margin(desk: Desk) -> None:
    assert desk.ok(leverage(5, cross=False)) == {"type": "default"}
    market(desk, True, 1.0)
    wallet = desk.world.accounts.wallet(desk.user)
    assert wallet is not None
    raw_before = Decimal(desk.position()["leverage"]["rawUsd"])
    cross_before = wallet.balance - wallet.isolated["ETH"]
    withdrawable_before = Decimal(desk.info("clearinghouseState")["withdrawable"])
    hour = 3_600_000
    desk.advance(hour - desk.world.now_ms % hour)  # to the next hour: funding settles
    (paid,) = handle_info(desk.world, {"type": "userFunding", "user": desk.user, "startTime": 0})
    usdc = Decimal(paid["delta"]["usdc"])
    assert usdc != 0 and paid["delta"]["coin"] == "ETH"
    # The position's margin paid it (or got it) ...
    assert Decimal(desk.position()["leverage"]["rawUsd"]) == raw_before + usdc
    # ... and the cross account did not.
    assert wallet.balance - wallet.isolated["ETH"] == cross_before
    assert Decimal(desk.info("clearinghouseState")["withdrawable"]) == withdrawable_before


def test_a_cross_position_pays_funding_from_the_account(desk: Desk) -> None:
    market(desk, True, 1.0)
    wallet = desk.world.accounts.wallet(desk.user)
    assert wallet is not None and "ETH" not in wallet.isolated
    balance = wallet.balance
    hour = 3_600_000
    desk.advance(hour - desk.world.now_ms % hour)
    (paid,) = handle_info(desk.world, {"type": "userFunding", "user": desk.user, "startTime": 0})
    assert wallet.balance == balance + Decimal(paid["delta"]["usdc"])

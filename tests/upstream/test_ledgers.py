"""Exactly-once bookkeeping, without sockets."""

from __future__ import annotations

from hlgateway.upstream.ledgers import FillLedger, OrderLedger, SeenSet, TradeLedger
from hlgateway.upstream.wire import Fill, Order, Trade

W = "0x" + "1" * 40


def fill(tid: int, t: int = 0) -> Fill:
    return Fill(tid, 1, "BTC", "buy", 1.0, 1.0, 0.0, 0.0, t or tid, W)


def test_first_snapshot_primes_and_later_snapshots_deliver_only_the_gap() -> None:
    ledger = FillLedger(since_ms=2)
    # History from before the first subscriber is not news; what came after is.
    assert ledger.accept([fill(1), fill(2)], is_snapshot=True) == [fill(2)]
    assert ledger.accept([fill(3)], is_snapshot=False) == [fill(3)]
    # A reconnect: the snapshot repeats history and holds what happened meanwhile.
    assert ledger.accept([fill(5), fill(1), fill(2), fill(3), fill(4)], is_snapshot=True) == [
        fill(4),
        fill(5),
    ]
    assert ledger.accept([fill(5)], is_snapshot=False) == []


def test_fills_sharing_a_time_are_kept_apart_by_tid() -> None:
    ledger = FillLedger(since_ms=100)
    ledger.accept([], is_snapshot=True)
    sweep = [fill(10, t=500), fill(11, t=500), fill(12, t=500)]
    assert ledger.accept(sweep, is_snapshot=False) == sweep


def test_trades_dedupe_replays() -> None:
    ledger = TradeLedger()
    a, b = Trade(1, 1.0, 1.0, "buy", 10), Trade(2, 1.0, 1.0, "sell", 10)
    assert ledger.accept([a, b]) == [a, b]
    assert ledger.accept([b, Trade(3, 1.0, 1.0, "buy", 11)]) == [Trade(3, 1.0, 1.0, "buy", 11)]


def order(status: str, remaining: float, t: int, oid: int = 7) -> Order:
    return Order(oid, "BTC", "buy", 1.0, remaining, 1.0 - remaining, 100.0, status, t, W)


def test_order_transitions_are_named_and_only_progress_passes() -> None:
    ledger = OrderLedger()
    assert ledger.accept(order("open", 1.0, 1)) == "created"
    assert ledger.accept(order("open", 1.0, 1)) is None  # a repeat
    assert ledger.accept(order("open", 1.0, 5)) is None  # no progress, other time
    assert ledger.accept(order("open", 0.5, 2)) == "updated"
    assert ledger.accept(order("open", 0.7, 3)) is None  # going backwards: stale
    assert ledger.accept(order("filled", 0.0, 3)) == "filled"
    assert ledger.accept(order("canceled", 0.0, 4)) is None  # nothing after the end
    assert ledger.open_orders() == set()
    other = OrderLedger()
    assert other.accept(order("canceled", 1.0, 1)) == "cancelled"
    assert other.accept(order("open", 0.4, 2, oid=8)) == "updated"  # first seen part-filled
    assert other.accept(order("marginCanceled", 0.4, 3, oid=8)) == "cancelled"


def test_seen_set_is_bounded() -> None:
    seen = SeenSet(3)
    for i in range(5):
        assert seen.add(i)
    assert len(seen) == 3 and 0 not in seen and 4 in seen

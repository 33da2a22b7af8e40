"""Exactly-once bookkeeping, without sockets."""

from __future__ import annotations

from hlgateway.upstream.ledgers import EventLedger, FillLedger, OrderLedger, SeenSet, TradeLedger
from hlgateway.upstream.wire import Fill, LedgerEvent, Order, Trade, ledger_event

W = "0x" + "1" * 40


def fill(tid: int, t: int = 0) -> Fill:
    return Fill(tid, 1, "BTC", "buy", 1.0, 1.0, 0.0, 0.0, t or tid, W)


def test_what_is_read_back_starts_at_the_start_and_live_pushes_pass_whole() -> None:
    ledger = FillLedger(since_ms=2)
    # A first snapshot is mostly history: only its fills from the start on are news.
    assert ledger.accept([fill(1), fill(2)]) == [fill(2)]
    assert ledger.accept([fill(3)], live=True) == [fill(3)]
    # A reconnect: the snapshot repeats history and holds what happened meanwhile.
    assert ledger.accept([fill(5), fill(1), fill(2), fill(3), fill(4)]) == [fill(4), fill(5)]
    assert ledger.accept([fill(5)], live=True) == []
    # A live push happened after the subscription, whatever the exchange's clock said.
    assert ledger.accept([fill(6, t=1)], live=True) == [fill(6, t=1)]
    assert ledger.last_time == 5


def test_fills_sharing_a_time_are_kept_apart_by_tid() -> None:
    ledger = FillLedger(since_ms=100)
    ledger.accept([])
    sweep = [fill(10, t=500), fill(11, t=500), fill(12, t=500)]
    assert ledger.accept(sweep, live=True) == sweep
    assert ledger.accept([fill(12, t=500), fill(13, t=500)]) == [fill(13, t=500)]


def test_ledger_events_read_back_start_at_the_start() -> None:
    def deposit(n: int, t: int) -> LedgerEvent:
        return ledger_event(t, f"0x{n:064x}", {"type": "deposit", "usdc": "1.0"}, W)

    ledger = EventLedger(since_ms=100)
    assert ledger.accept([deposit(1, 99), deposit(2, 100)]) == [deposit(2, 100)]
    assert ledger.accept([deposit(2, 100), deposit(3, 150)], live=True) == [deposit(3, 150)]
    assert ledger.accept([deposit(4, 50)], live=True) == [deposit(4, 50)]
    assert ledger.accept([deposit(1, 99), deposit(4, 50)]) == []


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

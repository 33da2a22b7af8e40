"""Rebuilding missed order transitions from REST, without sockets."""

from __future__ import annotations

from hlgateway.upstream.ledgers import OrderLedger
from hlgateway.upstream.recovery import rebuild_orders
from hlgateway.upstream.wire import Fill, HistoricalOrder, Order

W = "0x" + "2" * 40


def order(oid: int, status: str, remaining: float, t: int, amount: float = 1.0) -> Order:
    return Order(oid, "ETH", "buy", amount, remaining, amount - remaining, 3000.0, status, t, W)


def hist(oid: int, status: str, remaining: float, t: int, created: int) -> HistoricalOrder:
    return HistoricalOrder(order(oid, status, remaining, t), created)


def fill(tid: int, oid: int, size: float, t: int) -> Fill:
    return Fill(tid, oid, "ETH", "buy", 3000.0, size, 0.1, 0.0, t, W)


def test_every_missed_transition_once_in_order() -> None:
    ledger = OrderLedger()
    # Before the gap (which starts at t=10) we delivered: order 1 created, order 5 half filled.
    assert ledger.accept(order(1, "open", 1.0, 1)) == "created"
    assert ledger.accept(order(5, "open", 1.0, 2)) == "created"
    assert ledger.accept(order(5, "open", 0.5, 3)) == "updated"
    history = [
        hist(1, "filled", 0.0, 20, created=1),  # filled by two fills in the gap
        hist(2, "canceled", 1.0, 15, created=12),  # born and cancelled in the gap
        hist(3, "open", 0.7, 16, created=13),  # born and part filled in the gap
        hist(4, "filled", 0.0, 5, created=4),  # finished before the gap: not news
        hist(5, "canceled", 0.5, 18, created=2),  # cancelled in the gap
    ]
    fills = [fill(100, 1, 0.4, 11), fill(101, 3, 0.3, 16), fill(102, 1, 0.6, 20)]
    rebuilt = rebuild_orders(ledger, 10, history, fills)
    delivered = [(o.id, a, o.status, o.remaining) for o in rebuilt if (a := ledger.accept(o))]
    assert delivered == [
        (1, "updated", "open", 0.6),
        (2, "created", "open", 1.0),
        (3, "created", "open", 1.0),
        (2, "cancelled", "canceled", 1.0),
        (3, "updated", "open", 0.7),
        (5, "cancelled", "canceled", 0.5),
        (1, "filled", "filled", 0.0),
    ]
    # The same transitions arriving live afterwards (held during recovery) are not repeated,
    # and running the recovery again delivers nothing.
    assert ledger.accept(order(1, "filled", 0.0, 20)) is None
    assert ledger.accept(order(3, "open", 0.7, 16)) is None
    assert not [o for o in rebuild_orders(ledger, 10, history, fills) if ledger.accept(o)]


def test_partial_fill_sizes_do_not_drift() -> None:
    ledger = OrderLedger()
    history = [hist(9, "filled", 0.0, 30, created=20)]
    fills = [fill(1, 9, 0.1, 21), fill(2, 9, 0.2, 22), fill(3, 9, 0.7, 30)]
    rebuilt = rebuild_orders(ledger, 15, history, fills)
    assert [(o.status, o.remaining) for o in rebuilt] == [
        ("open", 1.0),
        ("open", 0.9),
        ("open", 0.7),
        ("filled", 0.0),
    ]


def test_an_orders_steps_keep_their_order_whatever_their_stamps() -> None:
    ledger = OrderLedger()
    # Order 9 was created at 20; its fill is stamped a little earlier (clocks of two
    # machines of the exchange, or a simulator catching up). Order 8 came between.
    history = [hist(9, "filled", 0.0, 19, created=20), hist(8, "open", 1.0, 19, created=19)]
    rebuilt = rebuild_orders(ledger, 15, history, [fill(1, 9, 1.0, 19)])
    delivered = [(o.id, a) for o in rebuilt if (a := ledger.accept(o))]
    assert delivered == [(8, "created"), (9, "created"), (9, "filled")]

"""Rebuilding what Hyperliquid pushed while we could not hear it. Sans I/O.

orderUpdates has no snapshot: after a gap (a reconnect, the first subscribe,
or a polling round) the order transitions are rebuilt from REST: the latest
state of each order (`historicalOrders`) and the fills in the gap
(`userFillsByTime`). Each partial fill is an `open` update with the size left,
the last one `filled`; a cancel is its final status. The caller passes every
rebuilt transition through the wallet's OrderLedger, which drops the ones
already delivered, so the result is each missed transition once, in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import msgspec

from hlgateway.upstream.ledgers import OrderLedger, is_terminal
from hlgateway.upstream.wire import Fill, HistoricalOrder, Order

_EPS = 1e-9


def _round(x: float) -> float:
    return round(x, 10)


def rebuild_orders(
    ledger: OrderLedger,
    since_ms: int,
    history: Iterable[HistoricalOrder],
    fills: Iterable[Fill],
) -> list[Order]:
    """Candidate transitions from `since_ms` on, oldest first."""
    gap_fills: defaultdict[int, list[Fill]] = defaultdict(list)
    for fill in fills:
        if fill.timestamp >= since_ms:
            gap_fills[fill.orderId].append(fill)
    still_open = ledger.open_orders()
    out: list[tuple[int, int, Order]] = []  # (time, sequence, order)
    sequence = 0
    for entry in history:
        final = entry.order
        mine = sorted(gap_fills.get(final.id, ()), key=lambda f: (f.timestamp, f.id))
        touched = final.timestamp >= since_ms or entry.created_at >= since_ms
        if not (touched or mine or final.id in still_open):
            continue
        steps: list[Order] = []
        if entry.created_at >= since_ms:
            remaining = final.amount
            steps.append(
                msgspec.structs.replace(
                    final,
                    status="open",
                    remaining=remaining,
                    filled=0.0,
                    timestamp=entry.created_at,
                )
            )
        else:
            remaining = _round(final.remaining + sum(f.size for f in mine))
        for fill in mine:
            remaining = _round(max(0.0, remaining - fill.size))
            done = remaining <= _EPS
            steps.append(
                msgspec.structs.replace(
                    final,
                    status="filled" if done else "open",
                    remaining=0.0 if done else remaining,
                    filled=_round(final.amount - remaining),
                    timestamp=fill.timestamp,
                )
            )
        finished = steps[-1].status == "filled" if steps else False
        if is_terminal(final.status) and not (final.status == "filled" and finished):
            steps.append(final)
        # An order's own steps keep their causal order whatever the stamps say: a fill
        # stamped before its order's creation must not hide the `open` behind it.
        at = 0
        for step in steps:
            at = max(at, step.timestamp)
            out.append((at, sequence, step))
            sequence += 1
    out.sort(key=lambda item: (item[0], item[1]))
    return [order for _, _, order in out]

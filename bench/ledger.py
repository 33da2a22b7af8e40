"""What a client received, checked against the simulator's ledger.

Shared by the runs that must end with every fill, order transition and ledger
event (deposits, withdrawals, liquidations, funding payments) exactly once
(bench.chaos: upstream faults; bench.recovery: client reconnects).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hlgateway.simulator import Simulator

FillKey = tuple[str, int]  # wallet, tid
TransitionKey = tuple[str, int, str, float]  # wallet, oid, status, remaining size
EventKey = tuple[str, str]  # wallet, the gateway's event id (hash:type, funding:COIN:time)


def size(value: Any) -> float:
    return round(float(value), 8)


class Deliveries:
    """Every fill and order transition a client was given, in arrival order."""

    def __init__(self) -> None:
        self.fills: list[tuple[str, int, int]] = []  # wallet, tid, time
        self.orders: list[tuple[str, int, str, float, int]] = []  # + time
        self.events: list[tuple[str, str, int]] = []  # wallet, id, time
        self.markets: dict[FillKey, str] = {}  # perp | spot

    def add(self, channel: str, data: dict[str, Any]) -> None:
        if channel == "user_fills":
            self.fills += [(f["wallet"], f["id"], f["timestamp"]) for f in data["fills"]]
            self.markets.update({(f["wallet"], f["id"]): f["market"] for f in data["fills"]})
        elif channel == "user_ledger":
            self.events += [(e["wallet"], e["id"], e["time"]) for e in data["events"]]
        elif channel == "user_orders":
            o = data["order"]
            self.orders.append(
                (o["wallet"], o["id"], o["status"], size(o["remaining"]), o["timestamp"])
            )

    def fills_in(self, start: int, cutoff: int) -> list[FillKey]:
        return [(w, tid) for w, tid, t in self.fills if start <= t <= cutoff]

    def orders_in(self, start: int, cutoff: int) -> list[TransitionKey]:
        return [(w, oid, s, sz) for w, oid, s, sz, t in self.orders if start <= t <= cutoff]

    def events_in(self, start: int, cutoff: int) -> list[EventKey]:
        return [(w, eid) for w, eid, t in self.events if start <= t <= cutoff]


class Expected:
    """The ledger's fills, transitions and ledger events of `wallets` between `start`
    and `cutoff` (ms). Ledger events only with `events=True`, for a client subscribed
    to `user_ledger` (a wallet's deposits come whatever it reads)."""

    def __init__(
        self, sim: Simulator, wallets: list[str], start: int, cutoff: int, events: bool = False
    ) -> None:
        self.start, self.cutoff = start, cutoff
        ledgers = {w: sim.ledger(w) for w in wallets}
        self.fills: list[FillKey] = [
            (w, f["tid"])
            for w, led in ledgers.items()
            for f in led["fills"]
            if start <= f["time"] <= cutoff
        ]
        self.orders: set[TransitionKey] = {
            (w, o["oid"], o["status"], size(o["sz"]))
            for w, led in ledgers.items()
            for o in led["orders"]
            if start <= o["statusTimestamp"] <= cutoff
        }
        self.events: set[EventKey] = set()
        if events:
            self.events = {
                (w, f"funding:{p['coin']}:{p['time']}")
                for w, led in ledgers.items()
                for p in led["fundings"]
                if start <= p["time"] <= cutoff
            } | {
                (w, f"{u['hash']}:{u['delta']['type']}")
                for w, led in ledgers.items()
                for u in led["ledgerUpdates"]
                if start <= u["time"] <= cutoff
            }
        self.spot = {
            (w, f["tid"])
            for w, led in ledgers.items()
            for f in led["fills"]
            if start <= f["time"] <= cutoff and (f["coin"].startswith("@") or "/" in f["coin"])
        }
        self.kinds = {
            (w, f"{u['hash']}:{u['delta']['type']}"): u["delta"]["type"]
            for w, led in ledgers.items()
            for u in led["ledgerUpdates"]
        }

    def received_by(self, got: Deliveries) -> bool:
        return (
            set(self.fills) <= set(got.fills_in(self.start, self.cutoff))
            and self.orders <= set(got.orders_in(self.start, self.cutoff))
            and self.events <= set(got.events_in(self.start, self.cutoff))
        )


@dataclass
class LedgerCheck:
    fills_produced: int = 0
    fills_delivered: int = 0
    fills_lost: int = 0
    fills_duplicated: int = 0
    fills_unexpected: int = 0
    transitions_produced: int = 0
    transitions_delivered: int = 0
    transitions_lost: int = 0
    transitions_duplicated: int = 0
    transitions_unexpected: int = 0
    spot_fills: int = 0  # of fills_produced
    spot_fills_delivered_as_spot: int = 0
    events_produced: int = 0
    event_kinds: dict[str, int] = field(default_factory=dict)
    events_delivered: int = 0
    events_lost: int = 0
    events_duplicated: int = 0
    events_unexpected: int = 0
    out_of_order_wallets: int = 0
    lost_examples: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, expected: Expected, got: Deliveries) -> LedgerCheck:
        fills_in = got.fills_in(expected.start, expected.cutoff)
        orders_in = got.orders_in(expected.start, expected.cutoff)
        lost_fills = set(expected.fills) - set(fills_in)
        lost_orders = expected.orders - set(orders_in)
        events_in = got.events_in(expected.start, expected.cutoff)
        lost_events = expected.events - set(events_in)
        kinds: Counter[str] = Counter(
            "funding" if eid.startswith("funding:") else expected.kinds.get((w, eid), "?")
            for w, eid in expected.events
        )
        check = cls(
            fills_produced=len(expected.fills),
            fills_delivered=len(fills_in),
            fills_lost=len(lost_fills),
            fills_duplicated=_duplicates((w, tid) for w, tid, _ in got.fills),
            fills_unexpected=len(set(fills_in) - set(expected.fills)),
            transitions_produced=len(expected.orders),
            transitions_delivered=len(orders_in),
            transitions_lost=len(lost_orders),
            transitions_duplicated=_duplicates((w, o, s, sz) for w, o, s, sz, _ in got.orders),
            transitions_unexpected=len(set(orders_in) - expected.orders),
            spot_fills=len(expected.spot),
            spot_fills_delivered_as_spot=sum(
                1 for key in expected.spot if got.markets.get(key) == "spot"
            ),
            events_produced=len(expected.events),
            event_kinds=dict(sorted(kinds.items())),
            events_delivered=len(events_in),
            events_lost=len(lost_events),
            events_duplicated=_duplicates((w, eid) for w, eid, _ in got.events),
            events_unexpected=len(set(events_in) - expected.events),
            lost_examples=[
                str(x) for x in list(lost_fills)[:3] + list(lost_orders)[:3] + list(lost_events)[:3]
            ],
        )
        # In order: each wallet's fills arrive as the ledger has them.
        for wallet in {w for w, _ in expected.fills}:
            mine = [key for key in fills_in if key[0] == wallet]
            if mine != [key for key in expected.fills if key[0] == wallet]:
                check.out_of_order_wallets += 1
        return check

    def ok(self) -> bool:
        return not (
            self.fills_lost
            or self.fills_duplicated
            or self.fills_unexpected
            or self.transitions_lost
            or self.transitions_duplicated
            or self.transitions_unexpected
            or self.events_lost
            or self.events_duplicated
            or self.events_unexpected
            or self.spot_fills_delivered_as_spot != self.spot_fills
            or self.out_of_order_wallets
        )


def _duplicates(keys: Any) -> int:
    return sum(count - 1 for count in Counter(keys).values() if count > 1)

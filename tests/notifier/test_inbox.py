"""The feed's inbox: lossless events bounded, snapshots conflated, order kept (sans I/O)."""

from __future__ import annotations

import pytest

from hlgateway.client import Position
from hlgateway.notifier.events import Account, FeedEvent, Fills, Gap, OrderEvent, Prices, Refused
from hlgateway.notifier.inbox import Inbox

W, V = "0x" + "a1" * 20, "0x" + "b2" * 20


def fills(n: int) -> Fills:
    return Fills(W, [{"id": n, "timestamp": n}], Position(n, "e"))


def drain(inbox: Inbox) -> list[FeedEvent]:
    out = []
    while (event := inbox.take()) is not None:
        out.append(event)
    return out


def test_lossless_events_are_bounded_and_refused_beyond() -> None:
    inbox = Inbox(capacity=3)
    assert all(inbox.offer(fills(n)) for n in range(3))
    assert not inbox.offer(fills(3))  # refused: nothing of it is kept
    assert not inbox.offer(fills(4))
    # Control events and snapshots are always taken.
    assert inbox.offer(Gap(W, "user_fills"))
    assert inbox.offer(Refused(V, "user_fills", "FORBIDDEN", "no"))
    assert inbox.offer(Prices({"BTC": {"price": 1}}))
    assert (inbox.lossless, inbox.refused) == (3, 2)
    assert [e for e in drain(inbox) if isinstance(e, Fills)] == [fills(n) for n in range(3)]
    assert inbox.lossless == 0 and len(inbox) == 0


def test_a_full_inbox_still_takes_one_event_of_a_stream_with_none_waiting() -> None:
    """A busy stream's replay cannot starve another: each stream may always have one."""
    inbox = Inbox(capacity=2)
    assert inbox.offer(fills(1)) and inbox.offer(fills(2))
    other = Fills(V, [{"id": 9, "timestamp": 9}], Position(1, "e"))
    orders = OrderEvent(W, {"action": "created"}, Position(1, "e"))
    assert inbox.offer(other)  # V has nothing waiting
    assert inbox.offer(orders)  # nor have W's orders
    assert not inbox.offer(Fills(V, [], Position(2, "e")))  # V has one now
    assert not inbox.offer(fills(3))
    assert drain(inbox) == [fills(1), fills(2), other, orders]
    assert inbox.offer(Fills(V, [], Position(2, "e")))


def test_room_again_once_well_below_capacity() -> None:
    inbox = Inbox(capacity=4)  # resumes below 2
    for n in range(4):
        inbox.offer(fills(n))
    assert not inbox.has_room
    inbox.take()
    inbox.take()
    assert not inbox.has_room  # 2 waiting: not yet
    inbox.take()
    assert inbox.has_room
    assert Inbox(capacity=1).has_room  # empty: always


def test_prices_conflate_per_symbol_in_the_place_of_the_first() -> None:
    inbox = Inbox()
    inbox.offer(Prices({"BTC": {"price": 1}, "ETH": {"price": 10}}))
    inbox.offer(fills(1))
    inbox.offer(Prices({"BTC": {"price": 2}}))
    inbox.offer(Prices({"SOL": {"price": 5}}))
    assert drain(inbox) == [
        Prices({"BTC": {"price": 2}, "ETH": {"price": 10}, "SOL": {"price": 5}}),
        fills(1),
    ]
    assert inbox.conflated == 2
    inbox.offer(Prices({"BTC": {"price": 3}}))  # taken: the next one starts anew
    assert drain(inbox) == [Prices({"BTC": {"price": 3}})]


def test_accounts_conflate_per_wallet_latest_wins() -> None:
    inbox = Inbox()
    inbox.offer(Account(W, {"v": 1}))
    inbox.offer(Account(V, {"v": 1}))
    inbox.offer(Gap(W, "user_fills"))
    inbox.offer(Account(W, {"v": 2}))
    assert drain(inbox) == [Account(W, {"v": 2}), Account(V, {"v": 1}), Gap(W, "user_fills")]


def test_a_long_outage_costs_bounded_memory() -> None:
    """Ticks and fills arriving for ever while nothing is taken: the inbox stays small."""
    inbox = Inbox(capacity=10)
    for n in range(10_000):
        inbox.offer(Prices({f"S{n % 50}": {"price": n}}))
        inbox.offer(Account(W if n % 2 else V, {"n": n}))
        inbox.offer(fills(n))
    assert len(inbox) == 10 + 1 + 2  # the lossless events, one prices, one account each
    assert inbox.refused == 10_000 - 10
    for n in range(100):  # many streams: one more each, at most
        inbox.offer(Fills(f"0x{n:040x}", [], Position(1, "e")))
        inbox.offer(Fills(f"0x{n:040x}", [], Position(2, "e")))
    assert inbox.lossless == 10 + 100


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Inbox(capacity=0)

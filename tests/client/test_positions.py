"""Cursor: positions in a lossless stream, duplicates, gaps, recovery answers (no sockets)."""

from __future__ import annotations

import random

import msgspec
import pytest

from hlgateway.client.positions import Cursor, Joined, Verdict, as_position
from hlgateway.protocol.positions import Position


def test_fresh_join_starts_at_the_head_and_delivers_the_next() -> None:
    cursor = Cursor()
    assert cursor.since() is None
    assert cursor.on_joined(41, "E1", None) is Joined.FRESH
    assert cursor.since() == Position(41, "E1")
    assert cursor.on_data(42, "E1") is Verdict.DELIVER
    assert cursor.on_data(43, "E1") is Verdict.DELIVER
    assert cursor.since() == Position(43, "E1")


def test_duplicates_are_dropped_and_counted() -> None:
    cursor = Cursor(Position(10, "E"))
    assert [cursor.on_data(n, "E") for n in (9, 10, 11, 11, 12)] == [
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.DELIVER,
        Verdict.DUPLICATE,
        Verdict.DELIVER,
    ]
    assert cursor.duplicates == 3 and cursor.since() == Position(12, "E")


def test_a_gap_asks_for_one_heal_and_the_replay_fills_it() -> None:
    cursor = Cursor(Position(5, "E"))
    assert cursor.on_data(7, "E") is Verdict.HEAL  # 6 is missing: drop 7, resubscribe
    assert cursor.on_data(8, "E") is Verdict.SKIP  # one heal at a time
    assert cursor.since() == Position(5, "E") and cursor.gaps == 1
    # The resubscribe with since=5 is answered: recovered, head 8; the replay follows.
    assert cursor.on_joined(8, "E", True) is Joined.RECOVERED
    assert cursor.since() == Position(5, "E")  # not the head: the replay has not arrived
    assert [cursor.on_data(n, "E") for n in (6, 7, 8)] == [Verdict.DELIVER] * 3
    assert cursor.on_data(8, "E") is Verdict.DUPLICATE  # live copy of the seam
    assert cursor.on_data(9, "E") is Verdict.DELIVER and not cursor.healing


def test_the_next_message_heals_by_itself_while_a_heal_is_out() -> None:
    cursor = Cursor(Position(5, "E"))
    assert cursor.on_data(7, "E") is Verdict.HEAL
    assert cursor.on_data(6, "E") is Verdict.DELIVER  # late, but exactly the next one
    assert cursor.on_data(7, "E") is Verdict.DELIVER


def test_not_recovered_moves_to_the_head_and_asks_for_a_resync() -> None:
    cursor = Cursor(Position(5, "OLD"))
    assert cursor.on_joined(100, "NEW", False) is Joined.RESYNC
    assert cursor.since() == Position(100, "NEW") and cursor.resyncs == 1
    assert cursor.on_data(5, "OLD") is Verdict.DUPLICATE  # a late message of the old epoch
    assert cursor.on_data(101, "NEW") is Verdict.DELIVER


def test_not_recovered_in_the_same_epoch_too_old_for_history() -> None:
    cursor = Cursor(Position(5, "E"))
    assert cursor.on_joined(5000, "E", False) is Joined.RESYNC
    assert cursor.since() == Position(5000, "E")


def test_an_epoch_change_mid_stream_is_delivered_as_a_resync() -> None:
    cursor = Cursor(Position(5, "E1"))
    assert cursor.on_data(1, "E2") is Verdict.NEW_EPOCH
    assert cursor.since() == Position(1, "E2")
    assert cursor.on_data(6, "E1") is Verdict.DUPLICATE  # the old epoch is behind us
    assert cursor.on_data(2, "E2") is Verdict.DELIVER


def test_recovered_with_another_epoch_is_not_believed() -> None:
    cursor = Cursor(Position(5, "E1"))
    assert cursor.on_joined(9, "E2", True) is Joined.RESYNC


def test_snapshot_streams_and_v1_gateways_are_untracked() -> None:
    cursor = Cursor()
    assert cursor.on_joined(None, None, None) is Joined.UNTRACKED
    assert cursor.on_data(None, None) is Verdict.DELIVER
    assert cursor.since() is None


def test_a_disconnect_ends_a_heal_the_reconnect_takes_over() -> None:
    cursor = Cursor(Position(1, "E"))
    assert cursor.on_data(3, "E") is Verdict.HEAL
    cursor.disconnected()
    assert not cursor.healing and cursor.since() == Position(1, "E")
    assert cursor.on_data(4, "E") is Verdict.HEAL  # a new link's gap heals again


def test_positions_are_storable() -> None:
    stored = msgspec.json.encode(Position(12, "e-1"))
    assert stored == b'{"offset":12,"epoch":"e-1"}'
    assert msgspec.json.decode(stored, type=Position) == Position(12, "e-1")


@pytest.mark.parametrize("seed", range(20))
def test_any_delivery_order_with_duplicates_yields_each_message_once_in_order(
    seed: int,
) -> None:
    """A model of the link: messages come late, twice, out of order; a heal replays from the
    cursor. Whatever happens, the application sees 1..N exactly once, in order."""
    rng = random.Random(seed)
    total = 60
    cursor = Cursor()
    assert cursor.on_joined(0, "E", None) is Joined.FRESH
    delivered: list[int] = []
    pending = list(range(1, total + 1))
    inflight: list[int] = []
    steps = 0
    while len(delivered) < total:
        steps += 1
        assert steps < 10_000
        if pending and (not inflight or rng.random() < 0.6):
            inflight.append(pending.pop(0))
            if rng.random() < 0.2:
                inflight.append(rng.randint(1, total))  # a duplicate from anywhere
        if not inflight:
            continue
        index = 0 if rng.random() < 0.7 else rng.randrange(len(inflight))
        offset = inflight.pop(index)
        verdict = cursor.on_data(offset, "E")
        if verdict is Verdict.DELIVER:
            delivered.append(offset)
        elif verdict is Verdict.HEAL:
            # The gateway answers the resubscribe: recovered; replay after the cursor.
            since = cursor.since()
            assert since is not None
            head = max([since.offset, *inflight, offset])
            assert cursor.on_joined(head, "E", True) is Joined.RECOVERED
            inflight[:0] = list(range(since.offset + 1, head + 1))
    assert delivered == list(range(1, total + 1))


def test_since_takes_a_position_or_the_wire_form() -> None:
    assert as_position(Position(3, "E")) == Position(3, "E")
    assert as_position({"offset": 3, "epoch": "E"}) == Position(3, "E")
    for bad in ({"offset": "3", "epoch": "E"}, {"offset": True, "epoch": "E"}, {"epoch": "E"}, 3):
        with pytest.raises(TypeError, match="since must be"):
            as_position(bad)  # type: ignore[arg-type]

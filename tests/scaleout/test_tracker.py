"""The node's stream tracker: contiguous delivery, gaps, epochs, and the read
catch buffer merged by offset (sans I/O: publications are handed in by hand)."""

from __future__ import annotations

from hlgateway.broker.base import Publication
from hlgateway.broker.tracker import Stored, StreamTracker
from hlgateway.protocol.positions import Position


def pub(offset: int) -> Publication:
    return Publication(offset, b"m%d" % offset)


def offsets(publications: list[Publication]) -> list[int]:
    return [p.offset for p in publications]


def test_in_order_publications_pass_once() -> None:
    tracker = StreamTracker()
    assert offsets(tracker.receive("e", pub(5))[0]) == [5]  # first sight: the baseline
    assert offsets(tracker.receive("e", pub(6))[0]) == [6]
    assert tracker.receive("e", pub(6)) == ([], None)  # a repeat is dropped


def test_a_gap_is_fetched_and_held_publications_follow_in_order() -> None:
    tracker = StreamTracker()
    tracker.receive("e", pub(1))
    assert tracker.receive("e", pub(4)) == ([], 1)  # fetch after offset 1
    assert tracker.receive("e", pub(5)) == ([], None)  # one fetch at a time
    out = tracker.fetched(Stored("e", 5, [pub(2), pub(3), pub(4), pub(5)]))
    assert offsets(out) == [2, 3, 4, 5]
    assert tracker.offset == 5 and not tracker.fetching


def test_what_the_history_no_longer_has_is_skipped_and_counted() -> None:
    tracker = StreamTracker()
    tracker.receive("e", pub(1))
    tracker.receive("e", pub(9))
    out = tracker.fetched(Stored("e", 9, [pub(7), pub(8), pub(9)]))  # 2..6 trimmed
    assert offsets(out) == [9]
    assert tracker.gaps_lost == 7


def test_a_new_epoch_starts_from_its_first_offset() -> None:
    tracker = StreamTracker()
    tracker.receive("old", pub(40))
    assert offsets(tracker.receive("new", pub(1))[0]) == [1]
    assert tracker.receive("new", pub(3)) == ([], 1)


def test_a_read_merges_history_and_caught_live_data_without_gap_or_duplicate() -> None:
    tracker = StreamTracker()
    tracker.receive("e", pub(10))
    catch = tracker.open_catch()
    # While the history read is in flight, 11 and 12 pass on live (caught);
    # the read itself saw the stream up to 11.
    tracker.receive("e", pub(11))
    tracker.receive("e", pub(12))
    stored = Stored("e", 11, [pub(8), pub(9), pub(10), pub(11)])
    replay = tracker.resolve(catch, stored, Position(7, "e"))
    assert replay.recovered
    assert replay.position == Position(12, "e")
    assert offsets(replay.publications) == [8, 9, 10, 11, 12]
    # The catch is closed: later publications are live data, not replay.
    tracker.receive("e", pub(13))
    assert offsets(catch.caught) == [11, 12]


def test_a_read_cuts_the_replay_at_what_was_passed_on() -> None:
    """Entries the store has but the node has not passed on yet come live: not twice."""
    tracker = StreamTracker()
    tracker.receive("e", pub(5))
    catch = tracker.open_catch()
    replay = tracker.resolve(
        catch, Stored("e", 7, [pub(4), pub(5), pub(6), pub(7)]), Position(3, "e")
    )
    assert replay.recovered
    assert offsets(replay.publications) == [4, 5]
    assert replay.position == Position(5, "e")
    assert offsets(tracker.receive("e", pub(6))[0]) == [6]


def test_a_read_without_since_gives_the_head_and_sets_the_baseline() -> None:
    tracker = StreamTracker()
    catch = tracker.open_catch()
    replay = tracker.resolve(catch, Stored("e", 42), None)
    assert (replay.position, replay.recovered, replay.publications) == (
        Position(42, "e"),
        False,
        [],
    )
    assert tracker.receive("e", pub(42)) == ([], None)  # already covered
    assert offsets(tracker.receive("e", pub(43))[0]) == [43]


def test_a_replay_is_all_or_nothing() -> None:
    tracker = StreamTracker()
    tracker.receive("e", pub(20))
    catch = tracker.open_catch()
    # The history starts at 15: offsets 11..14 are gone.
    replay = tracker.resolve(
        catch, Stored("e", 20, [pub(o) for o in range(15, 21)]), Position(10, "e")
    )
    assert not replay.recovered and replay.publications == []
    assert replay.position == Position(20, "e")


def test_another_epoch_or_an_offset_never_reached_is_not_recovered() -> None:
    tracker = StreamTracker()
    for since in (Position(3, "other"), Position(99, "e")):
        catch = tracker.open_catch()
        replay = tracker.resolve(catch, Stored("e", 5, [pub(o) for o in range(4, 6)]), since)
        assert not replay.recovered and replay.publications == []


def test_a_store_with_a_new_epoch_rebases_the_tracker() -> None:
    tracker = StreamTracker()
    tracker.receive("old", pub(30))
    catch = tracker.open_catch()
    replay = tracker.resolve(catch, Stored("new", 2, [pub(1), pub(2)]), Position(30, "old"))
    assert not replay.recovered and replay.position == Position(2, "new")
    assert tracker.receive("new", pub(2)) == ([], None)
    assert offsets(tracker.receive("new", pub(3))[0]) == [3]

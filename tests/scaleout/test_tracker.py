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


def test_a_new_epoch_is_taken_from_where_the_store_says_it_starts() -> None:
    """A flushed Redis: the new epoch starts at 0, and this node's subscribers get
    it from its first message."""
    tracker = StreamTracker()
    tracker.receive("old", pub(40))
    assert tracker.receive("new", pub(1)) == ([], 40)  # held; the store is asked
    out = tracker.fetched(Stored("new", 1, [pub(1)]))
    assert offsets(out) == [1] and (tracker.epoch, tracker.epochs) == ("new", 1)
    assert tracker.receive("new", pub(3)) == ([], 1)
    assert tracker.receive("old", pub(41)) == ([], None)  # late news of the old epoch


def test_a_history_that_went_backwards_goes_on_from_the_new_epochs_base() -> None:
    """This node passed 9 and 10 of epoch E on; Redis lost them (a failover) and the
    stream went on in epoch F from its committed head 8 (verify.lua), where 9, 10
    and 11 are other messages: they all reach the subscribers, in F, and nothing
    of F before its base."""
    tracker = StreamTracker()
    for offset in range(7, 11):
        tracker.receive("E", pub(offset))
    assert tracker.receive("F", pub(11)) == ([], 10)
    assert tracker.receive("F", pub(12)) == ([], None)  # held too, one fetch at a time
    out = tracker.fetched(Stored("F", 11, [pub(9), pub(10), pub(11)], base=8))
    assert offsets(out) == [9, 10, 11, 12]
    assert (tracker.epoch, tracker.offset, tracker.gaps_lost) == ("F", 12, 0)


def test_a_reconnect_fetch_that_finds_another_epoch_moves_to_it() -> None:
    """No publication came in the new epoch yet: the fetch after a reconnect (asked
    with this node's epoch, so answered from the new epoch's base) moves the node."""
    tracker = StreamTracker()
    tracker.receive("E", pub(10))
    tracker.fetching = True  # the engine's reconnect fetch
    assert tracker.fetched(Stored("F", 8, [], base=8)) == []
    assert (tracker.epoch, tracker.offset) == ("F", 8)
    assert offsets(tracker.receive("F", pub(9))[0]) == [9]


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


def test_a_read_that_finds_a_new_epoch_joins_it_where_delivery_will_go_on() -> None:
    """The store went on in a new epoch that this node's delivery has not reached:
    the subscriber joins at that epoch's base, and gets the rest live once the
    node's fetch moved it there (no message twice, none missed)."""
    tracker = StreamTracker()
    tracker.receive("old", pub(30))
    catch = tracker.open_catch()
    replay = tracker.resolve(catch, Stored("new", 2, [], base=0), Position(30, "old"))
    assert not replay.recovered and replay.position == Position(0, "new")
    tracker.fetching = True  # the engine's fetch, asked with the old epoch
    assert offsets(tracker.fetched(Stored("new", 2, [pub(1), pub(2)]))) == [1, 2]
    assert tracker.receive("new", pub(2)) == ([], None)
    assert offsets(tracker.receive("new", pub(3))[0]) == [3]


def test_a_position_below_the_epochs_base_is_not_recovered() -> None:
    tracker = StreamTracker()
    tracker.receive("F", pub(12))
    catch = tracker.open_catch()
    replay = tracker.resolve(catch, Stored("F", 12, [pub(11), pub(12)], base=8), Position(5, "F"))
    assert not replay.recovered and replay.position == Position(12, "F")


def test_what_this_node_passed_on_counts_as_reached_beyond_the_stores_committed_head() -> None:
    """A failover lost the commit of 4 and 5, not the entries (read.lua gives them up
    to what this node passed on): a client coming back from 4 is recovered."""
    tracker = StreamTracker()
    for offset in range(1, 6):
        tracker.receive("e", pub(offset))
    catch = tracker.open_catch()
    replay = tracker.resolve(catch, Stored("e", 3, [pub(4), pub(5)], top=5), Position(4, "e"))
    assert replay.recovered and offsets(replay.publications) == [5]
    assert replay.position == Position(5, "e")
    catch = tracker.open_catch()
    beyond = tracker.resolve(catch, Stored("e", 3, [pub(4), pub(5)], top=5), Position(6, "e"))
    assert not beyond.recovered  # never delivered here, never committed: not a position

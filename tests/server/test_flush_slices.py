"""The flush scheduler's slices, sans I/O: outboxes that record their flushes and a
list for the loop's ready queue. What a turn writes, what waits for the next pass,
when the latency metric hears of a frame, and that an error leaves the rest due."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from hlgateway.server.outbox import FlushScheduler, Outbox
from hlgateway.websocket.frames import Frame


class Recorder:
    """An outbox as the scheduler sees it: something to flush."""

    def __init__(self, name: int, log: list[int], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    def flush(self) -> None:
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("a subscriber failed")


class Rig:
    def __init__(self, n: int, slice_size: int, urgent_slice: int = 1) -> None:
        self.ready: list[Callable[[], None]] = []  # the loop's ready queue
        self.log: list[int] = []
        self.reported: list[list[bytes]] = []
        self.scheduler = FlushScheduler(
            lambda frames: self.reported.append([f.payload for f in frames]),
            slice_size=slice_size,
            urgent_slice=urgent_slice,
            call_soon=self.ready.append,
        )
        self.in_flight = 0  # posts in flight, as the gateway's relay counts them
        self.scheduler.urgent = lambda: self.in_flight > 0
        self.boxes = [Recorder(i, self.log) for i in range(n)]

    def mark(self, *names: int) -> None:
        for name in names:
            self.scheduler.mark(cast(Outbox, self.boxes[name]))

    def turn(self) -> list[int]:
        """One loop turn: what was ready when it began; returns what it flushed."""
        ready = self.ready[:]
        self.ready.clear()
        start = len(self.log)
        for callback in ready:
            callback()
        return self.log[start:]


def test_a_pass_is_written_a_slice_a_turn_in_marking_order() -> None:
    rig = Rig(10, slice_size=4)
    rig.mark(*range(10))
    assert len(rig.ready) == 1  # one flush scheduled, however many are marked
    assert rig.turn() == [0, 1, 2, 3]
    assert rig.scheduler.writing
    assert rig.turn() == [4, 5, 6, 7]
    assert rig.turn() == [8, 9]
    assert not rig.scheduler.writing and rig.ready == []


def test_what_is_marked_during_a_pass_waits_for_the_next_one() -> None:
    rig = Rig(10, slice_size=4)
    rig.mark(*range(10))
    assert rig.turn() == [0, 1, 2, 3]
    # 2 was written already, 6 not yet, 9 not yet: each is flushed once in this pass,
    # and the new marks in marking order in the next (an outbox's frames are its own
    # queue: a second flush writes what came since, an empty one writes nothing).
    rig.mark(6, 2, 9)
    assert rig.turn() == [4, 5, 6, 7]
    assert rig.turn() == [8, 9]
    assert rig.turn() == [6, 2, 9]
    assert rig.ready == []


def test_frames_are_reported_once_the_pass_that_writes_them_ends() -> None:
    rig = Rig(6, slice_size=4)
    first, second = Frame(b'{"n":1}'), Frame(b'{"n":2}')
    rig.mark(*range(6))
    rig.scheduler.published(first)
    rig.turn()
    assert rig.reported == []  # 4 and 5 are not written yet
    rig.mark(0)
    rig.scheduler.published(second)  # after the pass began: not in it
    rig.turn()
    assert rig.reported == [[b'{"n":1}']]
    rig.turn()
    assert rig.reported == [[b'{"n":1}'], [b'{"n":2}']]


def test_flush_now_writes_a_slice_at_once_and_leaves_the_rest_scheduled() -> None:
    rig = Rig(6, slice_size=4)
    rig.mark(*range(6))
    rig.scheduler.flush_now()
    assert rig.log == [0, 1, 2, 3]
    assert len(rig.ready) == 1  # the turn mark() scheduled: it continues the pass
    assert rig.turn() == [4, 5]
    assert rig.ready == []
    rig.scheduler.flush_now()  # nothing marked: nothing written, nothing scheduled
    assert rig.log == [0, 1, 2, 3, 4, 5] and rig.ready == []


def test_an_error_propagates_and_the_rest_of_the_pass_stays_due() -> None:
    rig = Rig(6, slice_size=4)
    rig.boxes[1].fail = True
    rig.mark(*range(6))
    with pytest.raises(RuntimeError):
        rig.turn()
    assert rig.log == [0, 1]  # the slice stopped at the failure, as one flush would
    assert rig.turn() == [4, 5]
    assert rig.ready == []


def test_an_outbox_marked_twice_before_its_pass_is_flushed_once() -> None:
    rig = Rig(3, slice_size=2)
    rig.mark(0, 1, 0, 2, 1)
    assert rig.turn() == [0, 1]
    assert rig.turn() == [2]
    assert rig.ready == []


def test_a_post_in_flight_waits_behind_a_small_slice_not_a_full_one() -> None:
    """A post's upstream send (and its answer read back) wakes a task, queued behind
    the slice already due: while a post is in flight that slice is `urgent_slice`
    outboxes, and the pass goes on at full slices once it is answered."""
    rig = Rig(12, slice_size=4, urgent_slice=1)
    rig.mark(*range(12))
    assert rig.turn() == [0, 1, 2, 3]
    rig.in_flight = 1  # a post was read: its send is queued behind the next slice
    sent: list[int] = []
    rig.ready.append(lambda: sent.append(len(rig.log)))
    assert rig.turn() == [4]
    assert sent == [5]  # it waited for one outbox's write, not four
    answered: list[int] = []
    rig.ready.append(lambda: answered.append(len(rig.log)))  # its answer, read back
    assert rig.turn() == [5]
    assert answered == [6]
    rig.in_flight = 0
    assert rig.turn() == [6, 7, 8, 9]
    assert rig.turn() == [10, 11]
    assert rig.log == list(range(12))  # order and completeness as ever
    assert rig.ready == []

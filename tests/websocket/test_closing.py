"""The closing handshake as a state machine: every path, driven without sockets, on a fake clock."""

from __future__ import annotations

import pytest

from hlgateway.websocket.closing import Closing, State, Step


def closing() -> Closing:
    return Closing(close_timeout=5.0, linger_time=2.0, linger_bytes=1000)


def test_a_new_connection_is_open() -> None:
    state = closing()
    assert state.open and state.state is State.OPEN
    assert not state.close_pending and not state.hanging_up
    assert state.client_first is None and state.deadline is None


def test_we_close_first_and_the_client_answers() -> None:
    state = closing()
    assert state.close(4001, "Token expired") is Step.SEND_CLOSE
    assert not state.open and state.close_pending
    assert (state.frame_code, state.frame_reason) == (4001, "Token expired")
    assert state.close_written(10.0) is Step.AWAIT_CLOSE
    assert state.deadline == 15.0 and not state.close_pending
    # The handshake is complete: nothing is left unread, the server closes first.
    assert state.receive_close(1000, "bye", 11.0) is Step.CLOSE_NOW
    assert state.deadline is None
    assert state.client_first is False and state.received == (1000, "bye")
    state.lost()
    assert state.state is State.CLOSED and state.deadline is None


def test_the_client_closes_first_and_we_echo_its_code() -> None:
    state = closing()
    assert state.receive_close(1001, "going", 3.0) is Step.SEND_CLOSE
    assert state.client_first is True
    assert (state.frame_code, state.frame_reason) == (1001, "")
    assert state.close_written(3.5) is Step.CLOSE_NOW  # nothing more to await or read
    assert state.deadline is None


def test_an_empty_close_is_answered_empty() -> None:
    state = closing()
    assert state.receive_close(None, "", 0.0) is Step.SEND_CLOSE
    assert state.frame_code is None


def test_the_first_decision_stands() -> None:
    state = closing()
    assert state.close(1001, "Server shutting down") is Step.SEND_CLOSE
    assert state.close(4008, "Slow consumer") is Step.NOTHING
    # The client's close crosses ours: ours is still pending, nothing new to send,
    # and the hang-up follows once ours is written.
    assert state.receive_close(1000, "", 1.0) is Step.NOTHING
    assert (state.frame_code, state.frame_reason) == (1001, "Server shutting down")
    assert state.close_written(2.0) is Step.CLOSE_NOW


def test_failing_the_connection_hangs_up_without_awaiting_an_answer() -> None:
    state = closing()
    assert state.fail(1009, "message too big", 0.0) is Step.SEND_CLOSE
    assert state.failed and state.client_first is False
    assert state.close_written(1.0) is Step.HANG_UP
    assert state.deadline == 3.0


def test_a_violation_while_awaiting_the_answer_cuts_the_wait_short() -> None:
    state = closing()
    state.close(1000)
    assert state.close_written(0.0) is Step.AWAIT_CLOSE
    assert state.fail(1002, "reserved opcode", 1.0) is Step.HANG_UP
    assert state.deadline == 3.0
    assert state.fail(1002, "again", 1.5) is Step.NOTHING  # already hanging up


def test_a_violation_while_our_close_is_pending_keeps_its_frame() -> None:
    state = closing()
    state.close(4001, "Token expired")
    assert state.fail(1007, "not UTF-8", 0.0) is Step.NOTHING
    assert state.frame_code == 4001
    assert state.close_written(0.0) is Step.HANG_UP


def test_a_client_that_never_answers_is_hung_up_on_then_dropped() -> None:
    state = closing()
    state.close(1000)
    state.close_written(0.0)
    assert state.timed_out(4.9) is Step.NOTHING  # not yet
    assert state.timed_out(5.0) is Step.HANG_UP
    assert state.hanging_up and state.deadline == 7.0
    assert state.timed_out(6.0) is Step.NOTHING
    assert state.timed_out(7.0) is Step.ABORT
    assert state.deadline is None


def test_the_clients_close_while_lingering_ends_the_wait() -> None:
    state = closing()
    state.close(1000)
    state.close_written(0.0)
    assert state.timed_out(5.0) is Step.HANG_UP  # FIN sent; still reading (and parsing)
    assert state.receive_close(1000, "late", 5.5) is Step.NOTHING
    assert state.client_eof() is Step.CLOSE_NOW


def test_a_longer_wait_for_a_slow_reader() -> None:
    state = closing()
    state.close(4008, "Slow consumer")
    assert state.close_written(0.0, wait=10.0) is Step.AWAIT_CLOSE
    assert state.deadline == 10.0


def test_lingering_discards_up_to_the_bound() -> None:
    state = closing()
    state.fail(1009, "message too big", 0.0)
    state.close_written(0.0)
    assert state.discard(600) is Step.NOTHING
    assert state.discard(400) is Step.NOTHING  # exactly the bound
    assert state.discard(1) is Step.ABORT
    assert state.discarded == 1001


@pytest.mark.parametrize("when", ["open", "closing"])
def test_the_client_hanging_up_ends_the_socket(when: str) -> None:
    state = closing()
    if when == "closing":
        state.close(1000)
        state.close_written(0.0)
    assert state.client_eof() is Step.CLOSE_NOW


def test_nothing_happens_after_the_socket_is_gone() -> None:
    state = closing()
    state.lost()
    assert state.close(1000) is Step.NOTHING
    assert state.fail(1002, "x", 0.0) is Step.NOTHING
    assert state.receive_close(1000, "", 0.0) is Step.NOTHING
    assert state.close_written(0.0) is Step.NOTHING
    assert state.timed_out(100.0) is Step.NOTHING
    assert state.client_eof() is Step.NOTHING


def test_a_second_close_from_the_client_is_ignored() -> None:
    state = closing()
    state.receive_close(1000, "", 0.0)
    assert state.receive_close(1001, "", 0.0) is Step.NOTHING
    assert state.received == (1000, "")

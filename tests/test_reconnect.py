"""The one reconnect policy and loop (hlgateway/reconnect.py), on a fake clock against a
fake server: what is waited, when the count resets, when it gives up, stop and wake."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from hlgateway.backoff import Backoff
from hlgateway.reconnect import (
    GiveUp,
    Reconnect,
    Retry,
    Supervisor,
    retrying,
    sleeping,
    stop_tasks,
    wait_or_wake,
)

PLAIN = Backoff(initial=1.0, decay=2.0, max_delay=8.0, jitter=0)


class FakeClock:
    """The loop's wait, without time passing: each wait is recorded and `now` moves on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        self.waits.append(seconds)
        if not wake.is_set():
            self.now += seconds
        await asyncio.sleep(0)  # others may run, as in a real wait


class FakeServer:
    """What the attempts connect to, one scripted answer per connect: "refuse", or "up"
    (a connection that serves until the script drops it, at once here)."""

    def __init__(self, script: list[str], clock: FakeClock) -> None:
        self.script = list(script)
        self.clock = clock
        self.connects: list[float] = []  # when each connect came, on the fake clock

    async def connect(self) -> None:
        self.connects.append(self.clock.now)
        answer = self.script.pop(0) if self.script else "refuse"
        if answer == "refuse":
            raise ConnectionRefusedError("refused")

    async def serve(self) -> None:
        await asyncio.sleep(0)  # up, then dropped


def owner(server: FakeServer, policy: Reconnect) -> Callable[[], Awaitable[Retry | GiveUp]]:
    """An attempt as the four owners write theirs: connect, serve, ask the policy."""

    async def attempt() -> Retry | GiveUp:
        try:
            await server.connect()
            policy.connected()
            await server.serve()
        except ConnectionRefusedError as exc:
            return policy.ended(str(exc))
        return policy.ended("dropped")

    return attempt


# -- the policy ------------------------------------------------------------------------


def test_delays_double_to_the_cap_and_a_connection_resets_them() -> None:
    policy = Reconnect(PLAIN)
    delays = []
    for _ in range(5):
        decision = policy.ended()
        assert isinstance(decision, Retry)
        delays.append(decision.after)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.attempt == 5
    policy.connected()
    assert policy.ended("dropped") == Retry(1.0, 1, "dropped")


def test_it_gives_up_once_the_attempts_are_spent() -> None:
    policy = Reconnect(Backoff(initial=1.0, decay=2.0, max_attempts=2, jitter=0))
    assert isinstance(policy.ended(), Retry)
    assert isinstance(policy.ended(), Retry)
    assert policy.ended("refused") == GiveUp(2, "refused")


def test_jittered_delays_stay_in_their_band() -> None:
    policy = Reconnect(Backoff.full_jitter(1.0, 30.0), random.Random(3))
    for attempt in range(1, 40):
        decision = policy.ended()
        assert isinstance(decision, Retry)
        assert 0 <= decision.after <= min(30.0, 2.0 ** (attempt - 1))


# -- the loop --------------------------------------------------------------------------


async def test_the_loop_waits_as_the_policy_says_and_resets_after_a_connection() -> None:
    clock = FakeClock()
    server = FakeServer(["refuse", "refuse", "up", "refuse", "up"], clock)
    policy = Reconnect(Backoff(initial=1.0, decay=2.0, max_attempts=3, jitter=0))
    shown: list[Retry] = []
    outcome = await Supervisor(owner(server, policy), on_retry=shown.append, wait=clock.wait).run()
    # refused, refused, up (count reset) and dropped, refused, up and dropped, then
    # refused until the attempts are spent
    assert clock.waits == [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 4.0]
    assert server.connects == [0.0, 1.0, 3.0, 4.0, 6.0, 7.0, 9.0, 13.0]
    assert [r.attempt for r in shown] == [1, 2, 1, 2, 1, 2, 3]
    assert outcome == GiveUp(3, "refused")


async def test_an_owner_that_stops_ends_the_loop_without_another_wait() -> None:
    clock = FakeClock()
    server = FakeServer(["refuse", "up"], clock)
    policy = Reconnect(PLAIN)
    stopping = False

    async def attempt() -> Retry | GiveUp:
        nonlocal stopping
        decision = await owner(server, policy)()
        stopping = len(server.connects) == 2  # stop() while the second connection served
        return decision

    shown: list[Retry] = []
    loop: Supervisor[GiveUp] = Supervisor(
        attempt, stopping=lambda: stopping, on_retry=shown.append, wait=clock.wait
    )
    assert await loop.run() is None
    assert clock.waits == [1.0] and len(shown) == 1


async def test_a_retry_at_once_does_not_wait() -> None:
    clock = FakeClock()
    answers: list[Retry | str] = [Retry(0.0, 0, "failover"), Retry(2.0, 1, "dropped"), "done"]

    async def attempt() -> Retry | str:
        return answers.pop(0)

    assert await Supervisor(attempt, wait=clock.wait).run() == "done"
    assert clock.waits == [2.0]


async def test_wake_cuts_a_wait_short() -> None:
    waiting = asyncio.Event()

    async def blocking_wait(seconds: float, wake: asyncio.Event) -> None:
        waiting.set()
        await wake.wait()  # no time passes on this clock: only a wake ends the wait

    answers: list[Retry | str] = [Retry(3600.0, 1, "dropped"), "done"]

    async def attempt() -> Retry | str:
        return answers.pop(0)

    loop: Supervisor[str] = Supervisor(attempt, wait=blocking_wait)
    run = asyncio.create_task(loop.run())
    await waiting.wait()
    loop.wake()
    assert await run == "done"


async def test_a_wake_before_the_wait_is_forgotten() -> None:
    """A failover asked for while connected must not cut the next backoff short."""
    clock = FakeClock()
    loop: Supervisor[str] | None = None
    answers: list[Retry | str] = [Retry(5.0, 1, "dropped"), "done"]

    async def attempt() -> Retry | str:
        assert loop is not None
        loop.wake()  # during the attempt, not during a wait
        return answers.pop(0)

    loop = Supervisor(attempt, wait=clock.wait)
    assert await loop.run() == "done"
    assert clock.now == 5.0  # waited in full


async def test_the_default_wait_ends_on_wake() -> None:
    wake = asyncio.Event()
    asyncio.get_running_loop().call_soon(wake.set)
    await wait_or_wake(3600.0, wake)  # returns: the wake, not the hour
    assert wake.is_set()


# -- one call, retried -----------------------------------------------------------------


async def test_retrying_returns_the_value_after_failures_and_resets() -> None:
    clock = FakeClock()
    policy = Reconnect(PLAIN)
    results: list[int | Exception] = [OSError("down"), OSError("still down"), 42]
    failures: list[str] = []

    async def call() -> int:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    value = await retrying(
        call, policy, failed=lambda exc: failures.append(str(exc)), wait=clock.wait
    )
    assert value == 42
    assert failures == ["down", "still down"] and clock.waits == [1.0, 2.0]
    assert policy.attempt == 0  # the success reset it for the next call


async def test_retrying_gives_up_with_the_policy() -> None:
    clock = FakeClock()
    policy = Reconnect(Backoff(initial=0.5, decay=2.0, max_attempts=2, jitter=0))

    async def call() -> int:
        raise TimeoutError

    outcome = await retrying(call, policy, failed=lambda _: None, wait=clock.wait)
    assert isinstance(outcome, GiveUp) and outcome.attempts == 2
    assert clock.waits == [0.5, 1.0]


async def test_retrying_lets_cancellation_through() -> None:
    started = asyncio.Event()

    async def call() -> int:
        started.set()
        await asyncio.Event().wait()  # until cancelled
        return 0

    task = asyncio.create_task(retrying(call, Reconnect(PLAIN), failed=lambda _: None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_retrying_retries_only_the_failures_it_is_told_and_shows_each_wait() -> None:
    """The REST loops retry a RestError (an outage) and let anything else through
    (a bug); `on_retry` sees the decision, delay included, before each wait."""
    clock = FakeClock()
    shown: list[Retry] = []
    results: list[int | Exception] = [ConnectionError("reset"), ValueError("bad answer"), 1]

    async def call() -> int:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    with pytest.raises(ValueError, match="bad answer"):
        await retrying(
            call,
            Reconnect(PLAIN),
            on_retry=shown.append,
            retry_on=(ConnectionError,),
            wait=clock.wait,
        )
    assert shown == [Retry(1.0, 1, repr(ConnectionError("reset")))]
    assert clock.waits == [1.0] and results == [1]


async def test_a_plain_sleep_serves_as_the_wait() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    failures = [OSError("down"), OSError("down")]

    async def call() -> str:
        if failures:
            raise failures.pop()
        return "up"

    assert await retrying(call, Reconnect(PLAIN), wait=sleeping(sleep)) == "up"
    assert slept == [1.0, 2.0]


# -- stopping ----------------------------------------------------------------------------


async def test_stop_tasks_cancels_again_a_task_that_lost_its_cancellation() -> None:
    # As when a cancellation lands as a library's timeout expires and comes out as
    # its TimeoutError: the attempt reads "unavailable" and goes on (a stop that hung).
    lost = 0
    attempts = 0

    async def reconnecting() -> None:
        nonlocal lost, attempts
        while True:
            attempts += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if lost == 0:
                    lost += 1
                    continue  # the first cancellation is swallowed
                raise

    task = asyncio.get_running_loop().create_task(reconnecting())
    await asyncio.sleep(0)
    await stop_tasks([task], again_after=0)
    assert task.cancelled() and lost == 1 and attempts == 2


async def test_stop_tasks_with_nothing_running_returns() -> None:
    async def done() -> int:
        return 1

    task = asyncio.get_running_loop().create_task(done())
    await task
    await stop_tasks([task])
    await stop_tasks([])

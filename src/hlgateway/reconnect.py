"""Staying connected: one policy (sans I/O) and one small loop, for everything that reconnects.

Four parts hold a connection that drops and must come back: the Python client
(client/connection.py), each upstream link to Hyperliquid (upstream/link.py), the
Redis broker (broker/redis.py) and the notifier's Telegram long poll
(notifier/updates.py). Each writes only its *attempt*: connect, serve until the
connection ends, and ask the policy what comes next. The rest is here, once:

- `Reconnect`, the policy: failed attempts in a row (a connection that came up
  resets the count), the delay before the next one from a `Backoff` (capped
  exponential with jitter, so that many peers losing one server do not come back
  in lock step), and giving up once the backoff's `max_attempts` are spent.
  The client's `ReconnectPolicy` (client/reconnect.py) is this one plus its rules
  about refused tokens, refused handshakes and failovers.
- `Supervisor`, the loop: attempt, then wait as decided, until an attempt returns
  something other than a `Retry` or the owner is stopping. `wake()` cuts a wait
  short (a failover, a close); the wait is injected, so tests run the loop on a
  fake clock.

`retrying(call, policy)` is the same loop for one call that must eventually
succeed (a database write, a REST fetch: the notifier's stores, the upstream
market list, the wallets' recoveries, candle snapshots): again after each
failure, as the policy says, until it returns or the policy gives up.

Like python-websockets' `connect()` iterator (backoff reset once connected) and
centrifuge's `runForever`, but with the decision a plain object the owner can
extend, and the attempt a callable rather than a loop body: the four owners keep
their own error handling, logs and state, which differ, and share the counting
and the waiting, which do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hlgateway.backoff import Backoff


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempt again after `after` seconds; `attempt` failed attempts in a row so far."""

    after: float
    attempt: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The backoff's attempts are spent: `attempts` retries failed."""

    attempts: int
    reason: str = ""


class Reconnect:
    """When to try again, as plain calls: `connected()` when a connection came up,
    `ended()` when an attempt ended (up or not), which answers `Retry` or `GiveUp`."""

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self.attempt = 0  # failed attempts in a row
        self._rng = rng

    def connected(self) -> None:
        self.attempt = 0

    def ended(self, reason: str = "") -> Retry | GiveUp:
        self.attempt += 1
        if self.backoff.exhausted(self.attempt):
            return GiveUp(self.attempt - 1, reason)
        return Retry(self.backoff.delay(self.attempt, self._rng), self.attempt, reason)


Done = TypeVar("Done")
Wait = Callable[[float, asyncio.Event], Awaitable[None]]


async def wait_or_wake(seconds: float, wake: asyncio.Event) -> None:
    """Wait `seconds`, or less if `wake` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


def _never() -> bool:
    return False


class Supervisor(Generic[Done]):
    """Runs `attempt` again and again, waiting what each `Retry` says in between.

    `attempt` is one connection from connect to its end (or a failed connect), and
    returns the policy's decision. `run()` ends with the first decision that is not
    a `Retry` (returned), or when `stopping()` says so after an attempt (None).
    `on_retry` shows the decision before the wait (a state, an event, a count).
    """

    def __init__(
        self,
        attempt: Callable[[], Awaitable[Retry | Done]],
        *,
        stopping: Callable[[], bool] = _never,
        on_retry: Callable[[Retry], None] | None = None,
        wait: Wait = wait_or_wake,
    ) -> None:
        self._attempt = attempt
        self._stopping = stopping
        self._on_retry = on_retry
        self._wait = wait
        self._wake = asyncio.Event()

    async def run(self) -> Done | None:
        while not self._stopping():
            decision = await self._attempt()
            if self._stopping():
                return None
            if not isinstance(decision, Retry):
                return decision
            if self._on_retry is not None:
                self._on_retry(decision)
            if decision.after > 0:
                self._wake.clear()
                await self._wait(decision.after, self._wake)
        return None

    def wake(self) -> None:
        """End the current wait now (nothing happens when not waiting)."""
        self._wake.set()


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], *, again_after: float = 0.5) -> None:
    """Cancel `tasks` and wait until every one has ended.

    A cancellation can be lost below us: one that lands as a library's own timeout
    expires may come out as that library's TimeoutError (`asyncio.wait_for` on 3.11,
    client libraries' connect and close), which a reconnect attempt reads as "the
    server is unavailable" and reconnects. A task still running `again_after`
    seconds later is cancelled again, so a stop never hangs on a lost cancellation.
    The owner should also make its loop's `stopping()` true first.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Returned(Generic[T]):
    value: T


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: Reconnect,
    *,
    failed: Callable[[Exception], None] | None = None,
    on_retry: Callable[[Retry], None] | None = None,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    wait: Wait = wait_or_wake,
) -> T | GiveUp:
    """`call()` until it returns its value, or `GiveUp` once the policy does.

    Each failure of a kind in `retry_on` is shown to `failed` (a count), then the
    decision to `on_retry` (a log line with the delay) before the wait; any other
    exception is a bug, not an outage, and propagates. A success resets the
    policy, so one policy may serve a stream of calls.
    """

    async def attempt() -> Retry | GiveUp | _Returned[T]:
        try:
            value = await call()
        except retry_on as exc:
            if failed is not None:
                failed(exc)
            return policy.ended(repr(exc))
        policy.connected()
        return _Returned(value)

    supervisor: Supervisor[GiveUp | _Returned[T]] = Supervisor(
        attempt, on_retry=on_retry, wait=wait
    )
    outcome = await supervisor.run()
    if isinstance(outcome, _Returned):
        return outcome.value
    assert outcome is not None  # never stopping: only a return or giving up ends it
    return outcome


def sleeping(sleep: Callable[[float], Awaitable[None]]) -> Wait:
    """A `Wait` from a plain sleep (an owner whose waits nothing cuts short)."""

    async def wait(seconds: float, wake: asyncio.Event) -> None:
        await sleep(seconds)

    return wait

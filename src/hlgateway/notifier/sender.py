"""The outbox out: lines packed into messages, sent as Telegram's limits allow.

A chat's messages go one at a time, oldest first. Each request's start is
stored before it is made (a restarted notifier paces from there), and its
outcome after: `sent` with Telegram's message id; a 429 holds the chat for
`retry_after` (stored too) and the same message goes after it; `Forbidden`
switches the chat off; `ChatMigrated` moves it; a transient failure is retried
with backoff, up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from hlgateway.backoff import Backoff
from hlgateway.notifier.pacing import Pacer
from hlgateway.notifier.repository import Outgoing, Repository
from hlgateway.notifier.state import BotState
from hlgateway.notifier.telegram import Outcome, SendResult, TelegramApi
from hlgateway.reconnect import Reconnect, Retry, retrying

log = logging.getLogger("hlgateway.notifier")

MAX_ATTEMPTS = 20  # a message that failed this often for reasons other than 429 is dropped
# A message failing: its chat held 1, 2, 4 .. 60 s (jittered); the loop while the
# database is away: 1, 2, 4 .. 10 s.
SEND_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=60.0)
STORE_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=10.0)
BROKEN = 5.0  # a chat after an unexpected error (a bug, or the database away)


class Sender:
    def __init__(
        self,
        repo: Repository,
        api: TelegramApi,
        pacer: Pacer,
        state: BotState,
        coalesce_ms: int,
        clock: Callable[[], float],
    ) -> None:
        self.repo = repo
        self.api = api
        self.pacer = pacer
        self.state = state
        self.coalesce_ms = coalesce_ms  # lines of a chat within this window share a message
        self.clock = clock
        self.in_flight: dict[int, asyncio.Task[None]] = {}  # chat -> its request
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something may be ready to go: look now, not at the next timer."""
        self._wake.set()

    async def restore(self) -> None:
        """Pace from where the last run stopped: its last requests and 429 holds."""
        now_ms = int(self.clock() * 1000)
        async with self.repo.transaction() as t:
            last = await t.outbox.last_attempts(now_ms - 60_000)
            held = await t.chats.holds(now_ms)
        for chat_id, at_ms in last.items():
            self.pacer.restore(chat_id, at_ms / 1000)
        for chat_id, until_ms in held.items():
            self.pacer.hold(chat_id, until_ms / 1000)

    async def run(self) -> None:
        policy = Reconnect(STORE_RETRY)
        while True:
            self._wake.clear()
            try:
                wake_at = await self._step()
                policy.connected()
            except Exception as exc:  # the database is away: try again, nothing is lost
                log.exception("the send loop failed; retrying")
                decision = policy.ended(repr(exc))
                assert isinstance(decision, Retry)  # no max_attempts: it never gives up
                wake_at = self.clock() + decision.after
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.005, wake_at - self.clock()))

    async def _step(self) -> float:
        """Pack, start what the pacer allows; when to look again."""
        window = self.coalesce_ms
        now = self.clock()
        now_ms = int(now * 1000)
        async with self.repo.transaction() as t:
            await t.outbox.pack(now_ms, window)
            pending = await t.outbox.pending(exclude=self.in_flight)
            oldest = await t.outbox.next_line_due(now_ms)
        wake_at = now + 1.0
        for msg in pending:
            ready = self.pacer.ready_at(msg.chat_id, now)
            if ready <= now:
                self.pacer.start(msg.chat_id, now)
                task = asyncio.get_running_loop().create_task(self._send(msg, now))
                self.in_flight[msg.chat_id] = task
            else:
                wake_at = min(wake_at, ready)
        if oldest is not None:
            wake_at = min(wake_at, max(now, (oldest + window) / 1000))
        return wake_at

    async def drain(self, grace: float) -> None:
        """Let the requests in flight finish and be recorded (at most `grace` s)."""
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=grace)

    async def _send(self, msg: Outgoing, started: float) -> None:
        try:
            async with self.repo.transaction() as t:
                if msg.edit_of is not None and msg.edit_telegram_id is None:
                    await t.outbox.mark_dropped(msg.id)  # what it edits never went
                    return
                await t.outbox.mark_attempted(msg.id, int(started * 1000))
            if msg.edit_telegram_id is not None:
                result = await self.api.edit(
                    msg.chat_id, msg.edit_telegram_id, msg.text, msg.buttons
                )
            else:
                result = await self.api.send(msg.chat_id, msg.text, msg.web_app_url, msg.buttons)
            # What Telegram answered is recorded, however long the database takes to come
            # back: sending again instead would repeat an accepted message.
            await retrying(
                functools.partial(self._record, msg, result),
                Reconnect(STORE_RETRY),
                failed=functools.partial(_record_failed, msg.id),
            )
        except Exception:
            log.exception("sending message %d", msg.id)
            self.pacer.hold(msg.chat_id, self.clock() + BROKEN)
        finally:
            self.in_flight.pop(msg.chat_id, None)
            self._wake.set()

    async def _record(self, msg: Outgoing, result: SendResult) -> None:
        chat = msg.chat_id
        match result.outcome:
            case Outcome.SENT:
                async with self.repo.transaction() as t:
                    now_ms = int(self.clock() * 1000)
                    await t.outbox.mark_sent(msg.id, result.message_id, now_ms)
            case Outcome.RETRY_AFTER:
                log.info("429 for chat %d: holding %.1f s", chat, result.retry_after)
                until = self.clock() + result.retry_after
                self.pacer.hold(chat, until)
                async with self.repo.transaction() as t:
                    await t.chats.hold(chat, int(until * 1000) + 1)
                    await t.outbox.mark_attempt(msg.id, give_up=False)
            case Outcome.FORBIDDEN:
                log.info("chat %d blocked the bot: its watches are off", chat)
                async with self.repo.transaction() as t:
                    await t.chats.deactivate(chat)
            case Outcome.MIGRATED:
                assert result.new_chat_id is not None
                log.info("chat %d moved to %d", chat, result.new_chat_id)
                async with self.repo.transaction() as t:
                    await t.chats.migrate(chat, result.new_chat_id)
                self.state.move_chat(chat, result.new_chat_id)
            case Outcome.REJECTED:
                log.error("Telegram rejected message %d: %s", msg.id, result.detail)
                async with self.repo.transaction() as t:
                    await t.outbox.mark_attempt(msg.id, give_up=True)
            case Outcome.UNKNOWN | Outcome.FAILED:
                log.warning("sending message %d failed: %s", msg.id, result.detail)
                self.pacer.hold(chat, self.clock() + SEND_RETRY.delay(msg.attempts + 1))
                async with self.repo.transaction() as t:
                    await t.outbox.mark_attempt(msg.id, give_up=msg.attempts + 1 >= MAX_ATTEMPTS)


def _record_failed(message_id: int, _: Exception) -> None:
    log.exception("recording what became of message %d failed; retrying", message_id)

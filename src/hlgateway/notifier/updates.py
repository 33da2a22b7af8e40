"""Telegram updates in: long polling (or the webhook), each update handled once.

An update's command runs through the router inside one transaction that also
stores the next update offset, so a restart neither loses nor repeats a
command: an update below the stored offset (a webhook retry, a poll overlap) is
skipped. What the handler deferred with `ctx.later` runs after the commit.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable

from hlgateway.backoff import Backoff
from hlgateway.config import NotifierSettings
from hlgateway.notifier import commands as c
from hlgateway.notifier.database import DATABASE_ERRORS
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.router import Context
from hlgateway.notifier.state import BotState
from hlgateway.notifier.telegram import Incoming, TelegramApi
from hlgateway.notifier.trade_handlers import router  # the commands, trading's too
from hlgateway.notifier.trading import Trading
from hlgateway.reconnect import GiveUp, Reconnect, Retry, Supervisor, retrying

log = logging.getLogger("hlgateway.notifier")

UPDATE_OFFSET = "telegram_update_offset"
# Retries, doubling, each delay drawn from its upper half (jitter): getUpdates failing
# (1, 2, 4 .. 30 s); the database failing an update (1, 2, 4 .. 10 s, for ever).
POLL_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=30.0)
STORE_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=10.0)


class Updates:
    def __init__(
        self,
        repo: Repository,
        api: TelegramApi,
        feed: GatewayFeed,
        state: BotState,
        settings: NotifierSettings,
        now_ms: Callable[[], int],
        wake: Callable[[], None],
        trading: Trading | None = None,
    ) -> None:
        self.trading = trading
        self.repo = repo
        self.api = api
        self.feed = feed
        self.state = state
        self.settings = settings
        self.now_ms = now_ms
        self.wake = wake  # the sender: replies were made

    async def poll(self) -> None:
        """Long polling, for ever; a failing getUpdates is retried with backoff."""
        async with self.repo.transaction() as t:
            raw = await t.kv.get(UPDATE_OFFSET)
        offset = int(raw) if raw is not None else None
        policy = Reconnect(POLL_RETRY)
        stored = Reconnect(STORE_RETRY)

        async def long_poll() -> Retry | GiveUp:
            """Up while getUpdates answers: a link, as far as retrying goes."""
            nonlocal offset
            while True:
                try:
                    updates = await self.api.updates(offset)
                except Exception as exc:
                    log.warning("getUpdates failed (%s); retrying", exc)
                    return policy.ended(repr(exc))
                policy.connected()
                for update in updates:
                    # The database may be away (`handle` raises nothing else): the same
                    # update again, in order, until it commits (the policy never gives up).
                    await retrying(
                        functools.partial(self.handle, update),
                        stored,
                        failed=functools.partial(_update_failed, update.update_id),
                    )
                    offset = update.update_id + 1

        await Supervisor(long_poll).run()

    async def handle(self, update: Incoming) -> None:
        """Handle `update` once. A database error is raised (try again later: the webhook
        answers 500 and Telegram retries); any other failure is a bug that would fail
        again: logged, and the update is skipped, so that the ones after it still go."""
        try:
            await self._handle(update)
        except DATABASE_ERRORS:
            raise
        except Exception:
            log.exception("update %d failed; skipped", update.update_id)
            async with self.repo.transaction() as t:
                await t.kv.set(UPDATE_OFFSET, str(update.update_id + 1))

    async def _handle(self, update: Incoming) -> None:
        # A key in the message: deleted before anything else, checked and sealed if the
        # chat is connecting (I/O, so ahead of the transaction); the handler stores it.
        prepared = await self.trading.prepare(update) if self.trading is not None else None
        async with self.repo.transaction() as t:
            done = await t.kv.get(UPDATE_OFFSET)
            if done is not None and update.update_id < int(done):
                return  # handled already (a webhook retry, a poll overlap)
            ctx: Context | None = None
            if update.chat_id is not None and (update.text or update.data) is not None:
                ctx = Context(
                    t,
                    update.chat_id,
                    update.chat_type,
                    self.now_ms(),
                    self.state,
                    self.feed,
                    self.settings,
                    self.trading,
                    prepared,
                    update.callback_id,
                )
                if update.data is not None:
                    await self._pressed(ctx, update.data)
                else:
                    await self._command(ctx, update.text or "")
            await t.kv.set(UPDATE_OFFSET, str(update.update_id + 1))
        for action in ctx.after if ctx is not None else ():
            result = action()  # only once the command's effects are committed
            if inspect.isawaitable(result):
                await result
        self.wake()

    async def _command(self, ctx: Context, text: str) -> None:
        command = c.parse(text, self.state.bot_username)
        if isinstance(command, c.NotACommand):
            if ctx.chat_type == "private":
                await ctx.reply("Send /help to see what I can do.")
            return
        await ctx.t.chats.touch(ctx.chat)
        if isinstance(command, c.TRADING):
            if ctx.chat_type != "private":
                await ctx.reply(
                    "Trading works in a private chat with me only: keys and orders do not "
                    "belong where others read."
                )
                return
            off = self.trading is None or self.trading.vault is None
            if off and not isinstance(command, c.Connect):  # /connect says why itself
                await ctx.reply("Trading is off on this bot (no HLGATEWAY_NOTIFIER_KEY).")
                return
        await router.dispatch(ctx, command)

    async def _pressed(self, ctx: Context, data: str) -> None:
        pressed = c.parse_button(data)
        if isinstance(pressed, c.BadCommand) or ctx.chat_type != "private" or not ctx.trading:
            ctx.answer("Not a button of mine.")
            return
        await router.dispatch(ctx, pressed)


def _update_failed(update_id: int, _: Exception) -> None:
    log.exception("handling update %d failed; retrying", update_id)  # called inside the except

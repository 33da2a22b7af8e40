"""The Bot API edge, through python-telegram-bot's `Bot` (no `Application`).

The notifier runs its own long-polling loop (so the update offset is stored in
the same transaction as a command's effects) and its own pacing (PTB's
AIORateLimiter does not keep the per-private-chat limit). This module only
turns requests into PTB calls and PTB's errors into `SendResult`s.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update, WebAppInfo
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

log = logging.getLogger("hlgateway.notifier.telegram")

# PTB 22 warns, from inside RetryAfter, that `retry_after` becomes a timedelta in
# its next major version; opt in now (`send` reads either).
os.environ.setdefault("PTB_TIMEDELTA", "true")

DEFAULT_API = "https://api.telegram.org"
UPDATES = ["message", "callback_query"]


class Outcome(StrEnum):
    SENT = "sent"
    RETRY_AFTER = "retry_after"  # 429: `retry_after` seconds
    FORBIDDEN = "forbidden"  # 403: the user blocked the bot, or it left the group
    MIGRATED = "migrated"  # the group is now the supergroup `new_chat_id`
    UNKNOWN = "unknown"  # timed out after sending: Telegram may have it
    FAILED = "failed"  # transient (network, 5xx): try again
    REJECTED = "rejected"  # 400: this message will never go


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message_id: int | None = None
    retry_after: float = 0.0
    new_chat_id: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Incoming:
    update_id: int
    chat_id: int | None
    chat_type: str | None
    text: str | None  # may hold a private key: never log or echo it (vault.find_key)
    message_id: int | None = None  # of the message (to delete it), or the one pressed
    callback_id: str | None = None  # a button was pressed: answer this query
    data: str | None = None  # the pressed button's callback data

    def __repr__(self) -> str:  # the text stays out of any repr
        return f"Incoming(update_id={self.update_id}, chat_id={self.chat_id})"


class BotApiUnusable(Exception):
    """The Bot API refused the token (`token_refused`) or could not be reached at start.
    The text names the server, never the token."""

    def __init__(self, message: str, *, token_refused: bool) -> None:
        super().__init__(message)
        self.token_refused = token_refused


class TelegramApi:
    def __init__(self, token: str, api: str | None = None, poll_timeout: int = 25) -> None:
        base = (api or DEFAULT_API).rstrip("/")
        self.base = base
        self._token = token
        self.poll_timeout = poll_timeout
        self.bot = Bot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=HTTPXRequest(connection_pool_size=64, read_timeout=15.0),
            get_updates_request=HTTPXRequest(read_timeout=poll_timeout + 10.0),
        )
        self.username: str | None = None

    async def start(self) -> str:
        """getMe: checks the token; returns the bot's username. BotApiUnusable when the
        server refuses the token or cannot be reached (PTB's own texts quote the token)."""
        try:
            await self.bot.initialize()
        except InvalidToken:
            raise BotApiUnusable(
                f"the Bot API at {self.base} refused TELEGRAM_BOT_TOKEN (Unauthorized): "
                "check the token @BotFather gave",
                token_refused=True,
            ) from None
        except NetworkError as exc:
            why = str(exc).replace(self._token, "[token]")
            raise BotApiUnusable(
                f"cannot reach the Bot API at {self.base}: {why}", token_refused=False
            ) from None
        self.username = self.bot.username
        return self.username

    async def close(self) -> None:
        await self.bot.shutdown()

    async def use_polling(self) -> None:
        """getUpdates does not work while a webhook is set."""
        await self.bot.delete_webhook()

    async def use_webhook(self, url: str, secret: str) -> None:
        await self.bot.set_webhook(url, secret_token=secret, allowed_updates=UPDATES)

    def parse_update(self, data: dict[str, object]) -> Incoming:
        """One update as a webhook delivers it."""
        return _incoming(Update.de_json(data, self.bot))

    async def updates(self, offset: int | None) -> list[Incoming]:
        """One long poll (getUpdates); messages and button presses."""
        found = await self.bot.get_updates(
            offset=offset,
            timeout=self.poll_timeout,
            allowed_updates=UPDATES,
            read_timeout=self.poll_timeout + 10.0,
        )
        return [_incoming(update) for update in found]

    async def send(
        self,
        chat_id: int,
        text: str,
        web_app_url: str | None = None,
        buttons: list[list[tuple[str, str]]] | None = None,
    ) -> SendResult:
        markup = _markup(web_app_url, buttons)
        return await self._call(
            self.bot.send_message(
                chat_id,
                text,
                parse_mode="HTML",
                disable_web_page_preview=True,
                reply_markup=markup,
            )
        )

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        buttons: list[list[tuple[str, str]]] | None = None,
    ) -> SendResult:
        """A new text (and buttons: none removes them) for a message sent earlier."""
        return await self._call(
            self.bot.edit_message_text(
                text,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode="HTML",
                disable_web_page_preview=True,
                reply_markup=_markup(None, buttons),
            )
        )

    async def delete(self, chat_id: int, message_id: int) -> bool:
        """Delete a message now (a user's key); False if Telegram would not (too old, or
        no right to in a group)."""
        try:
            return bool(await self.bot.delete_message(chat_id, message_id))
        except TelegramError as exc:
            log.warning("could not delete message %d in chat %d: %s", message_id, chat_id, exc)
            return False

    async def answer(self, callback_id: str, text: str | None = None) -> None:
        """Stop the pressed button's spinner (with a short notice)."""
        try:
            await self.bot.answer_callback_query(callback_id, text=text)
        except TelegramError as exc:  # too late (Telegram waits a few seconds): harmless
            log.info("could not answer a button press: %s", exc)

    async def _call(self, request: Awaitable[Any]) -> SendResult:
        try:
            message = await request
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
            return SendResult(Outcome.RETRY_AFTER, retry_after=seconds, detail=str(exc))
        except Forbidden as exc:
            return SendResult(Outcome.FORBIDDEN, detail=str(exc))
        except ChatMigrated as exc:
            return SendResult(Outcome.MIGRATED, new_chat_id=exc.new_chat_id, detail=str(exc))
        except TimedOut as exc:
            return SendResult(Outcome.UNKNOWN, detail=str(exc))
        except BadRequest as exc:
            if "message is not modified" in str(exc).lower():
                return SendResult(Outcome.SENT)  # an edit to the text it has already
            return SendResult(Outcome.REJECTED, detail=str(exc))
        except InvalidToken:
            raise
        except (NetworkError, TelegramError) as exc:
            return SendResult(Outcome.FAILED, detail=str(exc))
        message_id = message.message_id if isinstance(message, Message) else None
        return SendResult(Outcome.SENT, message_id=message_id)


def _markup(
    web_app_url: str | None, buttons: list[list[tuple[str, str]]] | None
) -> InlineKeyboardMarkup | None:
    rows: list[list[InlineKeyboardButton]] = []
    if web_app_url is not None:
        rows.append([InlineKeyboardButton("Open the dashboard", web_app=WebAppInfo(web_app_url))])
    for row in buttons or ():
        rows.append([InlineKeyboardButton(label, callback_data=data) for label, data in row])
    return InlineKeyboardMarkup(rows) if rows else None


def _incoming(update: Update) -> Incoming:
    query = update.callback_query
    if query is not None:
        pressed = query.message
        chat = pressed.chat if pressed is not None else None
        return Incoming(
            update.update_id,
            chat.id if chat is not None else None,
            chat.type if chat is not None else None,
            None,
            message_id=pressed.message_id if pressed is not None else None,
            callback_id=query.id,
            data=query.data,
        )
    message = update.message
    if message is None:
        return Incoming(update.update_id, None, None, None)
    return Incoming(
        update.update_id,
        message.chat.id,
        message.chat.type,
        message.text,
        message_id=message.message_id,
    )

"""Commands to handlers, the way bot frameworks do it (PTB's `CommandHandler`,
aiogram's `Router`): each command a short function, registered for its type.

A handler gets the `Context` of one Telegram update: the tables of the
transaction that also stores the update offset (so its effects commit with it),
the chat, and `later()` for what must wait until the commit (subscribing a
wallet, changing what is held in memory).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from hlgateway.config import NotifierSettings
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.format import esc
from hlgateway.notifier.repository import Tables
from hlgateway.notifier.state import BotState

if TYPE_CHECKING:
    from hlgateway.notifier.repository import Buttons
    from hlgateway.notifier.trading import KeyCheck, Trading

Handler = Callable[["Context", Any], Awaitable[None]]
H = TypeVar("H", bound=Handler)


@dataclass
class Context:
    t: Tables
    chat: int
    chat_type: str | None
    now_ms: int
    state: BotState
    feed: GatewayFeed
    settings: NotifierSettings
    trading: Trading | None = None  # None: no trading on this bot
    prepared: KeyCheck | None = None  # what became of a key in this message (trading.py)
    callback_id: str | None = None  # a button was pressed: answer it
    after: list[Callable[[], object]] = field(default_factory=list)

    async def reply(self, text: str) -> None:
        """Plain text (escaped here)."""
        await self.t.outbox.add_message(self.chat, esc(text), self.now_ms)

    async def send(
        self, html: str, web_app_url: str | None = None, buttons: Buttons | None = None
    ) -> int:
        """HTML the caller escaped; optionally with a button that opens a Mini App, or
        buttons that answer with callback data. Returns the message's row id."""
        return await self.t.outbox.add_message(
            self.chat, html, self.now_ms, web_app_url=web_app_url, buttons=buttons
        )

    def answer(self, text: str | None = None) -> None:
        """Answer the pressed button (its spinner stops; `text` shows briefly)."""
        trading, callback_id = self.trading, self.callback_id
        if trading is not None and callback_id is not None:
            self.later(lambda: trading.api.answer(callback_id, text))

    def later(self, action: Callable[[], object]) -> None:
        """Run `action` once the transaction committed (a coroutine is awaited)."""
        self.after.append(action)


class Router:
    def __init__(self) -> None:
        self._handlers: dict[type, Handler] = {}

    def command(self, *kinds: type) -> Callable[[H], H]:
        """`@router.command(Watch)` registers the function below for `Watch`."""

        def register(handler: H) -> H:
            for kind in kinds:
                if kind in self._handlers:
                    raise ValueError(f"{kind.__name__} has a handler already")
                self._handlers[kind] = handler
            return handler

        return register

    def handles(self) -> set[type]:
        return set(self._handlers)

    async def dispatch(self, ctx: Context, command: object) -> None:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise LookupError(f"no handler for {type(command).__name__}")
        await handler(ctx, command)

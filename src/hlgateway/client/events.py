"""Callbacks by event name, the seed's `on` / `off` / `emit`.

A handler may be a plain function or a coroutine function; coroutines run as
tasks. A handler that raises is logged and does not disturb the client or the
other handlers (as in the seed).

Events (the same names as the JavaScript client):

| event | argument |
|---|---|
| `connected` | `Welcome` (the link is up and subscriptions are being restored) |
| `disconnected` | `Disconnected` |
| `reconnecting` | `Reconnecting` |
| `welcome` | `Welcome` |
| `subscribed`, `unsubscribed` | `Subscribed`, `Unsubscribed` |
| `data`, `data:<channel>` | `DataMessage` |
| `error` | `ErrorMessage` from the gateway, or a `GatewayError` of the client |
| `pong` | `Pong` |
| `authenticated` | `Authenticated` (a token refresh went through) |
| `shutdown` | `Shutdown` (the gateway is going away; the client will reconnect) |
| `maxReconnectAttemptsReached` | `ReconnectAttemptsExhausted` |
| `closed` | `ClientClosed` (the client stopped for good) |
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


class EventEmitter:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, event: str, handler: Handler) -> Handler:
        """Call `handler(arg)` on `event`. Returns the handler (usable as a decorator)."""
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: Handler) -> None:
        handlers = self._handlers.get(event)
        if handlers and handler in handlers:
            handlers.remove(handler)

    def emit(self, event: str, arg: Any = None) -> None:
        for handler in tuple(self._handlers.get(event, ())):
            try:
                result = handler(arg)
            except Exception:
                log.exception("error in %r handler", event)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("error in async event handler", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the async handlers still running."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

"""A subscription handle: awaitable, async-iterable, an async context manager.

```python
sub = await client.prices(["BTC"])          # waits for `subscribed`; raises SubscriptionRefused
async for update in sub: ...                # DataMessage, across reconnects
async with client.orderbook("BTC") as book: # unsubscribes on exit
    ...
```

Every handle buffers the data messages of its subscription for its iterator,
at most `buffer` of them; when the consumer falls behind, the oldest are
dropped and counted in `dropped`. On a lossless stream (`user_orders`,
`user_fills`, `trades`, rooms) a drop would silently lose messages, so there
the buffer is emptied and a `Resync("buffer overflow")` takes its place, as
when the gateway cannot replay a break (`recovered: false`): the iterator of a
lossless stream yields `DataMessage | Resync`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

from hlgateway.client.errors import ClientClosed
from hlgateway.client.messages import DataMessage, Json
from hlgateway.client.positions import Resync
from hlgateway.protocol.positions import Position

Item = DataMessage | Resync
T_co = TypeVar("T_co", covariant=True)  # DataMessage (snapshot streams) or Item (lossless ones)


class _Owner(Protocol):
    async def _release(self, sub: Subscription[Any]) -> None: ...


class Subscription(Generic[T_co]):
    """`Subscription[DataMessage]` for snapshot streams, `Subscription[DataMessage | Resync]`
    for lossless ones (and for `client.subscribe()`, which may be either)."""

    def __init__(self, owner: _Owner, channel: str, params: Json, buffer: int) -> None:
        self._owner = owner
        self.channel = channel
        self.params = params  # as requested
        self.canonical_params: Json | None = None  # as the gateway echoed them
        self.dropped = 0
        self.position: Position | None = None  # of the last message the iterator gave
        self._buffer: deque[Item] = deque(maxlen=max(1, buffer))
        loop = asyncio.get_running_loop()
        self._confirmed: asyncio.Future[Subscription[T_co]] = loop.create_future()
        self._confirmed.add_done_callback(_retrieve)
        self._wakeup: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._ended = False

    def __repr__(self) -> str:
        state = "active" if self.active else "pending" if not self._confirmed.done() else "ended"
        return f"<Subscription {self.channel} {self.canonical_params or self.params} {state}>"

    @property
    def active(self) -> bool:
        return self.canonical_params is not None and not self._ended

    # -- for the owner --------------------------------------------------------
    def _confirm(self, canonical: Json) -> None:
        self.canonical_params = canonical
        if not self._confirmed.done():
            self._confirmed.set_result(self)

    def _deliver(self, msg: DataMessage) -> None:
        if self._ended:
            return
        if len(self._buffer) == self._buffer.maxlen:
            if msg.offset is not None and msg.epoch is not None:
                # Lossless: never drop silently; the application must resync.
                previous = self._last_position()
                self.dropped += len(self._buffer)
                self._buffer.clear()
                self._buffer.append(
                    Resync(
                        self.channel,
                        dict(msg.params),
                        "buffer overflow",
                        previous,
                        Position(msg.offset - 1, msg.epoch),
                    )
                )
            else:
                self.dropped += 1
        self._buffer.append(msg)
        self._wake()

    def _resync(self, event: Resync) -> None:
        """The stream broke (see `Resync`): tell the iterator, in order."""
        if self._ended:
            return
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._wake()

    def _last_position(self) -> Position | None:
        for item in reversed(self._buffer):
            if isinstance(item, DataMessage) and item.position is not None:
                return item.position
        return self.position

    def _fail(self, exc: BaseException) -> None:
        """End with an error: the awaiting call and the iterator raise it."""
        if self._ended:
            return
        self._ended = True
        self._error = exc
        if not self._confirmed.done():
            self._confirmed.set_exception(exc)
        self._wake()

    def _end(self, reason: str = "unsubscribed") -> None:
        """End quietly: the iterator stops after what is buffered; a caller still
        waiting for the confirmation gets `ClientClosed(reason)`."""
        if self._ended:
            return
        self._ended = True
        if not self._confirmed.done():
            self._confirmed.set_exception(ClientClosed(reason))
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # -- for the user ---------------------------------------------------------
    async def confirmed(self) -> Subscription[T_co]:
        """Wait for the gateway's `subscribed` (raises SubscriptionRefused, ClientClosed)."""
        return await asyncio.shield(self._confirmed)

    def __await__(self) -> Generator[Any, None, Subscription[T_co]]:
        return self.confirmed().__await__()

    def __aiter__(self) -> Subscription[T_co]:
        return self

    async def __anext__(self) -> T_co:
        while True:
            if self._buffer:
                item = self._buffer.popleft()
                if isinstance(item, DataMessage):
                    if item.position is not None:
                        self.position = item.position
                else:
                    self.position = item.position
                return cast(T_co, item)  # T_co is DataMessage only where no Resync comes
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    async def next(self, timeout: float | None = None) -> T_co:
        """The next data message, waiting at most `timeout` seconds."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def unsubscribe(self) -> None:
        """Stop this handle; the gateway is told when no other handle shares the subscription."""
        if self._ended:
            return
        self._end()
        await self._owner._release(self)

    async def __aenter__(self) -> Subscription[T_co]:
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.unsubscribe()


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Nobody has to await a subscription: do not warn about an unretrieved error.
    if not future.cancelled():
        future.exception()

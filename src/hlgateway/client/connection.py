"""`GatewayClient`: one logical connection to a gateway that survives the socket.

The socket edge (aiohttp's client) around the sans-I/O parts: `Registry` (what
to restore), `Requests` (replies by `id`), `SendQueue` (what waits for the
link), `Backoff` (when to retry) and `Tokens` (what to connect with).

Life of a link: connect with `Authorization: Bearer <token>`; the gateway's
`welcome` comes first; then every subscription and room is restored (a
lossless stream with `since`, its last position), then the queued messages go
out, in order. When the link ends, `ReconnectPolicy` decides (sans I/O) whether
and when to come back: backoff with jitter, a fresh token after a refusal, stop
for a fixed token refused or a handshake refused again and again. A token with
`exp` is refreshed with `auth` before it expires when there is a provider.

Per lossless stream a `Cursor` drops duplicates, heals a gap by subscribing
again with `since`, and turns `recovered: false` or a new epoch into a
`Resync` (an event, and an item of the subscription's iterator). A passing
refusal of a subscribe (`UPSTREAM_UNAVAILABLE`, `RATE_LIMITED`, `INTERNAL`) is
retried with backoff; a final one fails the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol

import aiohttp
import msgspec

from hlgateway import reconnect
from hlgateway.backoff import Backoff
from hlgateway.client import messages as m
from hlgateway.client.errors import (
    ClientClosed,
    ConnectionLost,
    GatewayError,
    ReconnectAttemptsExhausted,
    RequestFailed,
    SubscriptionRefused,
)
from hlgateway.client.events import EventEmitter, Handler
from hlgateway.client.positions import Joined, Recovered, Resync, Since, Verdict, as_position
from hlgateway.client.reconnect import Decision, ReconnectPolicy, Retry, Stop, token_refused
from hlgateway.client.refusals import is_transient
from hlgateway.client.registry import ROOM, SNAPSHOT_CHANNELS, Entry, Registry, latest_candles
from hlgateway.client.requests import Requests
from hlgateway.client.sendqueue import SendQueue
from hlgateway.client.subscription import Item, Subscription
from hlgateway.client.tokens import Tokens, TokenSource, refresh_delay, token_expiry
from hlgateway.protocol.positions import Position
from hlgateway.reconnect import Supervisor

log = logging.getLogger("hlgateway.client")

# A post's answer waits for Hyperliquid (the gateway gives up after its own 10 s).
POST_TIMEOUT = 15.0


class LinkState(StrEnum):
    CONNECTING = "connecting"  # opening a socket, or waiting for `welcome`
    CONNECTED = "connected"  # welcomed; requests go straight out
    WAITING = "waiting"  # between attempts (backoff)
    CLOSED = "closed"  # for good


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The `disconnected` event: the link dropped (or never came up)."""

    url: str
    code: int | None
    reason: str
    welcomed: bool  # False: the attempt failed before `welcome`


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The `reconnecting` event: the next attempt starts in `delay` seconds."""

    attempt: int  # consecutive failed attempts so far (1 = the first retry)
    delay: float
    reason: str


class UrlSource(Protocol):
    """Where to connect next (a `ConnectionManager` fails over this way)."""

    def next_url(self) -> str: ...

    def report_failure(self, url: str) -> None: ...


class _FixedUrl:
    def __init__(self, url: str) -> None:
        self.url = url

    def next_url(self) -> str:
        return self.url

    def report_failure(self, url: str) -> None:
        pass


@dataclass(eq=False)
class _Pending:
    kind: str  # subscribe | unsubscribe | ping | auth | request | send
    future: asyncio.Future[m.ServerMessage] | None = None
    entry: Entry[Subscription[Any]] | None = None
    sent_at: float = 0.0


@dataclass(eq=False)
class _Out:
    msg: m.Json
    pending: _Pending | None


@dataclass(eq=False)
class _Link:
    ws: aiohttp.ClientWebSocketResponse
    url: str
    out: asyncio.Queue[_Out] = field(default_factory=asyncio.Queue)
    welcomed: bool = False
    close_code: int | None = None
    close_reason: str = ""


class GatewayClient:
    """An asyncio client of hlgateway that keeps its subscriptions across reconnects.

    ```python
    async with GatewayClient("ws://127.0.0.1:8080/ws", token) as client:
        async for update in client.prices(["BTC", "ETH"]):
            print(update.data)
    ```

    `token` is a JWT string or a provider (a function, sync or async, returning one).
    """

    def __init__(
        self,
        url: str | UrlSource,
        token: TokenSource,
        *,
        backoff: Backoff | None = None,
        max_queue: int = 1000,
        buffer: int = 1024,
        refresh_before: float = 30.0,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        heartbeat: float | None = 30.0,
        session: aiohttp.ClientSession | None = None,
        max_handshake_refusals: int = 3,
    ) -> None:
        self._urls: UrlSource = _FixedUrl(url) if isinstance(url, str) else url
        self._tokens = Tokens(token)
        self.backoff = backoff or Backoff()
        self._policy = ReconnectPolicy(
            self.backoff,
            has_provider=self._tokens.has_provider,
            max_handshake_refusals=max_handshake_refusals,
        )
        self._buffer = buffer
        self._refresh_before = refresh_before
        self._open_timeout = open_timeout
        self._request_timeout = request_timeout
        self._heartbeat = heartbeat
        self._session = session
        self._own_session = session is None
        self._events = EventEmitter()
        self._registry: Registry[Subscription[Any]] = Registry()
        self._requests: Requests[_Pending] = Requests()
        self._queue: SendQueue[_Out] = SendQueue(max_queue)
        self._link: _Link | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retries: set[asyncio.TimerHandle] = set()
        self._supervisor: Supervisor[Stop] = Supervisor(
            self._next_link, stopping=lambda: self._closing, on_retry=self._waiting
        )
        self._changed = asyncio.Event()
        self._closing = False
        self._fresh_token = False  # the policy asked for a new token on the next attempt
        self._last_reason = ""
        self._close_started = False
        self._expires_at: float | None = None
        self.state = LinkState.CONNECTING
        self.url: str | None = None
        self.welcome: m.Welcome | None = None
        self.connects = 0  # links that got a `welcome`
        self.reconnects = 0  # of which after the first
        self.closed_error: ClientClosed | None = None

    @property
    def attempt(self) -> int:
        """Consecutive failed attempts."""
        return self._policy.attempt

    # -- life cycle -------------------------------------------------------------
    async def __aenter__(self) -> GatewayClient:
        try:
            await self.connect()
        except BaseException:
            await self.close()  # `__aexit__` will not run: close the session made for us
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._run_task is None:
            if self.closed_error is not None:
                raise self.closed_error
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._run_task = asyncio.get_running_loop().create_task(self._run())

    async def connect(self, timeout: float | None = None) -> m.Welcome:
        """Start, and wait for the first `welcome` (retrying as the backoff allows)."""
        self.start()
        return await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float | None = None) -> m.Welcome:
        """Wait until the link is up; raises ClientClosed if the client stops instead."""

        async def wait() -> m.Welcome:
            while True:
                if self.closed_error is not None:
                    raise self.closed_error
                if self.state is LinkState.CONNECTED and self.welcome is not None:
                    return self.welcome
                await self._changed.wait()

        async with asyncio.timeout(timeout):
            return await wait()

    async def close(self) -> None:
        """Close the link (1000) and stop for good; iterators end, waiters get ClientClosed."""
        if self._close_started:
            return
        self._close_started = True
        self._closing = True
        self._supervisor.wake()
        link = self._link
        if link is not None:
            link.close_code, link.close_reason = 1000, "Client closing"
            with contextlib.suppress(Exception):
                await link.ws.close(code=1000, message=b"Client closing")
        if self._run_task is not None:
            try:
                async with asyncio.timeout(self._open_timeout):
                    await asyncio.shield(self._run_task)
            except TimeoutError:
                self._run_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._run_task
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        self._stop(ClientClosed("closed by the client"), quiet=True)
        await self._events.drain()
        if self._own_session and self._session is not None:
            await self._session.close()

    def failover(self, reason: str = "failover") -> None:
        """Drop the current link and connect again at once (to the URL source's next URL)."""
        if self._closing:
            return
        self._supervisor.wake()  # while waiting: no more waiting
        link = self._link
        if link is not None:
            self._policy.failover()
            task = asyncio.get_running_loop().create_task(
                link.ws.close(code=1000, message=reason.encode()[:120])
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- events -----------------------------------------------------------------
    def on(self, event: str, handler: Handler) -> Handler:
        """`client.on("data:prices", fn)`; see `hlgateway.client.events` for the events."""
        return self._events.on(event, handler)

    def off(self, event: str, handler: Handler) -> None:
        self._events.off(event, handler)

    # -- subscriptions ----------------------------------------------------------
    def subscribe(
        self,
        channel: str,
        params: m.Json | None = None,
        *,
        since: Since | None = None,
        **kw: Any,
    ) -> Subscription[Item]:
        """Subscribe (now, or when the link is up); restored after every reconnect.

        Returns a handle: `await` it for the confirmation, iterate it for data (and,
        on a lossless stream, `Resync` when the application must reload its state).
        `since`: a position stored from an earlier run (`msg.position`): the gateway
        replays every message after it, or answers with a `Resync`.
        """
        return self._add(channel, params, since, kw)

    def _add(
        self,
        channel: str,
        params: m.Json | None,
        since: Since | None,
        kw: dict[str, Any],
    ) -> Subscription[Any]:
        if self.closed_error is not None or self._closing:
            raise self.closed_error or ClientClosed("closed by the client")
        start = None if since is None else as_position(since)
        merged = {**(params or {}), **{k: v for k, v in kw.items() if v is not None}}
        sub: Subscription[Any] = Subscription(self, channel, merged, self._buffer)
        added = self._registry.add(channel, merged, sub, start)
        entry = added.entry
        if added.send:
            if self._link is not None and self._link.welcomed:
                self._send_subscribe(self._link, entry)
        elif entry.confirmed:
            sub._confirm(entry.params)
            if entry.latest is not None:
                sub._deliver(entry.latest)
        return sub

    # Snapshot streams: data only. Lossless streams: data, or a Resync.
    def prices(
        self, symbols: list[str] | None = None, throttle: int | None = None
    ) -> Subscription[m.DataMessage]:
        return self._add("prices", None, None, {"symbols": symbols or None, "throttle": throttle})

    def orderbook(
        self, symbol: str, depth: int | None = None, throttle: int | None = None
    ) -> Subscription[m.DataMessage]:
        kw = {"symbol": symbol, "depth": depth, "throttle": throttle}
        return self._add("orderbook", None, None, kw)

    def account_updates(
        self, user_id: str, wallet: str | None = None
    ) -> Subscription[m.DataMessage]:
        return self._add("account_updates", None, None, {"userId": user_id, "wallet": wallet})

    def candles(self, symbol: str, interval: str) -> Subscription[m.DataMessage]:
        """The last 500 candles first (`CandlesData`), then each update of the current one."""
        return self._add("candles", None, None, {"symbol": symbol, "interval": interval})

    def bbo(self, symbol: str) -> Subscription[m.DataMessage]:
        return self._add("bbo", None, None, {"symbol": symbol})

    def asset_context(self, symbol: str) -> Subscription[m.DataMessage]:
        return self._add("asset_context", None, None, {"symbol": symbol})

    def system(self) -> Subscription[m.DataMessage]:
        return self._add("system", None, None, {})

    def trades(self, symbol: str, *, since: Since | None = None) -> Subscription[Item]:
        return self._add("trades", None, since, {"symbol": symbol})

    def user_orders(
        self,
        user_id: str,
        wallet: str | None = None,
        *,
        since: Since | None = None,
    ) -> Subscription[Item]:
        return self._add("user_orders", None, since, {"userId": user_id, "wallet": wallet})

    def user_fills(
        self,
        user_id: str,
        wallet: str | None = None,
        *,
        since: Since | None = None,
    ) -> Subscription[Item]:
        return self._add("user_fills", None, since, {"userId": user_id, "wallet": wallet})

    def user_ledger(
        self,
        user_id: str,
        wallet: str | None = None,
        *,
        since: Since | None = None,
    ) -> Subscription[Item]:
        """Deposits, withdrawals, transfers, liquidations, funding: each event once."""
        return self._add("user_ledger", None, since, {"userId": user_id, "wallet": wallet})

    def room(self, name: str, *, since: Since | None = None) -> Subscription[Item]:
        """Join a room (`join_room`); its messages arrive as data on channel `room`."""
        return self._add(ROOM, None, since, {"room": name})

    async def unsubscribe(self, sub: Subscription[Any]) -> None:
        await sub.unsubscribe()

    @property
    def subscriptions(self) -> list[tuple[str, m.Json]]:
        """(channel, params) of every subscription held, canonical once confirmed."""
        return [(e.channel, dict(e.params)) for e in self._registry]

    async def _release(self, sub: Subscription[Any]) -> None:
        entry = self._registry.release(sub)
        link = self._link
        if entry is None or link is None or not link.welcomed:
            return
        pending = _Pending("unsubscribe", asyncio.get_running_loop().create_future())
        link.out.put_nowait(_Out(_unsubscribe_message(entry), pending))
        assert pending.future is not None
        with contextlib.suppress(GatewayError, TimeoutError):
            async with asyncio.timeout(self._request_timeout):
                await asyncio.shield(pending.future)

    # -- requests ---------------------------------------------------------------
    def send(self, msg: m.Json) -> None:
        """Send a message as is; queued (bounded: SendQueueFull) while the link is down."""
        self._enqueue(_Out(dict(msg), None))

    async def request(self, msg: m.Json, timeout: float | None = None) -> m.ServerMessage:
        """Send `msg` with a fresh `id` and return the reply; an error reply raises
        RequestFailed. Waits for the link if it is down (the message is queued)."""
        pending = self._request(dict(msg), "request")
        return await self._await(pending, timeout)

    async def post(self, request: m.Json, timeout: float | None = None) -> m.PostResult:
        """Relay a signed `/exchange` body through the gateway (docs/trading.md).

        Returns the gateway's `post_result`: Hyperliquid's answer as it came. A
        refusal (FORBIDDEN, INVALID_PARAMS, RATE_LIMITED) raises RequestFailed and
        nothing was sent. ConnectionLost (the link dropped after the post was
        written) means the outcome is unknown: look the order up by its cloid before
        sending it again. `request` goes out with its keys in the order given.
        """
        wait = POST_TIMEOUT if timeout is None else timeout
        reply = await self._await(self._request({"type": "post", "request": request}, "post"), wait)
        assert isinstance(reply, m.PostResult)
        return reply

    async def ping(self, timeout: float | None = None) -> float:
        """Application-level ping; returns the round trip in seconds."""
        pending = self._request({"type": "ping"}, "ping")
        await self._await(pending, timeout)
        return time.monotonic() - pending.sent_at

    async def authenticate(self, token: str | None = None) -> m.Authenticated:
        """Send `auth` with `token` (or a fresh one from the provider) now; on success it
        becomes the token used to reconnect."""
        new = token if token is not None else await self._tokens.fetch()
        reply = await self._await(self._request({"type": "auth", "token": new}, "auth"), None)
        assert isinstance(reply, m.Authenticated)
        self._tokens.current = new
        self._expires_at = reply.expiresAt / 1000 if reply.expiresAt else token_expiry(new)
        return reply

    def _request(self, msg: m.Json, kind: str) -> _Pending:
        pending = _Pending(kind, asyncio.get_running_loop().create_future())
        self._enqueue(_Out(msg, pending))
        return pending

    async def _await(self, pending: _Pending, timeout: float | None) -> m.ServerMessage:
        assert pending.future is not None
        wait = self._request_timeout if timeout is None else timeout
        # A request queued while the link is down waits for it as well.
        if self._link is None or not self._link.welcomed:
            wait += self._open_timeout
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
        # that arrives together with the reply.
        async with asyncio.timeout(wait):
            return await pending.future

    def _enqueue(self, out: _Out) -> None:
        if self.closed_error is not None or self._closing:
            raise self.closed_error or ClientClosed("closed by the client")
        link = self._link
        if link is not None and link.welcomed:
            link.out.put_nowait(out)
        else:
            self._queue.put(out)

    # -- the run loop -----------------------------------------------------------
    async def _run(self) -> None:
        try:
            stop = await self._supervisor.run()
            if stop is not None:
                if isinstance(stop.error, ReconnectAttemptsExhausted):
                    self._events.emit("maxReconnectAttemptsReached", stop.error)
                self._stop(stop.error)
        except Exception as exc:  # a bug: do not die silently
            log.exception("gateway client stopped")
            self._stop(ClientClosed(f"internal error: {exc!r}"))

    async def _next_link(self) -> Decision:
        url = self._urls.next_url()
        self.url = url
        self._set_state(LinkState.CONNECTING)
        decision = await self._attempt(url)
        if isinstance(decision, Retry):
            self._fresh_token = decision.fresh_token
        return decision

    def _waiting(self, decision: reconnect.Retry) -> None:
        assert isinstance(decision, Retry)
        if decision.failover:
            return  # straight to the next URL
        self._set_state(LinkState.WAITING)
        self._events.emit(
            "reconnecting", Reconnecting(decision.attempt, decision.after, self._last_reason)
        )

    async def _attempt(self, url: str) -> Decision:
        """One link from connect to drop, and the policy's decision about the next."""
        assert self._session is not None
        try:
            token = await self._tokens.get(fresh=self._fresh_token)
        except Exception as exc:
            # Perhaps passing (the provider's own backend is down): retry with backoff.
            log.warning("token provider failed: %r", exc)
            self._last_reason = f"token provider failed: {exc!r}"
            self._events.emit("error", GatewayError(self._last_reason))
            return self._policy.on_closed(None, self._last_reason, False)
        self._fresh_token = False
        self._expires_at = token_expiry(token)
        try:
            async with asyncio.timeout(self._open_timeout):
                ws = await self._session.ws_connect(
                    url,
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=self._heartbeat,
                    autoping=True,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._urls.report_failure(url)
            status = exc.status if isinstance(exc, aiohttp.WSServerHandshakeError) else None
            self._last_reason = "connect failed: " + _connect_failure(exc, self._open_timeout)
            self._events.emit("disconnected", Disconnected(url, None, self._last_reason, False))
            if self.connects == 0:
                # Never connected yet: most likely a wrong URL or a gateway not started, which
                # would otherwise look like a hang (Python prints a WARNING without any setup).
                log.warning("gateway %s: %s; retrying (not connected yet)", url, self._last_reason)
            else:
                log.info("gateway %s: %s", url, self._last_reason)
            return self._policy.on_closed(None, self._last_reason, False, status)
        link = _Link(ws, url)
        self._link = link
        writer = asyncio.get_running_loop().create_task(self._write(link))
        try:
            await self._read(link)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            self._link = None
            self._lost(link)
        if self._closing:
            return Retry(0.0, 0, "closing")
        if not link.welcomed and not token_refused(link.close_code, link.close_reason):
            self._urls.report_failure(link.url)
        return self._policy.on_closed(link.close_code, link.close_reason, link.welcomed)

    async def _read(self, link: _Link) -> None:
        ws = link.ws
        while True:
            timeout = None if link.welcomed else self._open_timeout
            try:
                frame = await ws.receive(timeout=timeout)
            except TimeoutError:
                link.close_reason = "no welcome"
                return
            if frame.type is aiohttp.WSMsgType.TEXT:
                try:
                    msg = m.decode(frame.data)
                except m.MalformedMessage:
                    log.warning("gateway %s sent a malformed frame", link.url)
                    continue
                self._dispatch(link, msg)
            elif frame.type is aiohttp.WSMsgType.CLOSE:
                link.close_code = int(frame.data) if frame.data is not None else None
                link.close_reason = str(frame.extra or "")
                return
            elif frame.type in (
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                if link.close_code is None:
                    link.close_code = ws.close_code
                if not link.close_reason and frame.type is aiohttp.WSMsgType.ERROR:
                    link.close_reason = f"error: {frame.data!r}"
                return

    async def _write(self, link: _Link) -> None:
        while True:
            out = await link.out.get()
            msg = out.msg
            if out.pending is not None:
                rid = self._requests.new_id()
                msg = {**msg, "id": rid}
                self._requests.add(rid, out.pending)
                out.pending.sent_at = time.monotonic()
            try:
                await link.ws.send_str(m.encode(msg))
            except (ConnectionError, RuntimeError) as exc:
                # The reader sees the drop too; its handling settles the pending request.
                log.debug("send failed: %r", exc)
                return

    # -- link up / down ---------------------------------------------------------
    def _welcomed(self, link: _Link, welcome: m.Welcome) -> None:
        link.welcomed = True
        self.welcome = welcome
        self._policy.on_welcome()
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        for entry in self._registry:
            self._send_subscribe(link, entry)
        for out in self._queue.drain():
            link.out.put_nowait(out)
        self._set_state(LinkState.CONNECTED)
        self._events.emit("welcome", welcome)
        self._events.emit("connected", welcome)
        if self._tokens.has_provider and self._expires_at is not None:
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh(link))

    def _lost(self, link: _Link) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None
        for handle in self._retries:  # the next `welcome` restores every subscription
            handle.cancel()
        self._retries.clear()
        self._registry.disconnected()
        # Never written: send on the next link (subscriptions come back by themselves).
        unsent: list[_Out] = []
        while not link.out.empty():
            out = link.out.get_nowait()
            if out.pending is None or out.pending.kind not in ("subscribe", "unsubscribe"):
                unsent.append(out)
        self._queue.put_front(unsent)
        # Written but unanswered: the outcome is unknown.
        for pending in self._requests.drain():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(
                    ConnectionLost(f"the link dropped before the reply to {pending.kind}")
                )
        self._last_reason = (
            f"closed {link.close_code} {link.close_reason}".strip()
            if link.close_code is not None
            else (link.close_reason or "connection lost")
        )
        was_up = link.welcomed
        if was_up:
            self._set_state(LinkState.CONNECTING)
        self._events.emit(
            "disconnected", Disconnected(link.url, link.close_code, link.close_reason, was_up)
        )
        log.info("gateway %s: %s", link.url, self._last_reason)

    def _send_subscribe(self, link: _Link, entry: Entry[Subscription[Any]]) -> None:
        entry.in_flight = True
        if entry.is_room:
            msg: m.Json = {"type": "join_room", "room": entry.params.get("room")}
        else:
            msg = {"type": "subscribe", "channel": entry.channel, "params": entry.params}
        since = entry.cursor.since()
        if since is not None:
            msg["since"] = {"offset": since.offset, "epoch": since.epoch}
        link.out.put_nowait(_Out(msg, _Pending("subscribe", entry=entry)))

    def _heal(self, entry: Entry[Subscription[Any]]) -> None:
        """Messages are missing in a live stream: subscribe again with `since`. The
        gateway keeps the subscription and replays what is missing after what it had
        queued already (those are dropped here as duplicates or skipped)."""
        link = self._link
        if link is None or not link.welcomed or entry.in_flight:
            entry.cursor.healing = entry.in_flight  # a reply on its way; else the next link
            return
        position = entry.cursor.position
        log.info("gap in %s %s after %s: healing", entry.channel, entry.params, position)
        self._send_subscribe(link, entry)

    def rewind(self, sub: Subscription[Any], position: Since) -> None:
        """Have the lossless stream of `sub` replayed after `position`: for an application
        that dropped what it could not keep up with (and stored where it stopped). The
        subscription stays, and the gateway keeps feeding it: asked again with `since`
        (now, or on the next link), it replays what followed, or cannot (a `Resync`).
        Messages after `position` that come before the replay are dropped here."""
        entry = self._registry.holding(sub)
        if entry is None:
            raise ValueError(f"{sub!r} is not subscribed")
        entry.cursor.rewind(as_position(position))
        link = self._link
        if link is not None and link.welcomed and not entry.in_flight:
            self._send_subscribe(link, entry)
        # In flight: what its reply brings after `position` is a gap, which heals the
        # same way. Link down: the reconnect subscribes with `since` this position.

    def _retry_later(self, link: _Link, entry: Entry[Subscription[Any]], delay: float) -> None:
        def retry() -> None:
            self._retries.discard(handle)
            if (
                self._link is link
                and link.welcomed
                and entry.handles
                and not entry.in_flight
                and self._registry.get(entry.channel, entry.params) is entry
            ):
                self._send_subscribe(link, entry)

        handle = asyncio.get_running_loop().call_later(delay, retry)
        self._retries.add(handle)

    def _stop(self, exc: ClientClosed, quiet: bool = False) -> None:
        if self.closed_error is not None:
            return
        self.closed_error = exc
        self._closing = True
        for entry in self._registry.clear():
            for sub in entry.handles:
                if quiet:
                    sub._end("client closed")
                else:
                    sub._fail(exc)
        for out in self._queue.drain():
            future = out.pending.future if out.pending is not None else None
            if future is not None and not future.done():
                future.set_exception(exc)
        for pending in self._requests.drain():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(exc)
        self._set_state(LinkState.CLOSED)
        if not quiet:
            self._events.emit("error", exc)
        self._events.emit("closed", exc)

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- incoming ---------------------------------------------------------------
    def _dispatch(self, link: _Link, msg: m.ServerMessage) -> None:
        rid = m.request_id_of(msg)
        pending = self._requests.pop(rid) if rid is not None else None
        match msg:
            case m.DataMessage():
                self._data(msg)
                return
            case m.Welcome():
                if not link.welcomed:
                    self._welcomed(link, msg)
                return
            case m.Subscribed() | m.RoomJoined():
                if pending is not None and pending.entry is not None:
                    self._confirmed(link, pending.entry, msg)
                self._events.emit("subscribed", msg)
            case m.Unsubscribed() | m.RoomLeft():
                self._events.emit("unsubscribed", msg)
            case m.ErrorMessage():
                self._error(msg, pending)
                return
            case m.Pong():
                self._events.emit("pong", msg)
            case m.Authenticated():
                self._events.emit("authenticated", msg)
            case m.Shutdown():
                self._events.emit("shutdown", msg)
            case m.PostResult():
                self._events.emit("post_result", msg)
            case m.UnknownMessage():
                self._events.emit("message", msg)
        if pending is not None and pending.future is not None and not pending.future.done():
            pending.future.set_result(msg)

    def _confirmed(
        self, link: _Link, entry: Entry[Subscription[Any]], msg: m.Subscribed | m.RoomJoined
    ) -> None:
        canonical = msg.params if isinstance(msg, m.Subscribed) else {"room": msg.room}
        target = self._registry.confirm(entry, canonical)
        if target is None:
            if self._registry.orphan_confirmed(entry, canonical):
                entry.params = canonical
                link.out.put_nowait(_Out(_unsubscribe_message(entry), _Pending("unsubscribe")))
            return
        target.refusals = 0
        for sub in target.handles:
            sub._confirm(canonical)
        cursor = target.cursor
        previous = cursor.position
        joined = cursor.on_joined(msg.offset, msg.epoch, msg.recovered)
        if joined is Joined.RECOVERED and previous is not None and msg.epoch is not None:
            head = Position(msg.offset or 0, msg.epoch)
            recovered = Recovered(target.channel, dict(canonical), previous, head)
            self._events.emit("recovered", recovered)
        elif joined is Joined.RESYNC:
            reason = "not recovered" if msg.recovered is False else "epoch changed"
            self._resync(target, reason, previous, cursor.position)

    def _resync(
        self,
        entry: Entry[Subscription[Any]],
        reason: str,
        previous: Position | None,
        position: Position | None,
    ) -> None:
        event = Resync(entry.channel, dict(entry.params), reason, previous, position)
        log.info("%s %s: resync (%s)", entry.channel, entry.params, reason)
        for sub in entry.handles:
            sub._resync(event)
        self._events.emit("resync", event)

    def _error(self, msg: m.ErrorMessage, pending: _Pending | None) -> None:
        if pending is not None and pending.entry is not None:
            entry = pending.entry
            link = self._link
            if is_transient(msg.code) and entry.handles and link is not None:
                entry.in_flight = False
                entry.refusals += 1
                if not self.backoff.exhausted(entry.refusals):
                    delay = self.backoff.delay(entry.refusals)
                    log.info("%s refused (%s): again in %.1f s", entry.channel, msg.code, delay)
                    self._retry_later(link, entry, delay)
                    self._events.emit("error", msg)
                    return
            exc: RequestFailed = SubscriptionRefused(msg.code, msg.message, msg.channel, msg.params)
            for sub in self._registry.refuse(entry):
                sub._fail(exc)
        elif pending is not None and pending.kind == "unsubscribe" and msg.code == "NOT_SUBSCRIBED":
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(msg)
            return  # already gone: what the caller wanted
        elif pending is not None and pending.future is not None and not pending.future.done():
            pending.future.set_exception(
                RequestFailed(msg.code, msg.message, msg.channel, msg.params)
            )
        self._events.emit("error", msg)

    def _data(self, msg: m.DataMessage) -> None:
        entry = self._registry.route(msg.channel, msg.params)
        if entry is not None:
            if entry.channel == "candles" and entry.latest is not None:
                data = latest_candles(entry.latest.data, msg.data)
                entry.latest = msgspec.structs.replace(msg, data=data)
            elif entry.channel in SNAPSHOT_CHANNELS:
                entry.latest = msg
            previous = entry.cursor.position
            verdict = entry.cursor.on_data(msg.offset, msg.epoch)
            if verdict in (Verdict.DUPLICATE, Verdict.SKIP):
                return
            if verdict is Verdict.HEAL:
                self._heal(entry)
                return
            if verdict is Verdict.NEW_EPOCH and msg.offset is not None and msg.epoch is not None:
                self._resync(entry, "epoch changed", previous, Position(msg.offset - 1, msg.epoch))
            for sub in entry.handles:
                sub._deliver(msg)
        self._events.emit(f"data:{msg.channel}", msg)
        self._events.emit("data", msg)

    # -- token refresh ----------------------------------------------------------
    async def _refresh(self, link: _Link) -> None:
        while link.welcomed and self._link is link:
            expires_at = self._expires_at
            if expires_at is None:
                return
            await asyncio.sleep(refresh_delay(expires_at, time.time(), self._refresh_before))
            try:
                reply = await self.authenticate()
                log.info("token refreshed; expires at %s", reply.expiresAt)
            except (ConnectionLost, ClientClosed):
                return
            except Exception as exc:
                log.warning("token refresh failed: %r", exc)
                if not isinstance(exc, RequestFailed):  # the gateway's refusal is emitted already
                    self._events.emit("error", exc)
                # Try again, more often as the deadline nears; at expiry the gateway
                # closes with 4001 and the reconnect asks the provider again.
                left = expires_at - time.time()
                await asyncio.sleep(max(0.5, min(5.0, left / 4)))


def _unsubscribe_message(entry: Entry[Subscription[Any]]) -> m.Json:
    if entry.is_room:
        return {"type": "leave_room", "room": entry.params.get("room")}
    return {"type": "unsubscribe", "channel": entry.channel, "params": entry.params}


def _connect_failure(exc: BaseException, open_timeout: float) -> str:
    """Why a connection attempt failed, in words a person can act on: the address and
    the system's reason (`127.0.0.1:8081: Connection refused`), the HTTP status of a
    refused upgrade, or the time waited."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"HTTP {exc.status}"  # aiohttp's message adds nothing to the status
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # asyncio's refusal text is "Connect call failed (...)"; errno says it plainly.
        errno = error.errno
        why = os.strerror(errno) if errno and errno > 0 else (error.strerror or str(error))
        return f"{exc.host}:{exc.port}: {why}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {open_timeout:g} s"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__

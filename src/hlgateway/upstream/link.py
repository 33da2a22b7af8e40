"""One WebSocket connection to Hyperliquid, kept alive.

A link holds a set of wanted subscriptions. On every (re)connect it sends them
all again; in between it sends subscribe/unsubscribe as the set changes. It
knows a link is dead three ways: the socket closes; a ping goes unanswered for
`pong_timeout` (a silent half-open link); or a stream that is normally busy
(allMids, l2Book) goes quiet for `stale_after` and stays quiet after a
resubscribe (a stuck feed). A dead link reconnects with capped exponential
backoff and full jitter, forever. Frames are parsed here and handed on as
normalized events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from hlgateway.upstream import wire

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(order="sorted").encode

# Streams that Hyperliquid pushes every block or so: silence means trouble.
BUSY_STREAMS = frozenset({"allMids", "l2Book"})

StreamId = tuple[str, str]


def subscription_key(subscription: dict[str, Any]) -> str:
    """Canonical identity of a Hyperliquid subscription (addresses lower-cased)."""
    norm = {
        k: v.lower() if k == "user" and isinstance(v, str) else v for k, v in subscription.items()
    }
    return _encode(norm).decode()


def stream_id(subscription: dict[str, Any]) -> StreamId:
    kind = str(subscription.get("type"))
    return kind, str(subscription.get("coin") or subscription.get("user") or "").lower()


def event_stream(event: wire.Event, order_wallet: str | None) -> StreamId | None:
    """Which subscription a data event belongs to (for data-age tracking)."""
    match event:
        case wire.Mids():
            return ("allMids", "")
        case wire.Book():
            return ("l2Book", event.symbol.lower())
        case wire.Trades():
            return ("trades", event.symbol.lower())
        case wire.Fills():
            return ("userFills", event.wallet)
        case wire.OrderUpdates():
            return ("orderUpdates", order_wallet or "")
        case wire.Account():
            return ("clearinghouseState", event.wallet)
    return None


def ack_matches(sent: dict[str, Any], acked: dict[str, Any]) -> bool:
    """Acks echo a normalized subscription (defaults filled): match by subset."""
    for key, value in sent.items():
        other = acked.get(key)
        if isinstance(value, str) and isinstance(other, str) and value.startswith("0x"):
            if value.lower() != other.lower():
                return False
        elif other != value:
            return False
    return True


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


EventSink = Callable[["Link", wire.Event], None]
StateSink = Callable[["Link", LinkState], None]
Gate = Callable[[], Awaitable[None]]


async def _open_gate() -> None:
    return None


class Link:
    def __init__(
        self,
        index: int,
        url: str,
        session: aiohttp.ClientSession,
        on_event: EventSink,
        on_state: StateSink,
        *,
        ping_interval: float = 30.0,
        pong_timeout: float = 10.0,
        stale_after: float = 15.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        connect_gate: Gate = _open_gate,
        send_gate: Gate = _open_gate,
        ssl: Any = True,
    ) -> None:
        self.index = index
        self.url = url
        self._session = session
        self._on_event = on_event
        self._on_state = on_state
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._stale_after = stale_after
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_gate = connect_gate
        self._send_gate = send_gate
        self._ssl = ssl
        self.wanted: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()
        self.state = LinkState.DISCONNECTED
        self.connected_since: float | None = None
        self.reconnects = 0
        self.pong_timeouts = 0
        self.stale_resubscribes = 0
        self.stale_recycles = 0
        self.garbage_frames = 0
        self.last_message_at: float | None = None  # monotonic
        self.last_message_ms: int | None = None  # wall clock, for gap recovery
        # When the link last went down: the wall-clock ms of the last frame it
        # heard before that. Streams resubscribed afterwards recover from here.
        self.gap_from_ms: int | None = None
        self.order_updates_wallet: str | None = None  # orderUpdates frames carry no user
        self._last_data: dict[StreamId, float] = {}
        self._since: dict[StreamId, float] = {}  # (re)subscribed at, monotonic
        self._resubscribed: dict[StreamId, float] = {}
        self._ping_sent: float | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._stopping = False

    # -- subscriptions ----------------------------------------------------
    def add(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        if key in self.wanted:
            return
        self.wanted[key] = subscription
        self._since[stream_id(subscription)] = time.monotonic()
        if subscription.get("type") == "orderUpdates":
            self.order_updates_wallet = str(subscription["user"]).lower()
        self._send({"method": "subscribe", "subscription": subscription})

    def remove(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        if self.wanted.pop(key, None) is None:
            return
        self.acked.discard(key)
        sid = stream_id(subscription)
        for table in (self._last_data, self._since, self._resubscribed):
            table.pop(sid, None)
        if subscription.get("type") == "orderUpdates":
            self.order_updates_wallet = None
        self._send({"method": "unsubscribe", "subscription": subscription})

    def stream_ages(self) -> dict[str, float | None]:
        """Seconds since each wanted stream last delivered data (None: never).

        Keyed for /health, which anyone may read: market streams by coin, user
        streams by type and a number (never by the wallet's address).
        """
        now = time.monotonic()
        ages: dict[str, float | None] = {}
        numbers: dict[str, int] = {}
        for subscription in self.wanted.values():
            sid = stream_id(subscription)
            if "user" in subscription:
                numbers[sid[0]] = numbers.get(sid[0], 0) + 1
                name = f"{sid[0]}#{numbers[sid[0]]}"
            else:
                name = f"{sid[0]}:{sid[1]}" if sid[1] else sid[0]
            last = self._last_data.get(sid)
            ages[name] = None if last is None else round(now - last, 3)
        return ages

    def _send(self, obj: dict[str, Any]) -> None:
        # Only while connected: a new connection replays `wanted` itself. One
        # queue and one sender keep subscribe/unsubscribe in order.
        if self._ws is not None and not self._ws.closed:
            self._outbox.put_nowait(_encode(obj).decode())

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                text = await self._outbox.get()
                await self._send_gate()
                await ws.send_str(text)
        except (ConnectionError, RuntimeError):
            await ws.close()  # the read loop ends and the link reconnects

    # -- life cycle -------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"link-{self.index}")

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state(LinkState.STOPPED)

    def recycle(self, why: str) -> None:
        """Drop the connection now; the run loop reconnects and resubscribes."""
        log.warning("upstream link %d: recycling (%s)", self.index, why)
        ws = self._ws
        if ws is None or ws.closed:
            return
        # A dead link will not answer a close handshake: cut the TCP connection.
        # aiohttp has no public abort for client WebSockets; its connection is
        # `_conn` (aiohttp is pinned in requirements.lock).
        transport = getattr(getattr(ws, "_conn", None), "transport", None)
        if transport is not None:
            transport.abort()
        else:
            asyncio.get_running_loop().create_task(ws.close())

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            self._set_state(LinkState.CONNECTING)
            await self._connect_gate()
            try:
                timeout = aiohttp.ClientWSTimeout(ws_close=2)
                async with self._session.ws_connect(
                    self.url, autoping=True, max_msg_size=0, timeout=timeout, ssl=self._ssl
                ) as ws:
                    attempt = 0
                    await self._serve(ws)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("upstream link %d: %s", self.index, exc.__class__.__name__)
            finally:
                if self._ws is not None:
                    self.gap_from_ms = self.last_message_ms
                self._ws = None
                self.connected_since = None
            if self._stopping:
                break
            self._set_state(LinkState.DISCONNECTED)
            self.reconnects += 1
            # Full jitter: spread reconnects of many links (and many gateways) apart.
            delay = random.uniform(0, min(self._backoff_max, self._backoff_initial * 2**attempt))
            attempt += 1
            await asyncio.sleep(delay)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.connected_since = time.time()
        self.acked.clear()
        self._ping_sent = None
        now = time.monotonic()
        self._last_data.clear()
        self._resubscribed.clear()
        self._outbox = asyncio.Queue()
        for subscription in self.wanted.values():
            self._since[stream_id(subscription)] = now
            self._outbox.put_nowait(
                _encode({"method": "subscribe", "subscription": subscription}).decode()
            )
        self._set_state(LinkState.CONNECTED)
        loop = asyncio.get_running_loop()
        helpers = [
            loop.create_task(self._sender(ws)),
            loop.create_task(self._pinger()),
            loop.create_task(self._watchdog()),
        ]
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.last_message_at = time.monotonic()
                    self.last_message_ms = time.time_ns() // 1_000_000
                    self._dispatch(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self.garbage_frames += 1
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        finally:
            for task in helpers:
                task.cancel()

    async def _pinger(self) -> None:
        ping = _encode({"method": "ping"}).decode()
        while True:
            await asyncio.sleep(self._ping_interval)
            if self._ping_sent is None:
                self._ping_sent = time.monotonic()
            self._outbox.put_nowait(ping)

    async def _watchdog(self) -> None:
        tick = max(0.05, min(1.0, self._pong_timeout / 4, self._stale_after / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._ping_sent is not None and now - self._ping_sent > self._pong_timeout:
                self.pong_timeouts += 1
                self.recycle(f"no pong for {self._pong_timeout:g}s")
                return
            for subscription in list(self.wanted.values()):
                if subscription.get("type") not in BUSY_STREAMS:
                    continue
                sid = stream_id(subscription)
                last = self._last_data.get(sid, 0.0)
                resubscribed = self._resubscribed.get(sid)
                if now - max(last, self._since.get(sid, now)) <= self._stale_after:
                    # Flowing. A resubscribe counts as a cure only once the stream has
                    # kept flowing for a while: a stuck feed still sends the snapshot
                    # that answers a subscribe, then goes quiet again.
                    if resubscribed is not None and now - resubscribed > 3 * self._stale_after:
                        del self._resubscribed[sid]
                    continue
                if resubscribed is None:
                    self.stale_resubscribes += 1
                    log.warning("upstream link %d: %s:%s silent; resubscribing", self.index, *sid)
                    self._resubscribed[sid] = now
                    self._since[sid] = now
                    self._send({"method": "unsubscribe", "subscription": subscription})
                    self._send({"method": "subscribe", "subscription": subscription})
                elif now - resubscribed > self._stale_after:
                    self.stale_recycles += 1
                    self.recycle(f"{sid[0]}:{sid[1]} silent after resubscribe")
                    return

    def _dispatch(self, text: str) -> None:
        try:
            event = wire.parse(text)
        except wire.WireError:
            self.garbage_frames += 1
            log.debug("upstream link %d: skipped a frame we cannot parse", self.index)
            return
        if event is None:
            return
        if isinstance(event, wire.Pong):
            self._ping_sent = None
            return
        if isinstance(event, wire.Ack):
            self._on_ack(event)
        elif isinstance(event, wire.UpstreamError):
            log.warning("upstream link %d error: %s", self.index, event.text[:200])
        elif isinstance(event, wire.OrderUpdates) and self.order_updates_wallet:
            wallet = self.order_updates_wallet
            event = wire.OrderUpdates(
                [msgspec.structs.replace(o, wallet=wallet) for o in event.orders]
            )
        sid = event_stream(event, self.order_updates_wallet)
        if sid is not None:
            self._last_data[sid] = time.monotonic()
        try:
            self._on_event(self, event)
        except Exception:
            # One bad event must not take the link (and every stream on it) down.
            log.exception("upstream link %d: failed to handle %s", self.index, type(event).__name__)

    def _on_ack(self, ack: wire.Ack) -> None:
        if ack.method != "subscribe":
            return
        for key, subscription in self.wanted.items():
            if ack_matches(subscription, ack.subscription):
                self.acked.add(key)
                return

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            self.state = state
            self._on_state(self, state)

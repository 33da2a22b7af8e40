"""One WebSocket connection to Hyperliquid, kept alive.

A link holds a set of wanted subscriptions. On every (re)connect it sends them
all again; in between it sends subscribe/unsubscribe as the set changes. It
knows a link is dead three ways: the socket closes; a ping goes unanswered for
`pong_timeout` (a silent half-open link); or a stream that is normally busy
(allMids, l2Book) goes quiet for `stale_after` and stays quiet after a
resubscribe (a stuck feed). A dead link reconnects with capped exponential
backoff and full jitter, forever (hlgateway/reconnect.py). Frames are parsed here and handed on as
normalized events.

The decisions (what to send on connect, when a ping is due, when a stream is
stale or a pong late, when to recycle) are plain methods driven by an
injected clock and a `LinkTransport`, so tests run them without sockets; the
tasks around them only supply time passing and frames arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from websockets.exceptions import InvalidURI

from hlgateway.backoff import Backoff
from hlgateway.reconnect import GiveUp, Reconnect, Retry, Supervisor
from hlgateway.upstream import wire
from hlgateway.upstream.websocket import UpstreamSocket

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(order="sorted").encode

RECONNECT = Backoff.full_jitter(1.0, 30.0)  # the defaults of LinkTiming

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
    if kind == "candle":
        return kind, f"{subscription.get('coin')},{subscription.get('interval')}".lower()
    name = subscription.get("coin") or subscription.get("user") or subscription.get("dex") or ""
    return kind, str(name).lower()


def event_stream(event: wire.Event, order_wallet: str | None) -> StreamId | None:
    """Which subscription a data event belongs to (for data-age tracking)."""
    match event:
        case wire.Mids():
            return ("allMids", event.dex.lower())
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
        case wire.BestBidOffer():
            return ("bbo", event.coin.lower())
        case wire.CandleUpdate():
            return ("candle", f"{event.coin},{event.interval}".lower())
        case wire.ContextUpdate():
            return ("activeAssetCtx", event.coin.lower())
        case wire.LedgerEntries():
            return (event.stream, event.wallet)
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


def _always() -> bool:
    return True


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LinkTransport(Protocol):
    """A connected upstream socket, as the link's state machine sees it."""

    @property
    def closed(self) -> bool: ...

    def send(self, text: str, *, counted: bool = False) -> None:
        """Send a text frame; frames go out in the order given. `counted`: its message
        was taken from the per-IP count already."""

    def abort(self) -> bool:
        """Cut the connection now, without a close handshake (False: could only start a close)."""


class Link:
    def __init__(
        self,
        index: int,
        url: str,
        on_event: EventSink,
        on_state: StateSink,
        *,
        ping_interval: float = 30.0,
        pong_timeout: float = 10.0,
        stale_after: float = 15.0,
        backoff: Backoff = RECONNECT,
        connect_gate: Gate = _open_gate,
        send_now: Callable[[], bool] = _always,
        send_gate: Gate = _open_gate,
        ssl: ssl.SSLContext | bool = True,
        local_addr: tuple[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.url = url
        self._on_event = on_event
        self._on_state = on_state
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._stale_after = stale_after
        self._reconnect = Reconnect(backoff, rng)
        self._clock = clock
        self._wall_ms = wall_ms
        self._connect_gate = connect_gate
        self._send_now = send_now
        self._send_gate = send_gate
        self._ssl = ssl
        self._local_addr = local_addr
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
        self._transport: LinkTransport | None = None
        self._socket: UpstreamSocket | None = None  # the connection that is up
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- subscriptions ----------------------------------------------------
    def add(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        if key in self.wanted:
            return
        self.wanted[key] = subscription
        self._since[stream_id(subscription)] = self._clock()
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
        now = self._clock()
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

    def send_text(self, text: str) -> bool:
        """Send a frame as it is (a signed `post`: never re-encoded); False if not connected."""
        transport = self._transport
        if transport is None or transport.closed or self.state is not LinkState.CONNECTED:
            return False
        transport.send(text, counted=True)  # the relay took its message (exchange.py)
        return True

    def _send(self, obj: dict[str, Any]) -> None:
        # Only while connected: a new connection replays `wanted` itself.
        transport = self._transport
        if transport is not None and not transport.closed:
            transport.send(_encode(obj).decode())

    # -- life cycle -------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"link-{self.index}")

    async def stop(self) -> None:
        self._stopping = True
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state(LinkState.STOPPED)

    def recycle(self, why: str) -> None:
        """Drop the connection now; the run loop reconnects and resubscribes."""
        log.warning("upstream link %d: recycling (%s)", self.index, why)
        transport = self._transport
        if transport is not None and not transport.closed:
            transport.abort()

    async def _run(self) -> None:
        # Full jitter (LinkTiming's backoff): reconnects of many links (and many
        # gateways) spread apart. No max_attempts: a link comes back for ever.
        await Supervisor(
            self._connection, stopping=lambda: self._stopping, on_retry=self._down
        ).run()

    async def _connection(self) -> Retry | GiveUp:
        """One connection, from connect to its end."""
        self._set_state(LinkState.CONNECTING)
        await self._connect_gate()
        socket: UpstreamSocket | None = None
        try:
            socket = UpstreamSocket(
                self.url,
                self.received,
                send_now=self._send_now,
                send_gate=self._send_gate,
                on_garbage=self._garbage,
            )
            await socket.open(ssl_context=self._ssl, local_addr=self._local_addr)
            self._reconnect.connected()
            await self._serve(socket)
        except (OSError, TimeoutError, InvalidURI) as exc:
            log.warning("upstream link %d: %s", self.index, exc.__class__.__name__)
        finally:
            if socket is not None:  # cancelled (stop) or failed: nothing of it stays open
                socket.abort()
            self._socket = None
            self.disconnected()
        return self._reconnect.ended()

    def _down(self, _: Retry) -> None:
        self._set_state(LinkState.DISCONNECTED)
        self.reconnects += 1

    async def _serve(self, socket: UpstreamSocket) -> None:
        # Frames arrive by themselves (socket -> received, in the loop's read
        # callback); this task only holds the connection's helpers until it ends.
        self._socket = socket
        self.connected(socket)
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._pinger()), loop.create_task(self._watchdog())]
        try:
            await socket.wait_closed()
        finally:
            for task in helpers:
                task.cancel()

    def _garbage(self) -> None:
        self.garbage_frames += 1

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            self.ping()

    async def _watchdog(self) -> None:
        tick = max(0.05, min(1.0, self._pong_timeout / 4, self._stale_after / 4))
        while True:
            await asyncio.sleep(tick)
            if self.check():
                return

    # -- the state machine (no I/O: a clock and a transport) ----------------
    def connected(self, transport: LinkTransport) -> None:
        """A new connection is up: start every stream's clock and resubscribe all."""
        self._transport = transport
        self.connected_since = self._wall_ms() / 1000
        self.acked.clear()
        self._ping_sent = None
        now = self._clock()
        self._last_data.clear()
        self._resubscribed.clear()
        for subscription in self.wanted.values():
            self._since[stream_id(subscription)] = now
            transport.send(_encode({"method": "subscribe", "subscription": subscription}).decode())
        self._set_state(LinkState.CONNECTED)

    def disconnected(self) -> None:
        """The connection is gone: streams resubscribed later recover from the last frame heard."""
        if self._transport is not None:
            self.gap_from_ms = self.last_message_ms
        self._transport = None
        self.connected_since = None

    def received(self, text: str) -> None:
        """A text frame arrived."""
        self.last_message_at = self._clock()
        self.last_message_ms = self._wall_ms()
        self._dispatch(text)

    def ping(self) -> None:
        """Time for a ping; its deadline runs from the oldest one unanswered."""
        if self._ping_sent is None:
            self._ping_sent = self._clock()
        self._send({"method": "ping"})

    def check(self) -> bool:
        """The watchdog's look: resubscribe a silent busy stream, recycle a link that
        missed its pong or stayed silent after a resubscribe. True if recycled."""
        now = self._clock()
        if self._ping_sent is not None and now - self._ping_sent > self._pong_timeout:
            self.pong_timeouts += 1
            self.recycle(f"no pong for {self._pong_timeout:g}s")
            return True
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
                return True
        return False

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
            self._last_data[sid] = self._clock()
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

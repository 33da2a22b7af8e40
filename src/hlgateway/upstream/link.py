"""One WebSocket connection to Hyperliquid, kept alive.

A link holds a set of wanted subscriptions. On every (re)connect it sends them
all again; between connects it sends subscribe/unsubscribe as the set changes.
It pings every `ping_interval` (Hyperliquid drops links it has not sent
anything to for 60 s) and reconnects with capped exponential backoff and full
jitter. Frames are parsed here and handed on as normalized events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from hlgateway.upstream import wire

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(order="sorted").encode


def subscription_key(subscription: dict[str, Any]) -> str:
    """Canonical identity of a Hyperliquid subscription (addresses lower-cased)."""
    norm = {
        k: v.lower() if k == "user" and isinstance(v, str) else v for k, v in subscription.items()
    }
    return _encode(norm).decode()


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
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.index = index
        self.url = url
        self._session = session
        self._on_event = on_event
        self._on_state = on_state
        self._ping_interval = ping_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.wanted: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()
        self.state = LinkState.DISCONNECTED
        self.connected_since: float | None = None
        self.reconnects = 0
        self.last_message_at: float | None = None
        self.order_updates_wallet: str | None = None  # orderUpdates frames carry no user
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
        if subscription.get("type") == "orderUpdates":
            self.order_updates_wallet = str(subscription["user"]).lower()
        self._send({"method": "subscribe", "subscription": subscription})

    def remove(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        if self.wanted.pop(key, None) is None:
            return
        self.acked.discard(key)
        if subscription.get("type") == "orderUpdates":
            self.order_updates_wallet = None
        self._send({"method": "unsubscribe", "subscription": subscription})

    def _send(self, obj: dict[str, Any]) -> None:
        # Only while connected: a new connection replays `wanted` itself. One
        # queue and one sender keep subscribe/unsubscribe in order.
        if self._ws is not None and not self._ws.closed:
            self._outbox.put_nowait(_encode(obj).decode())

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                await ws.send_str(await self._outbox.get())
        except (ConnectionError, RuntimeError):
            await ws.close()  # the read loop ends and the link reconnects

    # -- life cycle -------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"link-{self.index}"
            )

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state(LinkState.STOPPED)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            self._set_state(LinkState.CONNECTING)
            try:
                async with self._session.ws_connect(
                    self.url,
                    autoping=True,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5),
                ) as ws:
                    self._ws = ws
                    attempt = 0
                    self.connected_since = time.time()
                    self.acked.clear()
                    self._outbox = asyncio.Queue()
                    for subscription in self.wanted.values():
                        self._outbox.put_nowait(
                            _encode({"method": "subscribe", "subscription": subscription}).decode()
                        )
                    self._set_state(LinkState.CONNECTED)
                    await self._read(ws)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.warning("upstream link %d: %s", self.index, exc.__class__.__name__)
            finally:
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

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._ping(ws)), loop.create_task(self._sender(ws))]
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.last_message_at = time.monotonic()
                    self._dispatch(msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        finally:
            for task in helpers:
                task.cancel()

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        ping = _encode({"method": "ping"}).decode()
        while not ws.closed:
            await asyncio.sleep(self._ping_interval)
            self._outbox.put_nowait(ping)

    def _dispatch(self, text: str) -> None:
        try:
            event = wire.parse(text)
        except wire.WireError:
            log.debug("upstream link %d: skipped a frame we cannot parse", self.index)
            return
        if event is None:
            return
        if isinstance(event, wire.Ack):
            self._on_ack(event)
        elif isinstance(event, wire.UpstreamError):
            log.warning("upstream link %d error: %s", self.index, event.text[:200])
        if isinstance(event, wire.OrderUpdates) and self.order_updates_wallet:
            event = wire.OrderUpdates(
                [msgspec.structs.replace(o, wallet=self.order_updates_wallet) for o in event.orders]
            )
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

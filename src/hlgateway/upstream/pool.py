"""The upstream as a whole: a small pool of links, the REST API, and market data
that the gateway needs before anyone subscribes (the symbol list, 24 h context).

Subscriptions are reference counted by their Hyperliquid identity, so many
topics that need the same upstream stream (every `prices` topic needs
allMids) share one subscription. Each wallet's orderUpdates goes on a link of
its own, because those frames do not say which user they are for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import Markets
from hlgateway.upstream import wire
from hlgateway.upstream.link import Link, LinkState, subscription_key
from hlgateway.upstream.networks import Endpoint

log = logging.getLogger(__name__)

EventSink = Callable[[Link, wire.Event], None]
StatusSink = Callable[[str], None]


class Upstream:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        on_event: EventSink,
        on_status: StatusSink | None = None,
        max_links: int = 10,
        max_subscriptions_per_link: int = 1000,
        ping_interval: float = 30.0,
        context_refresh: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.markets = Markets()
        self.contexts: dict[str, wire.AssetContext] = {}
        self._on_event = on_event
        self._on_status = on_status
        self._max_links = max_links
        self._max_per_link = max_subscriptions_per_link
        self._ping_interval = ping_interval
        self._context_refresh = context_refresh
        self._links: list[Link] = []
        self._refs: dict[str, int] = {}
        self._placement: dict[str, Link] = {}
        self._session: aiohttp.ClientSession | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._status = "idle"
        self.markets_loaded = asyncio.Event()

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await asyncio.gather(*(link.stop() for link in self._links))
        if self._session is not None:
            await self._session.close()

    # -- subscriptions ----------------------------------------------------
    def acquire(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        count = self._refs.get(key, 0)
        if count == 0:
            link = self._place(subscription)
            self._placement[key] = link
            link.add(subscription)
        self._refs[key] = count + 1

    def release(self, subscription: dict[str, Any]) -> None:
        key = subscription_key(subscription)
        count = self._refs.get(key, 0)
        if count <= 1:
            self._refs.pop(key, None)
            link = self._placement.pop(key, None)
            if link is not None:
                link.remove(subscription)
        else:
            self._refs[key] = count - 1

    def _place(self, subscription: dict[str, Any]) -> Link:
        needs_own_orders = subscription.get("type") == "orderUpdates"
        candidates = [
            link
            for link in self._links
            if len(link.wanted) < self._max_per_link
            and not (needs_own_orders and link.order_updates_wallet is not None)
        ]
        if candidates:
            return min(candidates, key=lambda link: len(link.wanted))
        if len(self._links) >= self._max_links or self._session is None:
            raise ProtocolError(
                ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream capacity reached; try again later"
            )
        link = Link(
            len(self._links),
            self.endpoint.ws_url,
            self._session,
            self._on_event,
            self._link_state,
            ping_interval=self._ping_interval,
        )
        self._links.append(link)
        link.start()
        return link

    @property
    def subscription_count(self) -> int:
        return len(self._refs)

    # -- health -----------------------------------------------------------
    def _link_state(self, link: Link, state: LinkState) -> None:
        log.info("upstream link %d %s", link.index, state.value)
        self._status_changed()

    def _status_changed(self) -> None:
        status = self.status
        if status != self._status:
            self._status = status
            if self._on_status is not None:
                self._on_status(status)

    @property
    def status(self) -> str:
        """connected, degraded (a link that should be up is down) or idle (no links)."""
        if not self._links:
            return "idle" if self.markets.loaded else "degraded"
        if all(link.state is LinkState.CONNECTED for link in self._links):
            return "connected" if self.markets.loaded else "degraded"
        return "degraded"

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "status": self.status,
            "network": self.endpoint.name,
            "host": self.endpoint.host,
            "marketsLoaded": self.markets.loaded,
            "subscriptions": len(self._refs),
            "links": [
                {
                    "index": link.index,
                    "state": link.state.value,
                    "connectedSince": link.connected_since,
                    "reconnects": link.reconnects,
                    "subscriptions": len(link.wanted),
                    "acked": len(link.acked),
                    "lastMessageAgeSeconds": None
                    if link.last_message_at is None
                    else round(now - link.last_message_at, 3),
                }
                for link in self._links
            ],
        }

    # -- REST -------------------------------------------------------------
    async def info(self, payload: dict[str, Any]) -> bytes:
        """POST /info; raises aiohttp.ClientError or OSError on failure."""
        assert self._session is not None, "start() first"
        async with self._session.post(self.endpoint.info_url, json=payload) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def _refresh_loop(self) -> None:
        # The symbol list gates subscriptions; 24 h context feeds `prices`.
        # One REST call gives both. Retries back off while it fails.
        failures = 0
        while True:
            try:
                body = await self.info({"type": "metaAndAssetCtxs"})
                names, contexts = wire.parse_meta_and_ctxs(body)
                first = not self.markets.loaded
                self.markets.load(names)
                self.contexts = contexts
                self.markets_loaded.set()
                failures = 0
                if first:
                    log.info("upstream %s: %d markets", self.endpoint.name, len(names))
                    self._status_changed()
                await asyncio.sleep(self._context_refresh)
            except (aiohttp.ClientError, OSError, TimeoutError, wire.WireError) as exc:
                failures += 1
                delay = random.uniform(0, min(30.0, 2.0**failures))
                log.warning(
                    "upstream REST metaAndAssetCtxs failed (%s); retry in %.1fs",
                    exc.__class__.__name__,
                    delay,
                )
                await asyncio.sleep(delay)

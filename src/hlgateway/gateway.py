"""The gateway process's parts, wired together (the node).

upstream links -> wire -> Feeds -> Publisher (encode once) -> Broker (position, history)
               -> sink: one Frame -> Hub -> outboxes
client frames  -> Session -> Catalog (canonical topic, permissions) -> Broker.read (replay)
               -> Hub -> (first subscriber) Feeds -> Upstream
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hlgateway.auth import TokenVerifier
from hlgateway.broker import Broker
from hlgateway.broker.base import BrokerStats
from hlgateway.broker.coordination import CoordinationStats
from hlgateway.broker.engines import open_broker
from hlgateway.config import Settings
from hlgateway.directory import UserDirectory
from hlgateway.directory_sync import DirectorySync
from hlgateway.hub import Hub
from hlgateway.metrics import Metrics, UpstreamCounts
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import Catalog, Topic, room_topic
from hlgateway.protocol.errors import ProtocolError
from hlgateway.publisher import Publisher
from hlgateway.server import delivery
from hlgateway.server.capacity import connection_capacity
from hlgateway.server.outbox import FlushScheduler, OutboxStats
from hlgateway.server.timing_wheel import TimingWheel
from hlgateway.session import SessionLimits
from hlgateway.trading.policy import PostLimits, PostPolicy
from hlgateway.trading.relay import PostRelay
from hlgateway.upstream import wire
from hlgateway.upstream.exchange import ExchangeClient
from hlgateway.upstream.feeds import Feeds
from hlgateway.upstream.link import Link
from hlgateway.upstream.networks import Endpoint
from hlgateway.upstream.polling import PollBudget
from hlgateway.upstream.pool import LinkTiming, Upstream, UpstreamLimits
from hlgateway.websocket.frames import Frame

if TYPE_CHECKING:
    from hlgateway.server.connection import Connection

log = logging.getLogger(__name__)

SWEEP_SLICE = 500  # connections swept per loop turn (~1 ms)
# A node whose upstream has been degraded this long gives its leases to others.
UPSTREAM_GIVE_UP = 10.0


class Gateway:
    def __init__(
        self,
        settings: Settings,
        endpoint: Endpoint,
        *,
        linger_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings.auth)
        # Lossless topics outlive their last subscriber for the history window,
        # so that their history keeps filling for a client that comes back.
        # `linger_clock` times that window (a test ends it without waiting for it).
        self.hub = Hub(self, linger=settings.history_ttl, clock=linger_clock)
        self.broker: Broker = open_broker(settings)
        self.metrics = Metrics(self)
        self.outbox_stats = OutboxStats()
        self.flusher = FlushScheduler(self.metrics.observe_delivery)
        self.broker.bind(self._deliver, self.flusher.flush_now)
        self.publisher = Publisher(self.broker)
        self.upstream = Upstream(
            endpoint,
            on_event=self._on_upstream_event,
            on_status=self._on_upstream_status,
            limits=UpstreamLimits(
                max_links=settings.upstream_max_links,
                max_subscriptions=settings.upstream_max_subscriptions,
                max_new_links_per_minute=settings.upstream_max_new_links,
                max_messages_per_minute=settings.upstream_max_messages,
                max_ws_wallets=settings.upstream_max_wallets,
                rest_weight_per_minute=settings.upstream_rest_weight,
                market_list_weight=settings.upstream_market_list_weight,
            ),
            timing=LinkTiming(
                ping_interval=settings.upstream_ping_interval,
                pong_timeout=settings.upstream_pong_timeout,
                stale_after=settings.upstream_stale_after,
                backoff_max=settings.upstream_backoff_max,
            ),
            context_refresh=settings.context_refresh,
            ca_file=settings.upstream_ca_file,
            source_address=settings.upstream_source_address,
            # One node of the broker reads the market list for all; a reader not
            # heard of for two refreshes and a half is replaced.
            share=self.broker.shared("markets", ttl=settings.context_refresh * 2.5),
        )
        self.feeds = Feeds(
            self.upstream,
            self.publisher,
            PollBudget(
                weight_per_minute=settings.upstream_rest_weight,
                reserved=lambda: self.upstream.reserved_weight_per_minute,
                min_interval=settings.upstream_poll_interval,
                max_interval=settings.upstream_max_poll_interval,
            ),
        )
        # Which node feeds each upstream stream is the engine's answer: alone,
        # this node feeds whatever its clients want; nodes sharing a Redis hold
        # a lease per stream.
        self.coordinator = self.broker.coordinator(self.feeds, self._upstream_serves)
        self.node = self.broker.node
        self.directory = UserDirectory()
        self.directory_sync = DirectorySync(
            self.directory,
            file=settings.directory_file,
            dsn=settings.directory_dsn,
            table=settings.directory_table,
            refresh=settings.directory_refresh,
        )
        self.catalog = Catalog(self.upstream.markets, self.directory)
        # Order entry: clients' signed actions, relayed (docs/trading.md).
        self.relay = PostRelay(
            ExchangeClient(
                self.upstream,
                timeout=settings.post_timeout,
                keep_messages=settings.post_keep_messages,
                keep_weight=settings.post_keep_weight,
            ),
            PostPolicy(
                PostLimits(
                    rate=settings.post_rate,
                    burst=settings.post_burst,
                    user_in_flight=settings.post_user_in_flight,
                    max_in_flight=settings.post_max_in_flight,
                    also_allowed=frozenset(settings.post_allow),
                )
            ),
            self._observe_post,
        )
        # Broadcasts write smaller slices while a post is in flight (server/outbox.py).
        self.flusher.urgent = lambda: self.relay.policy.in_flight > 0
        self.limits = SessionLimits(
            max_subscriptions=settings.max_subscriptions,
            max_rooms=settings.max_rooms,
            error_limit=settings.error_limit,
            error_window=settings.error_window,
            message_rate=settings.message_rate,
            message_burst=settings.message_burst,
            market_wait=settings.market_wait,
        )
        self.connections: dict[str, Connection] = {}
        # When each connection next needs the sweeper (ping, silence, token expiry).
        self._wheel = TimingWheel(
            max(0.02, min(1.0, settings.heartbeat_interval / 4)), time.monotonic()
        )
        # WebSockets held at once before upgrades are refused (server/capacity.py).
        self.capacity = connection_capacity(settings.max_connections)
        self.shutting_down = False
        self._drained: asyncio.Event | None = None  # set when the last connection ends (shutdown)
        self._sweeper: asyncio.Task[None] | None = None
        self.started_at = time.time()

    # -- the hub's listener: a topic's first subscriber, and its end ---------
    def on_first(self, topic: Topic) -> None:
        self.coordinator.want(topic)  # may refuse the topic (ProtocolError)
        self.broker.demand(topic)

    def _observe_post(self, outcome: str, seconds: float | None) -> None:
        self.metrics.posts.labels(outcome).inc()
        if seconds is not None:
            self.metrics.post_seconds.observe(seconds)

    def on_last(self, topic: Topic) -> None:
        self.broker.drop(topic)
        self.coordinator.unwant(topic)

    def _upstream_serves(self) -> bool:
        """Whether this node should feed upstream streams others could feed."""
        upstream = self.upstream
        if not upstream.markets.loaded:
            return False
        since = upstream.degraded_since
        return since is None or time.time() - since < UPSTREAM_GIVE_UP

    def _deliver(self, topic: Topic, payload: bytes, offset: int) -> None:
        """The broker's sink: one Frame per message for every local subscriber."""
        # A snapshot supersedes the topic's previous one: a lagging client may skip it.
        conflate = topic if topic.snapshot else None
        frame = Frame(payload, self.settings.compression_threshold, conflate)
        reached = self.hub.publish(topic, frame)
        self.metrics.count(topic.channel, reached, len(payload))
        if reached:
            self.flusher.published(frame)

    def _on_upstream_event(self, link: Link, event: wire.Event) -> None:
        self.feeds.on_event(link, event)

    def _on_upstream_status(self, status: str) -> None:
        self.feeds.on_status(status)

    async def start(self) -> None:
        await self.directory_sync.start()
        await self.broker.start()
        await self.upstream.start()
        self.coordinator.start()
        # What was wanted when the gateway last stopped is fed again at once,
        # before any client returns, lingering as if its subscribers had just left.
        for topic in await self.broker.resume():
            try:
                self.hub.resume(topic)
            except ProtocolError as exc:
                log.warning("a stream wanted before the restart is refused: %s", exc.message)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """One task for every connection's heartbeat and token expiry: each tick, the
        connections the wheel says are due (a ping, a silence, an expiry), not all."""
        upkept = time.monotonic()
        while True:
            await asyncio.sleep(self._wheel.resolution)
            now, wall_ms = time.monotonic(), time.time_ns() // 1_000_000
            self.hub.expire()
            if now - upkept >= 1.0:
                upkept = now
                self.broker.upkeep()
            due = self._wheel.due(now)
            for start in range(0, len(due), SWEEP_SLICE):
                if start:
                    # In slices, so that a broadcast arriving meanwhile is not held
                    # up behind all of them (10k connections due at once: ~20 ms).
                    await asyncio.sleep(0)
                for tick, client_id in due[start : start + SWEEP_SLICE]:
                    connection = self.connections.get(client_id)
                    if connection is None or connection.due_tick != tick:
                        continue  # gone, or filed again (for an earlier time) since
                    connection.sweep(now, wall_ms)
                    if client_id in self.connections:
                        self.reschedule(connection, now, wall_ms)

    def register(self, connection: Connection) -> None:
        self.connections[connection.client_id] = connection
        self.reschedule(connection)

    def reschedule(
        self, connection: Connection, now: float | None = None, wall_ms: int | None = None
    ) -> None:
        """File the connection in the sweeper's wheel for when it is next due."""
        if now is None or wall_ms is None:
            now, wall_ms = time.monotonic(), time.time_ns() // 1_000_000
        connection.due_tick = self._wheel.file(
            connection.client_id, connection.next_due(now, wall_ms)
        )

    def unregister(self, connection: Connection) -> None:
        self.connections.pop(connection.client_id, None)
        if not self.connections and self._drained is not None:
            self._drained.set()

    @staticmethod
    def new_client_id() -> str:
        return secrets.token_hex(8)

    def publish_to_room(self, room: str, data: Any) -> int:
        """Admin publish: returns how many local members it reached."""
        topic = room_topic(room)
        head = encoding.data_head(topic.channel, topic.params_json)
        self.broker.publish(topic, encoding.data_frame(head, data))
        return self.hub.subscriber_count(topic)

    def health(self) -> dict[str, Any]:
        upstream = self.upstream.health()
        return {
            "status": "healthy"
            if upstream["status"] in ("connected", "idle") and not self.broker.degraded
            else "degraded",
            "websocket": {
                "clients": len(self.connections),
                "capacity": self.capacity,
                "subscriptions": self.hub.subscription_count,
                "topics": self.hub.topic_count,
                # Which delivery loops run (server/delivery.py): "c" or "python".
                "deliveryLoops": "c" if delivery.SPEEDUPS else "python",
            },
            "upstream": {**upstream, "wallets": self.feeds.wallets.modes_summary()},
            "node": self.node,
            "leases": self.coordinator.stats().health(),
            "broker": self.broker.stats().health(),
            "history": {"lingeringTopics": self.hub.lingering_count},
            "trading": {
                "postsInFlight": self.relay.policy.in_flight,
                "posts": dict(self.relay.stats),
            },
            "directory": self.directory_sync.health(),
            "uptimeSeconds": round(time.time() - self.started_at, 1),
        }

    # -- metrics.GatewayStats: what /metrics reads at each scrape ----------
    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def subscription_count(self) -> int:
        return self.hub.subscription_count

    @property
    def topic_count(self) -> int:
        return self.hub.topic_count

    @property
    def upstream_subscription_count(self) -> int:
        return self.upstream.subscription_count

    @property
    def upstream_counts(self) -> UpstreamCounts:
        links = self.upstream.health()["links"]
        wallets = self.feeds.wallets
        modes = wallets.modes_summary()
        budget = self.upstream.budget
        return UpstreamCounts(
            degraded=self.upstream.status not in ("connected", "idle"),
            links_open=sum(1 for link in links if link["state"] == "connected"),
            reconnects=sum(link["reconnects"] for link in links),
            fills_recovered=wallets.fills_recovered,
            wallet_recoveries=wallets.recoveries,
            rest_failures=wallets.rest_failures,
            wallets_websocket=modes["websocket"],
            wallets_polled=modes["restPolled"],
            # Unbounded (no budget for polling at all) reads as -1: never a number that looks fine.
            poll_interval=modes["pollIntervalSeconds"] or -1.0,
            poll_lag=modes["pollLagSeconds"],
            wallets_over_latency=modes["overLatency"],
            rest_weight_used=budget.used(),
            rest_weight_limit=budget.capacity,
        )

    @property
    def broker_stats(self) -> BrokerStats:
        return self.broker.stats()

    @property
    def coordination_stats(self) -> CoordinationStats:
        return self.coordinator.stats()

    async def shutdown(self, drain_seconds: float) -> None:
        """Say goodbye to every client, close with 1001, drain for at most `drain_seconds`."""
        self.shutting_down = True
        connections = list(self.connections.values())
        log.info("shutting down: %d clients", len(connections))
        for connection in connections:
            connection.going_away()
        if self.connections:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await self._drained.wait()
        for connection in list(self.connections.values()):
            connection.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.coordinator.stop()
        self.hub.clear()
        await self.feeds.stop()
        await self.relay.stop()  # posts still in flight are answered err (fate unknown)
        await self.upstream.stop()
        await self.broker.stop()
        await self.directory_sync.stop()

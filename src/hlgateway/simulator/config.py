"""Simulator settings. Defaults mirror Hyperliquid's live behaviour and limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    book_interval: float = 0.5  # seconds between allMids/l2Book/bbo pushes
    order_interval: float = 2.5  # mean seconds between order events per wallet
    max_fill_gap: float = 10.0  # a wallet never goes longer than this without a fill
    ctx_interval: float = 1.0  # seconds between activeAssetCtx pushes
    tick: float = 0.1  # model tick and clock resolution, seconds
    history: float = 30.0  # seconds of invented history for a wallet's first subscription
    start_ms: int | None = None  # model epoch; None = wall clock when start() runs
    # The exchange's clock minus the wall clock, seconds (with start_ms None): Hyperliquid
    # stamps events with its own clock, which a gateway's may be ahead of or behind.
    # Negative: the simulator's clock runs behind.
    clock_offset: float = 0.0
    trade_rate: float = 2.0  # mean public trades per second per coin
    trades_replay: int = 30  # recent trades replayed after a trades subscription
    # Hyperliquid's per-IP limits, enforced per client IP (request.remote) across all
    # of that IP's WebSocket connections.
    max_connections: int = 10  # open WebSocket connections; the next upgrade gets HTTP 429
    max_new_connections_per_minute: int = 30  # accepted upgrades, sliding 60 s; then 429
    max_users: int = 10  # distinct users across the IP's user-specific subscriptions
    max_subscriptions: int = 1000  # subscriptions across the IP's connections
    max_messages_per_minute: int = 2000  # client messages, sliding 60 s window
    # REST /info weight per IP, sliding 60 s (Hyperliquid's weights); over it, HTTP 429.
    rest_weight_per_minute: int = 1200
    idle_timeout: float = 60.0  # drop a connection nothing was sent to for this long
    max_pending_frames: int = 10_000  # outbound backlog before a slow client is dropped
    # A wallet keeps trading for this long after its last subscription went away, so
    # order flow carries on through a client's reconnect gap. 0 = stop at once.
    track_grace: float = 120.0
    # Also track a wallet (for track_grace, or at least a tick) when an info request
    # (REST or WS post) asks about it, so a wallet that is only polled trades too.
    track_rest_queries: bool = False
    control: bool = False  # serve the /control/* chaos API (never on by default)
    # The userFills snapshot holds the wallet's most recent fills, up to this many
    # (oldest first), like Hyperliquid's (its REST userFills also answers at most 2000).
    snapshot_fills: int = 2000
    # A wallet's cashflows: funding settles every funding_interval (Hyperliquid: an
    # hour); a deposit or withdrawal comes every transfer_interval on average, and a
    # liquidation of its open perp positions every liquidation_interval on average.
    funding_interval: float = 3600.0
    transfer_interval: float = 120.0
    liquidation_interval: float = 900.0
    # /exchange: the local account (local_account.py) starts with this many USD, and
    # signatures are checked as for this network (the SDK signs as testnet for any
    # URL but mainnet's).
    local_account_usd: float = 100_000.0
    mainnet: bool = False

    def __post_init__(self) -> None:
        positive = {
            "book_interval": self.book_interval,
            "order_interval": self.order_interval,
            "max_fill_gap": self.max_fill_gap,
            "ctx_interval": self.ctx_interval,
            "tick": self.tick,
            "idle_timeout": self.idle_timeout,
            "funding_interval": self.funding_interval,
            "transfer_interval": self.transfer_interval,
            "liquidation_interval": self.liquidation_interval,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"SimConfig.{name} must be positive, got {value!r}")
        if not abs(self.clock_offset) <= 86_400:
            raise ValueError(
                f"SimConfig.clock_offset must be within a day, got {self.clock_offset!r}"
            )
        if self.tick < 0.001:
            raise ValueError("SimConfig.tick must be at least 1 ms")
        counts = {
            "max_connections": self.max_connections,
            "max_new_connections_per_minute": self.max_new_connections_per_minute,
            "max_users": self.max_users,
            "max_subscriptions": self.max_subscriptions,
            "max_messages_per_minute": self.max_messages_per_minute,
            "rest_weight_per_minute": self.rest_weight_per_minute,
            "max_pending_frames": self.max_pending_frames,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"SimConfig.{name} must be at least 1, got {value!r}")
        if self.local_account_usd < 0:
            raise ValueError("SimConfig.local_account_usd must be >= 0")
        if self.history < 0 or self.trades_replay < 0 or self.trade_rate < 0:
            raise ValueError("SimConfig.history, trade_rate and trades_replay must be >= 0")
        if not self.track_grace >= 0:
            raise ValueError(f"SimConfig.track_grace must be >= 0, got {self.track_grace!r}")

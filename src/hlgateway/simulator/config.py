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
    trade_rate: float = 2.0  # mean public trades per second per coin
    trades_replay: int = 30  # recent trades replayed after a trades subscription
    max_users: int = 10  # distinct users per connection (live limit is per IP)
    max_subscriptions: int = 1000  # per connection
    max_messages_per_minute: int = 2000  # client messages per connection per minute
    idle_timeout: float = 60.0  # drop a connection nothing was sent to for this long
    max_pending_frames: int = 10_000  # outbound backlog before a slow client is dropped

    def __post_init__(self) -> None:
        positive = {
            "book_interval": self.book_interval,
            "order_interval": self.order_interval,
            "max_fill_gap": self.max_fill_gap,
            "ctx_interval": self.ctx_interval,
            "tick": self.tick,
            "idle_timeout": self.idle_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"SimConfig.{name} must be positive, got {value!r}")
        if self.tick < 0.001:
            raise ValueError("SimConfig.tick must be at least 1 ms")
        counts = {
            "max_users": self.max_users,
            "max_subscriptions": self.max_subscriptions,
            "max_messages_per_minute": self.max_messages_per_minute,
            "max_pending_frames": self.max_pending_frames,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"SimConfig.{name} must be at least 1, got {value!r}")
        if self.history < 0 or self.trades_replay < 0 or self.trade_rate < 0:
            raise ValueError("SimConfig.history, trade_rate and trades_replay must be >= 0")

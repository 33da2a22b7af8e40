"""Each wallet's user streams, delivered exactly once across upstream gaps.

A wallet is served one of two ways, chosen when its first user topic starts:
- `ws`: its userFills / orderUpdates / clearinghouseState subscriptions (and,
  for `user_ledger`, userNonFundingLedgerUpdates and userFundings) on the
  upstream links (Hyperliquid tracks at most 10 users per IP this way);
- `poll`: REST polling within the weight budget, for wallets beyond that limit,
  each as often as the budget allows (polling.py); a wallet the budget cannot
  poll within the accepted latency is refused (`UPSTREAM_UNAVAILABLE`). When a
  WebSocket slot frees, the longest-polled wallet moves onto it.

Either way the same ledgers decide what is new. After a gap (a reconnect, or
the first subscribe) the missed order transitions, fills and ledger events are
rebuilt from REST before live updates, which are held meanwhile, are let through.
Every stream delivers from its start, on the exchange's clock, by one rule for
every path (clock.py): what is read back (a snapshot, REST, a poll) never
reaches before it, and reaches a margin back from the last moment heard.

REST (`WalletRest`), the clock and the retry sleep are injected, so tests
drive the holds and retries with a fake REST and no waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hlgateway.backoff import Backoff
from hlgateway.protocol.channels import ACCOUNT_UPDATES, USER_FILLS, USER_LEDGER, USER_ORDERS
from hlgateway.protocol.encoding import now_ms
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.reconnect import Reconnect, retrying, sleeping
from hlgateway.upstream import wire
from hlgateway.upstream.clock import CLOCK_MARGIN_MS, reach_back, start_from
from hlgateway.upstream.ledgers import EventLedger, FillLedger, OrderLedger
from hlgateway.upstream.polling import PollBudget, PollSchedule, poll_weight
from hlgateway.upstream.recovery import rebuild_orders
from hlgateway.upstream.rest import RestError

log = logging.getLogger(__name__)

LEDGER_STREAMS = ("userNonFundingLedgerUpdates", "userFundings")
# The streams whose (re)subscribe may need what was missed read from REST.
RECOVERED_STREAMS = frozenset({"userFills", "orderUpdates", *LEDGER_STREAMS})
STREAMS_OF_CHANNEL: dict[str, tuple[str, ...]] = {
    USER_FILLS: ("userFills",),
    USER_ORDERS: ("orderUpdates",),
    ACCOUNT_UPDATES: ("clearinghouseState",),
    USER_LEDGER: LEDGER_STREAMS,
}


class Emitter(Protocol):
    def emit_fills(self, wallet: str, fills: list[wire.Fill]) -> None: ...
    def emit_order(self, wallet: str, action: str, order: wire.Order) -> None: ...
    def emit_account(self, account: wire.Account) -> None: ...
    def emit_ledger(self, wallet: str, events: list[wire.LedgerEvent]) -> None: ...


class Subscriber(Protocol):
    def acquire(self, subscription: dict[str, Any]) -> None: ...
    def release(self, subscription: dict[str, Any]) -> None: ...


class WalletRest(Protocol):
    """What wallets ask Hyperliquid's REST `/info` (`rest.InfoClient`)."""

    async def fills_since(self, user: str, start_ms: int) -> list[wire.Fill]: ...
    async def historical_orders(self, user: str) -> list[wire.HistoricalOrder]: ...
    async def account(self, user: str) -> wire.Account: ...
    async def ledger_since(self, user: str, start_ms: int) -> list[wire.LedgerEvent]: ...


def subscriptions_for(channel: str, wallet: str) -> list[dict[str, Any]]:
    return [_subscription(stream, wallet) for stream in STREAMS_OF_CHANNEL[channel]]


def _subscription(stream: str, wallet: str) -> dict[str, Any]:
    if stream == "userFills":
        return {"type": stream, "user": wallet, "aggregateByTime": False}
    return {"type": stream, "user": wallet}


@dataclass
class WalletState:
    wallet: str
    mode: str  # ws | poll
    orders_since_ms: int = 0  # where the wallet's user_orders stream starts (exchange ms)
    last_poll_ms: int = 0
    promoted: bool = False  # moved from polling onto the WebSocket
    channels: set[str] = field(default_factory=set)
    fills: FillLedger = field(default_factory=FillLedger)
    orders: OrderLedger = field(default_factory=OrderLedger)
    ledger: EventLedger = field(default_factory=EventLedger)
    acked: set[str] = field(default_factory=set)  # streams acked at least once
    holding_fills: int = 0  # recoveries running; live fills wait meanwhile
    holding_orders: int = 0
    holding_ledger: int = 0
    held_fills: list[wire.Fills] = field(default_factory=list)
    held_orders: list[wire.Order] = field(default_factory=list)
    held_ledger: list[wire.LedgerEntries] = field(default_factory=list)
    last_account: wire.Account | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class WalletFeeds:
    def __init__(
        self,
        upstream: Subscriber,
        emitter: Emitter,
        rest: Callable[[], WalletRest | None],
        *,
        max_ws_wallets: int = 10,
        poll_budget: PollBudget | None = None,
        retry: Backoff,
        clock_ms: Callable[[], int] = now_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin_ms: Callable[[], int] = lambda: CLOCK_MARGIN_MS,
    ) -> None:
        self._upstream = upstream
        # How far the exchange's clock may lag ours now (clock.ExchangeClock).
        self._margin = margin_ms
        self._emit = emitter
        self._rest = rest
        self._retry = retry
        self._now_ms = clock_ms
        self._sleep = sleep
        self.max_ws_wallets = max_ws_wallets
        self.schedule = PollSchedule(poll_budget or PollBudget())
        self._wallets: dict[str, WalletState] = {}
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a wallet is due before the poller's next turn
        self.recoveries = 0
        self.rest_failures = 0
        self.fills_recovered = 0
        self.ledger_recovered = 0

    # -- topics -----------------------------------------------------------
    def attach(
        self, channel: str, wallet: str, since_ms: int | None = None, *, placed: bool = False
    ) -> int | None:
        """A topic of `channel` for `wallet` starts (first subscriber); returns
        where a stream of events (fills, orders, ledger) delivers from.

        `since_ms`: deliver from then on, the exchange's time (default: from now,
        less the margin for the exchange's clock: clock.py). A node taking over a
        stream from another (scale-out), or started again where it had stopped,
        passes where the stream had been delivered to, so that what happened
        meanwhile is delivered; the broker's ledger drops what was given before.
        `placed`: the fleet placed it here having checked every node's capacity
        (broker/placement.py): served even if polling it exceeds the accepted
        latency (counted in `overLatency`), rather than refused and starved.
        """
        state = self._wallets.get(wallet)
        if state is None:
            mode = "ws" if self.ws_count < self.max_ws_wallets else "poll"
            if mode == "poll" and not placed:
                self._check_poll_capacity(channel)
            state = self._wallets[wallet] = WalletState(wallet, mode)
            if mode == "poll":
                log.info("wallet %s served by REST polling (WS user limit reached)", wallet)
        if channel in state.channels:
            return None
        # The stream's start (clock.py): history from before it is not news.
        start = start_from(self._now_ms(), self._margin()) if since_ms is None else since_ms
        if channel == USER_FILLS:
            state.fills = FillLedger(since_ms=start)
        elif channel == USER_ORDERS:
            state.orders = OrderLedger()
            state.orders_since_ms = start
        elif channel == USER_LEDGER:
            state.ledger = EventLedger(since_ms=start)
        if state.mode == "ws":
            acquired: list[dict[str, Any]] = []
            try:
                for subscription in subscriptions_for(channel, wallet):
                    self._upstream.acquire(subscription)
                    acquired.append(subscription)
            except Exception:
                for subscription in acquired:
                    self._upstream.release(subscription)
                if not state.channels:
                    del self._wallets[wallet]  # refused: leave no trace
                raise
            if since_ms is not None and channel == USER_FILLS:
                # Started where an earlier feed stopped (a restart, a handover): the
                # fills since then come from REST first (the snapshot may hold fewer),
                # in order, and what arrives meanwhile (the snapshot too) waits.
                state.holding_fills += 1
                self._spawn(state, self._recover_fills(state, start))
            elif since_ms is not None and channel == USER_LEDGER:
                state.holding_ledger += 1  # the same, for the ledger's two streams
                self._spawn(state, self._recover_ledger(state, start))
            state.channels.add(channel)
        else:
            state.channels.add(channel)
            self._poll(state)
        return start if channel in (USER_FILLS, USER_ORDERS, USER_LEDGER) else None

    @property
    def ws_count(self) -> int:
        return sum(1 for s in self._wallets.values() if s.mode == "ws")

    def _check_poll_capacity(self, channel: str) -> None:
        """Refuse a new polled wallet the budget cannot poll within the accepted latency."""
        budget = self.schedule.budget
        weight = self.schedule.cycle_weight + poll_weight({channel})
        if budget.fits(weight):
            return
        raise ProtocolError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            f"No upstream capacity for another wallet: {self.ws_count} on the WebSocket "
            f"(the per-IP limit) and {len(self.schedule)} polled every "
            f"{self.schedule.interval:.0f} s; one more would exceed "
            f"{budget.max_interval:.0f} s",
        )

    def detach(self, channel: str, wallet: str) -> None:
        state = self._wallets.get(wallet)
        if state is None or channel not in state.channels:
            return
        state.channels.discard(channel)
        if state.mode == "ws":
            for subscription in subscriptions_for(channel, wallet):
                self._upstream.release(subscription)
        state.acked.difference_update(STREAMS_OF_CHANNEL[channel])
        if not state.channels:
            for task in state.tasks:
                task.cancel()
            del self._wallets[wallet]
            self.schedule.remove(wallet)
            if state.mode == "ws":
                self._promote()
        elif state.mode == "poll":
            self.schedule.estimate(wallet, poll_weight(state.channels))

    def _promote(self) -> None:
        """A WebSocket slot is free: move the longest-polled wallet onto it.

        Its ledgers stay, so what polling delivered is not delivered again; the
        first acks rebuild what happened since its last poll (order transitions
        from REST; fills come with the userFills snapshot).
        """
        if self.ws_count >= self.max_ws_wallets:
            return
        state = next((s for s in self._wallets.values() if s.mode == "poll"), None)
        if state is None:
            return
        acquired: list[dict[str, Any]] = []
        try:
            for channel in sorted(state.channels):
                for subscription in subscriptions_for(channel, state.wallet):
                    self._upstream.acquire(subscription)
                    acquired.append(subscription)
        except ProtocolError as exc:
            for subscription in acquired:
                self._upstream.release(subscription)
            log.info("wallet %s stays polled: %s", state.wallet, exc.message)
            return
        state.mode = "ws"
        state.promoted = True
        self.schedule.remove(state.wallet)
        log.info("wallet %s moved from REST polling onto the WebSocket", state.wallet)

    def modes_summary(self) -> dict[str, Any]:
        """How many wallets are served each way, and how often polled ones are polled
        (counts only: /health names no wallet)."""
        polled = sum(1 for s in self._wallets.values() if s.mode == "poll")
        schedule = self.schedule
        interval = schedule.interval
        now = self._now_ms() / 1000
        return {
            "websocket": len(self._wallets) - polled,
            "websocketSlots": self.max_ws_wallets,
            "restPolled": polled,
            # Every polled wallet is polled this often: the latency of its fills.
            "pollIntervalSeconds": round(interval, 2) if math.isfinite(interval) else None,
            "pollLagSeconds": round(schedule.lag(now), 2),
            "pollWeightPerMinute": round(schedule.cycle_weight * 60 / interval, 1)
            if polled and math.isfinite(interval)
            else 0.0,
            "maxPollIntervalSeconds": schedule.budget.max_interval,
            "overLatency": schedule.over_latency(),
            "recoveries": self.recoveries,
            "restFailures": self.rest_failures,
        }

    def recovering(self) -> bool:
        """True while any wallet is rebuilding a gap from REST."""
        return any(
            s.holding_orders or s.holding_fills or s.holding_ledger for s in self._wallets.values()
        )

    def mode_of(self, wallet: str) -> str | None:
        state = self._wallets.get(wallet)
        return state.mode if state else None

    async def stop(self) -> None:
        tasks = [t for s in self._wallets.values() for t in s.tasks]
        if self._poller is not None:
            tasks.append(self._poller)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- live events ------------------------------------------------------
    def on_fills(self, event: wire.Fills) -> None:
        state = self._wallets.get(event.wallet)
        if state is None or USER_FILLS not in state.channels:
            return
        if state.holding_fills:
            state.held_fills.append(event)
            return
        self._deliver_fills(state, event.fills, live=not event.is_snapshot)

    def on_orders(self, event: wire.OrderUpdates) -> None:
        for order in event.orders:
            state = self._wallets.get(order.wallet)
            if state is None or USER_ORDERS not in state.channels:
                continue
            if state.holding_orders:
                state.held_orders.append(order)
            else:
                self._deliver_order(state, order)

    def on_ledger(self, event: wire.LedgerEntries) -> None:
        state = self._wallets.get(event.wallet)
        if state is None or USER_LEDGER not in state.channels:
            return
        if state.holding_ledger:
            state.held_ledger.append(event)
            return
        self._deliver_ledger(state, event.events, live=not event.is_snapshot)

    def on_account(self, account: wire.Account) -> None:
        state = self._wallets.get(account.wallet)
        if state is not None and ACCOUNT_UPDATES in state.channels:
            state.last_account = account
            self._emit.emit_account(account)

    def on_ack(self, subscription: dict[str, Any], gap_from_ms: int | None) -> None:
        """A user stream is (re)subscribed upstream: recover what it may have missed."""
        stream = subscription.get("type")
        user = subscription.get("user")
        if not isinstance(user, str) or stream not in RECOVERED_STREAMS:
            return
        state = self._wallets.get(user.lower())
        if state is None or state.mode != "ws":
            return
        first = stream not in state.acked
        state.acked.add(stream)
        if stream in LEDGER_STREAMS:
            if not first and gap_from_ms is not None:
                # Like fills: the snapshot covers recent entries, REST a longer outage.
                state.holding_ledger += 1
                since = min(gap_from_ms, state.ledger.last_time)
                self._spawn(state, self._recover_ledger(state, since))
            return
        if stream == "orderUpdates":
            # No snapshot on this stream: the first subscribe has a gap too,
            # from the topic's start to the ack.
            start = state.orders_since_ms
            if first and state.promoted and state.last_poll_ms:
                since = reach_back(state.last_poll_ms, start, self._margin())
            elif first or gap_from_ms is None:
                since = start
            else:
                since = reach_back(gap_from_ms, start, self._margin())
            # Hold from now, not from when the task first runs: an update arriving
            # in between would otherwise overtake the transitions being rebuilt.
            state.holding_orders += 1
            self._spawn(state, self._recover_orders(state, since))
        elif not first and gap_from_ms is not None:
            # The snapshot covers recent fills; REST covers an outage longer than it.
            state.holding_fills += 1
            self._spawn(state, self._recover_fills(state, min(gap_from_ms, state.fills.last_time)))

    # -- delivery ---------------------------------------------------------
    def _deliver_fills(self, state: WalletState, fills: list[wire.Fill], live: bool) -> int:
        fresh = state.fills.accept(fills, live)
        if fresh:
            self._emit.emit_fills(state.wallet, fresh)
        return len(fresh)

    def _deliver_ledger(
        self, state: WalletState, events: list[wire.LedgerEvent], live: bool
    ) -> int:
        fresh = state.ledger.accept(events, live)
        if fresh:
            self._emit.emit_ledger(state.wallet, fresh)
        return len(fresh)

    def _deliver_order(self, state: WalletState, order: wire.Order) -> None:
        action = state.orders.accept(order)
        if action is not None:
            self._emit.emit_order(state.wallet, action, order)

    # -- recovery ---------------------------------------------------------
    def _spawn(self, state: WalletState, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _with_retries(self, what: str, wallet: str, attempt: Callable[[], Any]) -> Any:
        """`attempt()` until REST answers (reconnect.retrying: never gives up; the
        wallet's detach cancels it)."""

        def failed(exc: Exception) -> None:
            self.rest_failures += 1
            log.warning("%s for %s failed: %s; retrying", what, wallet, exc)

        async def call() -> Any:
            _require(self._rest())
            return await attempt()

        return await retrying(
            call,
            Reconnect(self._retry),
            failed=failed,
            retry_on=(RestError,),
            wait=sleeping(self._sleep),
        )

    async def _recover_orders(self, state: WalletState, since_ms: int) -> None:
        """Rebuild from `since_ms`; the caller took the hold (`holding_orders`)."""
        try:
            history, fills = await self._with_retries(
                "order recovery", state.wallet, lambda: self._order_sources(state.wallet, since_ms)
            )
            self.recoveries += 1
            for order in rebuild_orders(state.orders, since_ms, history, fills):
                self._deliver_order(state, order)
        finally:
            state.holding_orders -= 1
            if not state.holding_orders:
                held, state.held_orders = state.held_orders, []
                for order in held:
                    self._deliver_order(state, order)

    async def _order_sources(
        self, wallet: str, since_ms: int
    ) -> tuple[list[wire.HistoricalOrder], list[wire.Fill]]:
        rest = self._rest()
        assert rest is not None
        # Fills first: an order that fills between the two calls is then seen
        # as filled in history with its last fill missing, and the live stream
        # (held meanwhile) or the next recovery brings that fill.
        fills = await rest.fills_since(wallet, since_ms)
        history = await rest.historical_orders(wallet)
        return history, fills

    async def _recover_fills(self, state: WalletState, heard_ms: int) -> None:
        """Fetch the fills from a margin before `heard_ms`, never before the stream's
        start (clock.py); the caller took the hold (`holding_fills`)."""
        try:
            rest = self._rest
            since = reach_back(heard_ms, state.fills.since_ms, self._margin())
            fills = await self._with_retries(
                "fill recovery",
                state.wallet,
                lambda: _require(rest()).fills_since(state.wallet, since),
            )
            self.recoveries += 1
            # Fills the live stream missed and REST brought back (a metric).
            self.fills_recovered += self._deliver_fills(state, fills, live=False)
        finally:
            state.holding_fills -= 1
            if not state.holding_fills:
                held, state.held_fills = state.held_fills, []
                for event in held:
                    self._deliver_fills(state, event.fills, live=not event.is_snapshot)

    async def _recover_ledger(self, state: WalletState, heard_ms: int) -> None:
        """Fetch the ledger events from a margin before `heard_ms`, never before the
        stream's start; the caller took the hold (`holding_ledger`)."""
        try:
            rest = self._rest
            since = reach_back(heard_ms, state.ledger.since_ms, self._margin())
            events = await self._with_retries(
                "ledger recovery",
                state.wallet,
                lambda: _require(rest()).ledger_since(state.wallet, since),
            )
            self.recoveries += 1
            self.ledger_recovered += self._deliver_ledger(state, events, live=False)
        finally:
            state.holding_ledger -= 1
            if not state.holding_ledger:
                held, state.held_ledger = state.held_ledger, []
                for entries in held:
                    self._deliver_ledger(state, entries.events, live=not entries.is_snapshot)

    # -- reading back for one topic ----------------------------------------
    # A topic let go while its wallet's feed went on for another topic comes back
    # behind that feed: what it missed is read back for it alone (feeds.py), from
    # where its own stream stopped. The wallet's ledgers are not asked: they know
    # these events as delivered (to the other topic); the topic's own exactly-once
    # ledger in the broker drops what it had.
    async def read_back_fills(self, wallet: str, since_ms: int) -> list[wire.Fill]:
        """The wallet's fills stamped at or after `since_ms`, oldest first."""
        rest = self._rest
        fills: list[wire.Fill] = await self._with_retries(
            "fill read-back", wallet, lambda: _require(rest()).fills_since(wallet, since_ms)
        )
        self.recoveries += 1
        return sorted(
            (f for f in fills if f.timestamp >= since_ms), key=lambda f: (f.timestamp, f.id)
        )

    async def read_back_orders(self, wallet: str, since_ms: int) -> list[tuple[str, wire.Order]]:
        """The wallet's order transitions from `since_ms` on, oldest first, each with
        its action, rebuilt from REST as after a gap (recovery.py)."""
        history, fills = await self._with_retries(
            "order read-back", wallet, lambda: self._order_sources(wallet, since_ms)
        )
        self.recoveries += 1
        ledger = OrderLedger()
        out: list[tuple[str, wire.Order]] = []
        for order in rebuild_orders(ledger, since_ms, history, fills):
            action = ledger.accept(order)
            if action is not None:
                out.append((action, order))
        return out

    async def read_back_ledger(self, wallet: str, since_ms: int) -> list[wire.LedgerEvent]:
        """The wallet's ledger events stamped at or after `since_ms`, oldest first."""
        rest = self._rest
        events: list[wire.LedgerEvent] = await self._with_retries(
            "ledger read-back", wallet, lambda: _require(rest()).ledger_since(wallet, since_ms)
        )
        self.recoveries += 1
        return sorted((e for e in events if e.time >= since_ms), key=lambda e: (e.time, e.id))

    # -- polling ----------------------------------------------------------
    def _poll(self, state: WalletState) -> None:
        """Put a polled wallet (or its new channel) into the schedule and the poller to work."""
        weight = poll_weight(state.channels)
        if state.wallet in self.schedule:
            self.schedule.estimate(state.wallet, weight)
        else:
            self.schedule.add(state.wallet, weight, self._now_ms() / 1000)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop())
        else:
            self._wake.set()  # it may be waiting for a later turn

    async def _poll_loop(self) -> None:
        while True:
            if not self.schedule:
                self._poller = None
                return
            now = self._now_ms() / 1000
            wallet = self.schedule.due(now)
            state = self._wallets.get(wallet) if wallet is not None else None
            if state is not None:
                await self._poll_once(state)
                continue
            if wallet is not None:
                self.schedule.remove(wallet)  # gone meanwhile
                continue
            next_at = self.schedule.next_at()
            await self._nap(max(0.0, (next_at or now) - now))

    async def _nap(self, seconds: float) -> None:
        """Sleep until the next wallet's turn, or until a new wallet is due."""
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _poll_once(self, state: WalletState) -> None:
        rest = self._rest()
        started_ms = self._now_ms()
        if rest is None:
            self.schedule.failed(state.wallet, started_ms / 1000)
            return
        channels = state.channels
        fills: list[wire.Fill] = []
        history: list[wire.HistoricalOrder] = []
        ledger: list[wire.LedgerEvent] = []
        try:
            # Each stream reads from its start, or from a margin before the last poll
            # (clock.py), never before its start: a channel added to a wallet polled
            # for others starts where it started, not at that wallet's last poll.
            margin = self._margin()
            fills_from = _poll_from(state, state.fills.since_ms, margin)
            orders_from = _poll_from(state, state.orders_since_ms, margin)
            if USER_FILLS in channels or USER_ORDERS in channels:
                since = min(
                    fills_from if USER_FILLS in channels else orders_from,
                    orders_from if USER_ORDERS in channels else fills_from,
                )
                fills = await rest.fills_since(state.wallet, since)
                if USER_FILLS in channels:
                    self._deliver_fills(state, fills, live=False)
                if USER_ORDERS in channels:
                    history = await rest.historical_orders(state.wallet)
                    for order in rebuild_orders(state.orders, orders_from, history, fills):
                        self._deliver_order(state, order)
            if USER_LEDGER in channels:
                since = _poll_from(state, state.ledger.since_ms, margin)
                ledger = await rest.ledger_since(state.wallet, since)
                self._deliver_ledger(state, ledger, live=False)
            if ACCOUNT_UPDATES in state.channels:
                account = await rest.account(state.wallet)
                if state.last_account is None or _account_changed(state.last_account, account):
                    self.on_account(account)
            state.last_poll_ms = started_ms
            weight = poll_weight(state.channels, len(fills), len(history), len(ledger))
            self.schedule.polled(state.wallet, started_ms / 1000, weight)
        except RestError as exc:
            self.rest_failures += 1
            self.schedule.failed(state.wallet, started_ms / 1000)
            log.warning("polling %s failed: %s", state.wallet, exc)


def _poll_from(state: WalletState, start_ms: int, margin_ms: int) -> int:
    """Where a poll of a stream starting at `start_ms` reads from."""
    if not state.last_poll_ms:
        return start_ms
    return reach_back(state.last_poll_ms, start_ms, margin_ms)


def _require(rest: WalletRest | None) -> WalletRest:
    if rest is None:
        raise RestError("REST client not started")
    return rest


def _account_changed(old: wire.Account, new: wire.Account) -> bool:
    return (old.accountValue, old.marginUsed, old.withdrawable, old.positions) != (
        new.accountValue,
        new.marginUsed,
        new.withdrawable,
        new.positions,
    )

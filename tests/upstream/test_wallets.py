"""Wallet recovery holds without sockets: a fake REST whose answers the test
releases, an injected clock and an injected retry sleep.

While a gap is rebuilt from REST, live updates of that stream are held; once
the rebuild is delivered, the held ones follow, each transition and fill once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from hlgateway.backoff import Backoff
from hlgateway.protocol.channels import USER_FILLS, USER_LEDGER, USER_ORDERS
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.upstream import wire
from hlgateway.upstream.clock import CLOCK_MARGIN_MS
from hlgateway.upstream.polling import PollBudget
from hlgateway.upstream.rest import RestError
from hlgateway.upstream.wallets import WalletFeeds

W = "0x" + "ab" * 20
NOW = 10_000  # the gateway's clock when a test begins (ms)
START = NOW - CLOCK_MARGIN_MS  # where a stream subscribed then starts, on the exchange's clock


def fill(tid: int, oid: int, size: float, ts: int) -> wire.Fill:
    return wire.Fill(tid, oid, "BTC", "buy", 100.0, size, 0.01, 0.0, ts, W)


def deposit(n: int, ts: int) -> wire.LedgerEvent:
    return wire.ledger_event(ts, f"0x{n:064x}", {"type": "deposit", "usdc": f"{n}.0"}, W)


def funding(coin: str, ts: int) -> wire.LedgerEvent:
    return wire.funding_event(ts, coin, "-0.5", "1.0", "0.0001", W)


def order(oid: int, status: str, remaining: float, ts: int, amount: float = 1.0) -> wire.Order:
    filled = amount - remaining
    return wire.Order(oid, "BTC", "buy", amount, remaining, filled, 100.0, status, ts, W)


class FakeRest:
    """Answers from lists the test fills; each call waits for `release` if set."""

    def __init__(self) -> None:
        self.fills: list[wire.Fill] = []
        self.history: list[wire.HistoricalOrder] = []
        self.ledger: list[wire.LedgerEvent] = []
        self.calls: list[tuple[str, int | None]] = []
        self.release: asyncio.Event | None = None
        self.failures = 0  # the next calls that fail

    async def _turn(self) -> None:
        if self.release is not None:
            await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise RestError("HTTP 502")

    async def fills_since(self, user: str, start_ms: int) -> list[wire.Fill]:
        self.calls.append(("fills", start_ms))
        await self._turn()
        return [f for f in self.fills if f.timestamp >= start_ms]

    async def historical_orders(self, user: str) -> list[wire.HistoricalOrder]:
        self.calls.append(("history", None))
        await self._turn()
        return list(self.history)

    async def account(self, user: str) -> wire.Account:
        raise AssertionError("not asked in these tests")

    async def ledger_since(self, user: str, start_ms: int) -> list[wire.LedgerEvent]:
        self.calls.append(("ledger", start_ms))
        await self._turn()
        return [e for e in self.ledger if e.time >= start_ms]


class Emitted:
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def emit_fills(self, wallet: str, fills: list[wire.Fill]) -> None:
        self.log.append(("fills", [f.id for f in fills]))

    def emit_order(self, wallet: str, action: str, order: wire.Order) -> None:
        self.log.append(("order", order.id, action))

    def emit_account(self, account: wire.Account) -> None:
        self.log.append(("account",))

    def emit_ledger(self, wallet: str, events: list[wire.LedgerEvent]) -> None:
        self.log.append(("ledger", [e.id for e in events]))


class Upstream:
    def __init__(self) -> None:
        self.subscriptions: list[dict[str, Any]] = []

    def acquire(self, subscription: dict[str, Any]) -> None:
        self.subscriptions.append(subscription)

    def release(self, subscription: dict[str, Any]) -> None:
        self.subscriptions.remove(subscription)


class Harness:
    def __init__(
        self,
        rest: FakeRest | None = None,
        *,
        started: bool = True,
        max_ws_wallets: int = 10,
        budget: PollBudget | None = None,
        time_passes: bool = False,
    ) -> None:
        self.rest = rest or FakeRest()
        self.started = started
        self.out = Emitted()
        self.upstream = Upstream()
        self.now_ms = NOW
        self.margin = CLOCK_MARGIN_MS  # what the exchange's pushed frames allow
        self.delays: list[float] = []
        # True: each sleep moves the clock by what it asked (the poller's turns).
        self.time_passes = time_passes
        self.feeds = WalletFeeds(
            self.upstream,
            self.out,
            lambda: self.rest if self.started else None,
            max_ws_wallets=max_ws_wallets,
            poll_budget=budget,
            retry=Backoff.full_jitter(0.5, 4.0),
            clock_ms=lambda: self.now_ms,
            sleep=self._sleep,
            margin_ms=lambda: self.margin,
        )

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.time_passes:
            self.now_ms += round(seconds * 1000)
        await asyncio.sleep(0)  # a turn of the loop, no waiting

    async def settle(self) -> None:
        """Run the loop until no recovery is in progress (or it is stuck on `release`)."""
        for _ in range(200):
            if not self.feeds.recovering():
                return
            await asyncio.sleep(0)


async def test_live_orders_wait_for_the_first_recovery_then_follow_it_once() -> None:
    h = Harness()
    h.rest.release = asyncio.Event()
    h.feeds.attach(USER_ORDERS, W)
    assert h.upstream.subscriptions == [{"type": "orderUpdates", "user": W}]
    # Order 1 was placed and filled between the topic's start and the ack.
    h.rest.history = [wire.HistoricalOrder(order(1, "filled", 0.0, 10_600), created_at=10_500)]
    h.rest.fills = [fill(10, 1, 1.0, 10_600)]
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    await asyncio.sleep(0)
    assert h.feeds.recovering()
    # Live updates meanwhile: a repeat of order 1's start, and a new order 2.
    h.feeds.on_orders(
        wire.OrderUpdates([order(1, "open", 1.0, 10_500), order(2, "open", 1.0, 10_700)])
    )
    assert h.out.log == []  # held
    h.rest.release.set()
    await h.settle()
    assert not h.feeds.recovering()
    assert h.out.log == [("order", 1, "created"), ("order", 1, "filled"), ("order", 2, "created")]
    # The first recovery looks from the stream's start, fills before history.
    assert h.rest.calls == [("fills", START), ("history", None)]
    assert h.feeds.recoveries == 1
    # After the hold, live updates pass straight through.
    h.feeds.on_orders(wire.OrderUpdates([order(2, "canceled", 1.0, 10_800)]))
    assert h.out.log[-1] == ("order", 2, "cancelled")


async def test_the_hold_starts_with_the_ack_not_with_the_recovery_task() -> None:
    h = Harness()
    h.rest.history = [wire.HistoricalOrder(order(3, "filled", 0.0, 10_300), created_at=10_200)]
    h.rest.fills = [fill(30, 3, 1.0, 10_300)]
    h.feeds.attach(USER_ORDERS, W)
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    # In the same turn of the loop, before the recovery task has run: the live
    # final state must not overtake the rebuilt history (its `created` would be lost).
    assert h.feeds.recovering()
    h.feeds.on_orders(wire.OrderUpdates([order(3, "filled", 0.0, 10_300)]))
    assert h.out.log == []
    await h.settle()
    assert h.out.log == [("order", 3, "created"), ("order", 3, "filled")]


async def test_a_reconnect_recovers_orders_from_the_gap() -> None:
    h = Harness()
    h.feeds.attach(USER_ORDERS, W)
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    await h.settle()
    h.rest.calls.clear()
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=50_000)
    await h.settle()
    assert h.rest.calls[0] == ("fills", 50_000 - CLOCK_MARGIN_MS)


async def test_fills_missed_in_a_gap_come_before_the_held_live_ones() -> None:
    h = Harness()
    h.feeds.attach(USER_FILLS, W)
    h.feeds.on_ack({"type": "userFills", "user": W, "aggregateByTime": False}, gap_from_ms=None)
    assert not h.feeds.recovering()  # the first subscribe's snapshot covers it
    h.feeds.on_fills(wire.Fills(W, True, [fill(1, 1, 0.5, 7_900), fill(2, 1, 0.5, 10_100)]))
    assert h.out.log == [("fills", [2])]  # the snapshot's history from before the start is not news
    # The link dropped at 15_000 and came back; fills 3 and 4 happened meanwhile.
    h.rest.release = asyncio.Event()
    h.rest.fills = [fill(2, 1, 0.5, 10_100), fill(3, 2, 1.0, 15_500), fill(4, 2, 1.0, 16_000)]
    h.feeds.on_ack({"type": "userFills", "user": W, "aggregateByTime": False}, gap_from_ms=15_000)
    await asyncio.sleep(0)
    assert h.feeds.recovering()
    h.feeds.on_fills(wire.Fills(W, True, [fill(3, 2, 1.0, 15_500), fill(5, 3, 1.0, 17_000)]))
    h.feeds.on_fills(wire.Fills(W, False, [fill(6, 3, 1.0, 17_100)]))
    assert h.out.log == [("fills", [2])]  # held
    h.rest.release.set()
    await h.settle()
    assert h.out.log == [("fills", [2]), ("fills", [3, 4]), ("fills", [5]), ("fills", [6])]
    # From the older of the gap and the newest fill seen, less the margin.
    assert h.rest.calls == [("fills", 10_100 - CLOCK_MARGIN_MS)]


async def test_rest_failures_retry_with_the_backoff_and_keep_holding() -> None:
    h = Harness()
    h.rest.failures = 3
    h.rest.history = [wire.HistoricalOrder(order(7, "open", 1.0, 10_500), created_at=10_500)]
    h.feeds.attach(USER_ORDERS, W)
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    h.feeds.on_orders(wire.OrderUpdates([order(7, "open", 0.5, 10_600)]))
    await h.settle()
    assert h.feeds.rest_failures == 3 and h.feeds.recoveries == 1
    assert len(h.delays) == 3 and all(0 <= d <= 4.0 for d in h.delays)
    assert h.out.log == [("order", 7, "created"), ("order", 7, "updated")]


async def test_recovery_waits_for_rest_to_start() -> None:
    h = Harness(started=False)
    h.feeds.attach(USER_ORDERS, W)
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert h.feeds.recovering() and h.rest.calls == []
    assert h.delays  # retrying on the backoff, not spinning
    assert max(h.delays) <= 4.0
    h.started = True
    await h.settle()
    assert not h.feeds.recovering() and h.feeds.recoveries == 1


async def test_detaching_during_a_recovery_ends_it_and_leaves_no_trace() -> None:
    h = Harness()
    h.rest.release = asyncio.Event()
    h.feeds.attach(USER_ORDERS, W)
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    await asyncio.sleep(0)
    assert h.feeds.recovering()
    h.feeds.detach(USER_ORDERS, W)
    assert not h.feeds.recovering()
    assert h.upstream.subscriptions == [] and h.feeds.mode_of(W) is None
    h.rest.release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert h.out.log == [] and h.feeds.recoveries == 0


@pytest.mark.parametrize("extra", [0, 3])
async def test_wallets_beyond_the_websocket_limit_are_polled(extra: int) -> None:
    h = Harness(max_ws_wallets=2)
    wallets = [f"0x{i:040x}" for i in range(2 + extra)]
    for wallet in wallets:
        h.feeds.attach(USER_FILLS, wallet)
    await h.feeds.stop()
    assert [h.feeds.mode_of(w) for w in wallets] == ["ws", "ws"] + ["poll"] * extra
    assert len(h.upstream.subscriptions) == 2
    assert h.feeds.modes_summary()["restPolled"] == extra


# A budget of 400 weight a minute: 360 after the recoveries' share, less 120 for
# the market context: 4 weight a second for polling. 10 s accepted: 40 a round.
SMALL = PollBudget(weight_per_minute=400, min_interval=2, max_interval=10)


async def polls_of(h: Harness, wallet: str, count: int) -> list[int]:
    """Run the poller until `wallet` was asked for its fills `count` times; when (ms)."""
    times: list[int] = []
    original = h.rest.fills_since

    async def fills_since(user: str, start_ms: int) -> list[wire.Fill]:
        if user == wallet:
            times.append(h.now_ms)
        return await original(user, start_ms)

    h.rest.fills_since = fills_since  # type: ignore[method-assign]
    for _ in range(10_000):
        if len(times) >= count:
            break
        await asyncio.sleep(0)
    h.rest.fills_since = original  # type: ignore[method-assign]
    return times


async def test_polled_wallets_are_polled_as_often_as_the_budget_allows() -> None:
    h = Harness(max_ws_wallets=0, budget=SMALL, time_passes=True)
    a, b = "0x" + "01" * 20, "0x" + "02" * 20
    h.feeds.attach(USER_FILLS, a)
    # Alone: 20 weight a round at 4 a second: every 5 s (the minimum is 2 s).
    times = await polls_of(h, a, 3)
    assert [t - times[0] for t in times] == [0, 5_000, 10_000]
    assert h.feeds.modes_summary()["pollIntervalSeconds"] == 5.0
    h.feeds.attach(USER_FILLS, b)  # polled at once, then both every 10 s
    times = await polls_of(h, b, 3)
    assert [t - times[0] for t in times] == [0, 10_000, 20_000]
    summary = h.feeds.modes_summary()
    assert summary["restPolled"] == 2 and summary["websocket"] == 0
    assert summary["pollIntervalSeconds"] == 10.0 and summary["overLatency"] == 0
    assert summary["pollWeightPerMinute"] == 240.0  # 4 a second: the whole share
    await h.feeds.stop()


async def test_a_wallet_the_budget_cannot_poll_in_time_is_refused_with_the_reason() -> None:
    h = Harness(max_ws_wallets=1, budget=SMALL)
    wallets = [f"0x{n:040x}" for n in range(4)]
    h.feeds.attach(USER_FILLS, wallets[0])  # the WebSocket slot
    h.feeds.attach(USER_FILLS, wallets[1])  # polled: 20 a round
    h.feeds.attach(USER_FILLS, wallets[2])  # polled: 40 a round, 10 s: the most accepted
    with pytest.raises(ProtocolError) as refused:
        h.feeds.attach(USER_FILLS, wallets[3])
    assert refused.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "1 on the WebSocket" in refused.value.message
    assert "2 polled every 10 s" in refused.value.message
    assert h.feeds.mode_of(wallets[3]) is None  # nothing kept
    # A wallet already polled may add a channel.
    h.feeds.attach(USER_ORDERS, wallets[1])
    assert h.feeds.modes_summary()["overLatency"] == 1  # now 80 a round: 20 s
    await h.feeds.stop()


async def test_a_freed_websocket_slot_takes_the_polled_wallet_with_its_ledgers() -> None:
    h = Harness(max_ws_wallets=1, budget=SMALL, time_passes=True)
    first, polled = "0x" + "0a" * 20, "0x" + "0b" * 20
    h.feeds.attach(USER_FILLS, first)
    h.feeds.attach(USER_ORDERS, polled)
    h.rest.history = [wire.HistoricalOrder(order(5, "open", 1.0, 10_500), created_at=10_500)]
    await polls_of(h, polled, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert h.out.log == [("order", 5, "created")]
    last_poll = h.feeds._wallets[polled].last_poll_ms
    h.feeds.detach(USER_FILLS, first)
    assert h.feeds.mode_of(polled) == "ws"
    assert h.upstream.subscriptions == [{"type": "orderUpdates", "user": polled}]
    assert h.feeds.modes_summary()["restPolled"] == 0
    # The first ack rebuilds from the last poll; what polling gave is not repeated.
    h.rest.calls.clear()
    now = h.now_ms
    h.rest.history.append(wire.HistoricalOrder(order(6, "open", 1.0, now), created_at=now))
    h.feeds.on_ack({"type": "orderUpdates", "user": polled}, gap_from_ms=None)
    await h.settle()
    assert h.rest.calls[0] == ("fills", last_poll - CLOCK_MARGIN_MS)
    assert h.out.log == [("order", 5, "created"), ("order", 6, "created")]


LEDGER_ACKS = (
    {"type": "userNonFundingLedgerUpdates", "user": W},
    {"type": "userFundings", "user": W},
)


def entries(stream: str, snapshot: bool, *events: wire.LedgerEvent) -> wire.LedgerEntries:
    return wire.LedgerEntries(W, stream, snapshot, list(events))


async def test_ledger_streams_each_prime_then_deliver_every_event_once() -> None:
    h = Harness()
    h.feeds.attach(USER_LEDGER, W)
    assert h.upstream.subscriptions == list(LEDGER_ACKS)
    for ack in LEDGER_ACKS:
        h.feeds.on_ack(ack, gap_from_ms=None)
    assert not h.feeds.recovering()  # first subscribes: their snapshots cover it
    # Each stream's first snapshot: only what happened from the stream's start.
    h.feeds.on_ledger(
        entries("userNonFundingLedgerUpdates", True, deposit(1, 7_900), deposit(2, 10_100))
    )
    h.feeds.on_ledger(entries("userFundings", True, funding("BTC", 7_800), funding("ETH", 10_200)))
    assert h.out.log == [
        ("ledger", [deposit(2, 10_100).id]),
        ("ledger", [funding("ETH", 10_200).id]),
    ]
    # A later snapshot (a resubscribe) and live frames: only what is new.
    h.feeds.on_ledger(
        entries("userNonFundingLedgerUpdates", True, deposit(2, 10_100), deposit(3, 10_300))
    )
    h.feeds.on_ledger(
        entries("userFundings", False, funding("ETH", 10_200), funding("SOL", 10_400))
    )
    assert h.out.log[2:] == [
        ("ledger", [deposit(3, 10_300).id]),
        ("ledger", [funding("SOL", 10_400).id]),
    ]


async def test_a_gap_in_the_ledger_is_read_from_rest_before_the_held_live_events() -> None:
    h = Harness()
    h.feeds.attach(USER_LEDGER, W)
    for ack in LEDGER_ACKS:
        h.feeds.on_ack(ack, gap_from_ms=None)
    h.feeds.on_ledger(entries("userNonFundingLedgerUpdates", True, deposit(1, 10_100)))
    # The link dropped at 15_000; a deposit and a funding payment happened meanwhile.
    h.rest.release = asyncio.Event()
    h.rest.ledger = [deposit(1, 10_100), deposit(2, 15_500), funding("BTC", 16_000)]
    h.feeds.on_ack(LEDGER_ACKS[0], gap_from_ms=15_000)
    await asyncio.sleep(0)
    assert h.feeds.recovering()
    h.feeds.on_ledger(entries("userNonFundingLedgerUpdates", True, deposit(2, 15_500)))
    h.feeds.on_ledger(entries("userNonFundingLedgerUpdates", False, deposit(3, 17_000)))
    assert h.out.log == [("ledger", [deposit(1, 10_100).id])]  # held
    h.rest.release.set()
    await h.settle()
    assert h.out.log[1:] == [
        ("ledger", [deposit(2, 15_500).id, funding("BTC", 16_000).id]),
        ("ledger", [deposit(3, 17_000).id]),
    ]
    assert h.rest.calls == [("ledger", 10_100 - CLOCK_MARGIN_MS)]
    assert h.feeds.ledger_recovered == 2


async def test_a_polled_wallets_ledger_comes_from_rest_once() -> None:
    h = Harness()
    h.feeds.max_ws_wallets = 0
    h.rest.ledger = [deposit(1, 7_900), deposit(2, 10_200)]
    h.feeds.attach(USER_LEDGER, W)
    assert h.feeds.mode_of(W) == "poll" and h.upstream.subscriptions == []
    for _ in range(10):
        await asyncio.sleep(0)
    assert h.out.log == [("ledger", [deposit(2, 10_200).id])]
    h.rest.ledger.append(funding("BTC", 10_300))
    h.now_ms = 16_000  # its next turn: one poll interval (5 s) after the first
    for _ in range(20):
        await asyncio.sleep(0)
    assert h.out.log == [
        ("ledger", [deposit(2, 10_200).id]),
        ("ledger", [funding("BTC", 10_300).id]),
    ]
    await h.feeds.stop()


# -- where a stream starts (upstream/clock.py), with the exchange's clock skewed --


@pytest.mark.parametrize("skew", [-1_500, 0, 1_500])  # the exchange's clock minus ours
async def test_an_order_placed_just_after_the_subscribe_arrives_whole_however_skewed(
    skew: int,
) -> None:
    h = Harness()
    assert h.feeds.attach(USER_ORDERS, W) == START
    assert h.feeds.attach(USER_FILLS, W) == START
    # 100 ms after the subscribe, before the upstream acks: order 1 is placed and
    # fills; order 2 rests. Order 3 was placed and filled long before anyone watched.
    placed = NOW + 100 + skew
    h.rest.history = [
        wire.HistoricalOrder(order(1, "filled", 0.0, placed + 5), created_at=placed),
        wire.HistoricalOrder(order(2, "open", 1.0, placed + 10), created_at=placed + 10),
        wire.HistoricalOrder(order(3, "filled", 0.0, NOW - 9_000 + skew), NOW - 9_100 + skew),
    ]
    old = fill(30, 3, 1.0, NOW - 9_000 + skew)
    h.rest.fills = [old, fill(10, 1, 1.0, placed + 5)]
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    h.feeds.on_ack({"type": "userFills", "user": W, "aggregateByTime": False}, gap_from_ms=None)
    h.feeds.on_fills(wire.Fills(W, True, list(h.rest.fills)))  # the snapshot holds history
    await h.settle()
    assert h.out.log == [
        ("fills", [10]),
        ("order", 1, "created"),
        ("order", 1, "filled"),
        ("order", 2, "created"),
    ]
    assert h.rest.calls[0] == ("fills", START)
    # Live copies of what was read back are not news; a live push is, whatever its stamp.
    h.feeds.on_orders(wire.OrderUpdates([order(2, "open", 1.0, placed + 10)]))
    h.feeds.on_fills(wire.Fills(W, False, [fill(10, 1, 1.0, placed + 5)]))
    h.feeds.on_orders(wire.OrderUpdates([order(2, "canceled", 1.0, START - 500)]))
    h.feeds.on_fills(wire.Fills(W, False, [fill(11, 4, 1.0, START - 500)]))
    assert h.out.log[4:] == [("order", 2, "cancelled"), ("fills", [11])]


async def test_a_poll_never_reads_back_before_the_streams_start() -> None:
    h = Harness(max_ws_wallets=0, budget=SMALL, time_passes=True)
    h.rest.fills = [fill(1, 1, 1.0, START - 1), fill(2, 1, 1.0, START), fill(3, 1, 1.0, NOW)]
    assert h.feeds.attach(USER_FILLS, W) == START
    times = await polls_of(h, W, 3)
    # Just after the third poll, stamped earlier by an exchange clock a second behind.
    h.rest.fills.append(fill(4, 2, 1.0, times[2] - 1_000))
    times += await polls_of(h, W, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    await h.feeds.stop()
    # The first poll from the start; the later ones a margin before the last, never
    # before the start: the fill stamped before it is never news.
    reads = [since for kind, since in h.rest.calls if kind == "fills" and since is not None]
    assert reads[:4] == [START] + [max(START, t - CLOCK_MARGIN_MS) for t in times[:3]]
    assert min(reads) == START
    assert h.out.log == [("fills", [2, 3]), ("fills", [4])]


async def test_a_channel_added_to_a_polled_wallet_starts_at_its_own_start() -> None:
    h = Harness(max_ws_wallets=0, budget=SMALL, time_passes=True)
    h.feeds.attach(USER_ORDERS, W)
    (first,) = await polls_of(h, W, 1)
    # A second later the wallet's fills are wanted too: they start then, not at the
    # orders' start nor at the last poll.
    h.now_ms = first + 1_000
    fills_start = h.feeds.attach(USER_FILLS, W)
    assert fills_start == first + 1_000 - CLOCK_MARGIN_MS
    h.rest.fills = [fill(1, 1, 1.0, fills_start - 1), fill(2, 1, 1.0, fills_start)]
    await polls_of(h, W, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    await h.feeds.stop()
    assert ("fills", [2]) in h.out.log and ("fills", [1, 2]) not in h.out.log


async def test_a_wallet_moved_onto_the_websocket_gets_no_history_from_its_snapshot() -> None:
    h = Harness(max_ws_wallets=1, budget=SMALL, time_passes=True)
    first, polled = "0x" + "0a" * 20, "0x" + "0b" * 20
    h.feeds.attach(USER_FILLS, first)
    h.feeds.attach(USER_FILLS, polled)

    def mine(tid: int, ts: int) -> wire.Fill:
        return msgspec.structs.replace(fill(tid, 1, 1.0, ts), wallet=polled)

    h.rest.fills = [mine(1, START - 3_000), mine(2, NOW + 500)]
    await polls_of(h, polled, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert h.out.log == [("fills", [2])]
    h.feeds.detach(USER_FILLS, first)
    assert h.feeds.mode_of(polled) == "ws"
    h.feeds.on_ack({"type": "userFills", "user": polled, "aggregateByTime": False}, None)
    # Its first snapshot on the WebSocket is history: what polling gave, what came
    # before the stream's start, and one new fill.
    snapshot = [
        mine(0, START - 9_000),
        mine(1, START - 3_000),
        mine(2, NOW + 500),
        mine(3, NOW + 900),
    ]
    h.feeds.on_fills(wire.Fills(polled, True, snapshot))
    assert h.out.log[1:] == [("fills", [3])]


async def test_a_ledger_started_from_a_position_reads_rest_before_its_snapshot() -> None:
    h = Harness()
    h.rest.release = asyncio.Event()
    position = 5_000  # where the stream had been delivered to (exchange time)
    h.rest.ledger = [deposit(1, 4_000), deposit(2, position), funding("BTC", 6_000)]
    assert h.feeds.attach(USER_LEDGER, W, since_ms=position) == position
    for ack in LEDGER_ACKS:
        h.feeds.on_ack(ack, gap_from_ms=None)
    # The snapshot may hold less than the time since the position: it waits for REST.
    h.feeds.on_ledger(entries("userFundings", True, funding("BTC", 6_000), funding("ETH", 9_000)))
    assert h.out.log == []
    h.rest.release.set()
    await h.settle()
    assert h.rest.calls == [("ledger", position)]  # a position needs no margin
    assert h.out.log == [
        ("ledger", [deposit(2, position).id, funding("BTC", 6_000).id]),
        ("ledger", [funding("ETH", 9_000).id]),
    ]


async def test_a_clock_further_behind_than_the_margin_widens_it_for_new_streams() -> None:
    h = Harness()
    h.margin = 5_000  # the exchange's frames showed its clock up to 5 s behind ours
    assert h.feeds.attach(USER_ORDERS, W) == NOW - 5_000
    placed = NOW + 100 - 4_500  # just after the subscribe, by that clock
    h.rest.history = [wire.HistoricalOrder(order(1, "open", 1.0, placed), created_at=placed)]
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=None)
    await h.settle()
    assert h.out.log == [("order", 1, "created")]
    h.feeds.on_ack({"type": "orderUpdates", "user": W}, gap_from_ms=NOW + 60_000)
    await h.settle()
    assert h.rest.calls[-2] == ("fills", NOW + 60_000 - 5_000)  # gaps reach back as far

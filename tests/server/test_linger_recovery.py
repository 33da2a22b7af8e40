"""A lossless user stream let go after its linger, and taken up again with `since`.

A client subscribed to a wallet's `user_fills` (or `user_orders`, `user_ledger`)
disconnects; the topic lingers for the history window, then its feed stops; the
wallet trades on the exchange while nothing feeds the topic; the client comes back
with `since`. The contract (docs/protocol.md, "Positions and recovery"):
`recovered: true` means nothing is missing, so every fill, transition and ledger
event of the time nobody was subscribed must reach it, once, in order.

The same with topics that overlap: another channel of the wallet kept (or let go
too), and another topic of the same channel and wallet kept by another client (a
user's every wallet, and one of them named). Real sockets, the real simulator, the
default durable engine and `--state-dir none`; the linger ends on an injected
clock, not by waiting for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.broker.coordination import LocalCoordinator
from hlgateway.broker.ownership import LeaseCoordinator
from hlgateway.config import Settings
from hlgateway.simulator import Simulator
from tests.conftest import FAST_SIM, sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    Client,
    GatewayServer,
    alice_token,
    eventually,
    make_settings,
)

# The Redis engine's holder stops a feed once the topic's demand in Redis expires (15 s).
FEED_STOPS = 40.0
# Deposits, withdrawals and funding often enough for `user_ledger` to have some news.
CASHFLOW_SIM = dataclasses.replace(
    FAST_SIM, funding_interval=1.0, transfer_interval=0.5, liquidation_interval=3.0
)
FILLS, ORDERS, LEDGER = "user_fills", "user_orders", "user_ledger"
ONE_WALLET = {"userId": "alice", "wallet": ALICE_WALLET}
EVERY_WALLET = {"userId": "alice"}  # both of alice's wallets


def wallets_of(wallets: list[str]) -> list[str]:
    """A topic's wallets as it keeps them (sorted)."""
    return sorted(wallets)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LingerClock:
    """The hub's clock for the linger: moved on by the test, not by time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Rig:
    sim: Simulator
    srv: GatewayServer
    clock: LingerClock

    async def connect(self) -> Reader:
        client = await Client.connect(self.srv.ws, alice_token())
        await client.recv()  # welcome
        return Reader(client)

    async def let_go(self, lingering: int, gone: tuple[str, list[str]] | None = None) -> int:
        """End the linger of the `lingering` topics a client left; the exchange time
        (ours) from which their feeds have stopped. `gone`: the channel and wallets
        of the topic let go, whose feed this node stops: at once alone; with the
        Redis engine once the topic's demand in Redis expires (DEMAND_TTL), which
        is waited for, not slept."""
        hub = self.srv.gateway.hub
        await eventually(lambda: hub.lingering_count == lingering, 10)
        self.clock.now += self.srv.gateway.settings.history_ttl + 1
        await eventually(lambda: hub.lingering_count == 0, 10)  # the sweeper expired them
        if gone is not None:
            coordinator = self.srv.gateway.coordinator
            assert isinstance(coordinator, LocalCoordinator | LeaseCoordinator)
            channel, wallets = gone[0], tuple(wallets_of(gone[1]))
            await eventually(
                lambda: all(
                    (t.channel, t.wallets) != (channel, wallets) for t in coordinator.feeding
                ),
                FEED_STOPS,
            )
        return now_ms()

    async def traded(self, wallets: list[str], since_ms: int, *channels: str) -> None:
        """Wait until each wallet made news of each channel after `since_ms`."""

        def made() -> bool:
            for wallet in wallets:
                ledger = self.sim.ledger(wallet)
                news = {
                    FILLS: any(f["time"] > since_ms for f in ledger["fills"]),
                    ORDERS: any(o["statusTimestamp"] > since_ms for o in ledger["orders"]),
                    LEDGER: any(u["time"] > since_ms for u in ledger["ledgerUpdates"]),
                }
                if not all(news[c] for c in channels):
                    return False
            return True

        await eventually(made, 30)


class Reader:
    """One client's subscriptions: what it was given on each channel, and where it is."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.replies: dict[str, dict[str, Any]] = {}

    async def subscribe(
        self, channel: str, params: dict[str, Any], since: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "channel": channel, "params": params}
        if since is not None:
            message["since"] = since
        reply = await self.client.request(message, timeout=10)
        assert reply["type"] == "subscribed", reply
        self.replies[channel] = reply
        return reply

    def data(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.client.seen if m["type"] == "data" and m["channel"] == channel]

    def position(self, channel: str) -> dict[str, Any]:
        """Where this client stopped on `channel` (what it would send as `since`)."""
        got = self.data(channel)
        last = got[-1] if got else self.replies[channel]
        return {"offset": last["offset"], "epoch": last["epoch"]}

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        if not condition():
            await self.client.recv_until(lambda _: condition(), timeout)

    async def close(self) -> None:
        await self.client.close()


def deliveries(readers: list[Reader], channel: str) -> Deliveries:
    got = Deliveries()
    for reader in readers:
        for message in reader.data(channel):
            got.add(channel, message["data"])
    return got


def expected_of(
    sim: Simulator, wallets: list[str], start: int, cutoff: int, channel: str
) -> Expected:
    expected = Expected(sim, wallets, start, cutoff, events=channel == LEDGER)
    if channel != FILLS:
        expected.fills, expected.spot = [], set()
    if channel != ORDERS:
        expected.orders = set()
    return expected


async def check_complete(
    rig: Rig, readers: list[Reader], channel: str, wallets: list[str], start: int
) -> None:
    """Every event of `channel` from `start` on reached the client that came back (its
    first connection's and its second's messages together), once, in order, in one
    epoch with no gap in the offsets; and the second was told `recovered: true`."""
    await rig.traded(wallets, now_ms() + 500, channel)  # some news after the return too
    cutoff = now_ms() - 500
    expected = expected_of(rig.sim, wallets, start, cutoff, channel)
    with contextlib.suppress(TimeoutError):
        await readers[-1].until(lambda: expected.received_by(deliveries(readers, channel)))
    check = LedgerCheck.of(expected, deliveries(readers, channel))
    assert check.ok(), (channel, check)
    assert readers[-1].replies[channel]["recovered"] is True
    messages = [m for reader in readers for m in reader.data(channel)]
    assert len({m["epoch"] for m in messages}) == 1
    offsets = [m["offset"] for m in messages]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets


@contextlib.asynccontextmanager
async def rig_on(settings: Settings) -> AsyncIterator[Rig]:
    """A simulator with fills on demand and a gateway with `settings` on it, its linger
    on the test's clock (this file's fixture, and the Redis engine's test's)."""
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    clock = LingerClock()
    srv = GatewayServer(sim_endpoint(sim), settings, linger_clock=clock)
    try:
        await srv.start()
        yield Rig(sim, srv, clock)
    finally:
        await srv.stop()
        await sim.stop()


@pytest.fixture(params=["durable", "memory"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    state_dir = str(tmp_path / "state") if request.param == "durable" else "none"
    async with rig_on(make_settings(state_dir=state_dir)) as rig:
        yield rig


async def test_a_stream_let_go_after_its_linger_misses_nothing_meanwhile(rig: Rig) -> None:
    first = await rig.connect()
    await first.subscribe(FILLS, ONE_WALLET)
    start = now_ms() + 500
    await rig.traded([ALICE_WALLET], start, FILLS)
    await first.until(lambda: bool(first.data(FILLS)))
    await first.close()
    stopped = await rig.let_go(lingering=1)
    await rig.traded([ALICE_WALLET], stopped + 500, FILLS)  # while nothing feeds the topic

    back = await rig.connect()
    try:
        await back.subscribe(FILLS, ONE_WALLET, since=first.position(FILLS))
        await check_complete(rig, [first, back], FILLS, [ALICE_WALLET], start)
    finally:
        await back.close()


async def test_fills_and_ledger_let_go_while_orders_stay(rig: Rig) -> None:
    """The wallet's `user_orders` stays subscribed (another client): its feed of the
    wallet never stops, while `user_fills` and `user_ledger` lose theirs."""
    first = await rig.connect()
    stays = await rig.connect()
    try:
        for channel in (FILLS, ORDERS, LEDGER):
            await first.subscribe(channel, ONE_WALLET)
        await stays.subscribe(ORDERS, ONE_WALLET)
        start = now_ms() + 500
        await rig.traded([ALICE_WALLET], start, FILLS, ORDERS, LEDGER)
        await first.until(lambda: all(first.data(c) for c in (FILLS, ORDERS, LEDGER)))
        await first.close()
        stopped = await rig.let_go(lingering=2)
        await rig.traded([ALICE_WALLET], stopped + 500, FILLS, LEDGER)

        back = await rig.connect()
        try:
            for channel in (FILLS, ORDERS, LEDGER):
                await back.subscribe(channel, ONE_WALLET, since=first.position(channel))
            for channel in (FILLS, ORDERS, LEDGER):
                await check_complete(rig, [first, back], channel, [ALICE_WALLET], start)
        finally:
            await back.close()
    finally:
        await stays.close()


async def test_fills_and_orders_both_let_go_and_one_back_first(rig: Rig) -> None:
    first = await rig.connect()
    for channel in (FILLS, ORDERS):
        await first.subscribe(channel, ONE_WALLET)
    start = now_ms() + 500
    await rig.traded([ALICE_WALLET], start, FILLS, ORDERS)
    await first.until(lambda: all(first.data(c) for c in (FILLS, ORDERS)))
    await first.close()
    stopped = await rig.let_go(lingering=2)
    await rig.traded([ALICE_WALLET], stopped + 500, FILLS, ORDERS)

    back = await rig.connect()
    try:
        await back.subscribe(ORDERS, ONE_WALLET, since=first.position(ORDERS))
        await check_complete(rig, [first, back], ORDERS, [ALICE_WALLET], start)
        # user_fills comes back later, while user_orders feeds the wallet again.
        await back.subscribe(FILLS, ONE_WALLET, since=first.position(FILLS))
        await check_complete(rig, [first, back], FILLS, [ALICE_WALLET], start)
    finally:
        await back.close()


OVERLAPS = pytest.mark.parametrize(
    ("leaves", "stays"),
    [(EVERY_WALLET, ONE_WALLET), (ONE_WALLET, EVERY_WALLET)],
    ids=["every-wallet-leaves", "one-wallet-leaves"],
)


@OVERLAPS
async def test_a_topic_let_go_while_another_of_its_wallet_stays(
    rig: Rig, leaves: dict[str, Any], stays: dict[str, Any]
) -> None:
    await a_topic_let_go_while_another_of_its_wallet_stays(rig, leaves, stays)


async def a_topic_let_go_while_another_of_its_wallet_stays(
    rig: Rig, leaves: dict[str, Any], stays: dict[str, Any]
) -> None:
    """Two topics of `user_fills` share a wallet (alice's every wallet, and the one
    named): one is let go while the other keeps the wallet's feed running. Run on
    each engine: here, and on the Redis engine by test_linger_recovery_redis.py."""
    wallets = [ALICE_WALLET, ALICE_WALLET_2] if leaves == EVERY_WALLET else [ALICE_WALLET]
    first = await rig.connect()
    other = await rig.connect()
    try:
        await first.subscribe(FILLS, leaves)
        await other.subscribe(FILLS, stays)
        start = now_ms() + 500
        await rig.traded(wallets, start, FILLS)
        await first.until(lambda: bool(first.data(FILLS)))
        await first.close()
        stopped = await rig.let_go(lingering=1, gone=(FILLS, wallets))
        await rig.traded(wallets, stopped + 500, FILLS)  # the other topic's feed runs

        back = await rig.connect()
        try:
            await back.subscribe(FILLS, leaves, since=first.position(FILLS))
            await check_complete(rig, [first, back], FILLS, wallets, start)
        finally:
            await back.close()
    finally:
        await other.close()


async def test_a_topic_let_go_before_another_of_its_wallet_comes_back_first(rig: Rig) -> None:
    """Both topics of the wallet are let go, one after the other; the first one let go
    comes back first: its feed starts where it stopped, not where the other did."""
    first = await rig.connect()
    other = await rig.connect()
    await first.subscribe(FILLS, EVERY_WALLET)
    await other.subscribe(FILLS, ONE_WALLET)
    wallets = [ALICE_WALLET, ALICE_WALLET_2]
    start = now_ms() + 500
    await rig.traded(wallets, start, FILLS)
    await first.until(lambda: bool(first.data(FILLS)))
    await first.close()
    stopped = await rig.let_go(lingering=1)
    await rig.traded([ALICE_WALLET], stopped + 500, FILLS)  # the other's feed runs
    await other.close()
    stopped = await rig.let_go(lingering=1)
    await rig.traded(wallets, stopped + 500, FILLS)  # and then none

    back = await rig.connect()
    try:
        await back.subscribe(FILLS, EVERY_WALLET, since=first.position(FILLS))
        await check_complete(rig, [first, back], FILLS, wallets, start)
    finally:
        await back.close()


async def test_a_topic_let_go_behind_another_is_caught_up_after_a_restart(
    tmp_path: Path,
) -> None:
    """The same, with the durable gateway stopped and started again between: where the
    topic let go had stopped is kept in the state directory, beside its stream."""
    sim = Simulator(CASHFLOW_SIM)
    await sim.start("127.0.0.1", 0)
    settings = make_settings(state_dir=str(tmp_path / "state"))
    wallets = [ALICE_WALLET, ALICE_WALLET_2]
    clock = LingerClock()
    running = GatewayServer(sim_endpoint(sim), settings, linger_clock=clock)
    try:
        await running.start()
        rig = Rig(sim, running, clock)
        first = await rig.connect()
        other = await rig.connect()
        await first.subscribe(FILLS, EVERY_WALLET)
        await other.subscribe(FILLS, ONE_WALLET)
        start = now_ms() + 500
        await rig.traded(wallets, start, FILLS)
        await first.until(lambda: bool(first.data(FILLS)))
        await first.close()
        stopped = await rig.let_go(lingering=1)
        await rig.traded(wallets, stopped + 500, FILLS)  # the other topic's feed runs
        await other.close()
        stopping, running = running, GatewayServer(sim_endpoint(sim), settings)
        await stopping.stop()
        await rig.traded(wallets, now_ms() + 500, FILLS)  # and no gateway runs

        await running.start()  # the other topic is fed again at once (it was wanted)
        rig = Rig(sim, running, clock)
        back = await rig.connect()
        try:
            await back.subscribe(FILLS, EVERY_WALLET, since=first.position(FILLS))
            await check_complete(rig, [first, back], FILLS, wallets, start)
        finally:
            await back.close()
    finally:
        await running.stop()
        await sim.stop()

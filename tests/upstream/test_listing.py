"""The market list from its REST parts, refreshed: listings appear, delistings refuse;
a failing refresh retried on the one policy (reconnect.py), on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from hlgateway.backoff import Backoff
from hlgateway.broker.base import Shared
from hlgateway.reconnect import Reconnect
from hlgateway.upstream import wire
from hlgateway.upstream.networks import Endpoint
from hlgateway.upstream.pool import LinkTiming, Upstream
from hlgateway.upstream.rest import RestError


def meta(*names: str, delisted: tuple[str, ...] = ()) -> bytes:
    universe = [{"name": n, "szDecimals": 2, "maxLeverage": 10} for n in names]
    universe += [{"name": n, "szDecimals": 2, "isDelisted": True} for n in delisted]
    ctxs = [{"prevDayPx": "10.0", "dayNtlVlm": "5.0", "markPx": "11.0"} for _ in universe]
    return json.dumps([{"universe": universe}, ctxs]).encode()


SPOT = json.dumps(
    [
        {
            "universe": [
                {"name": "PURR/USDC", "tokens": [1, 0], "index": 0},
                {"name": "@107", "tokens": [150, 0], "index": 107},
            ],
            "tokens": [
                {"name": "USDC", "index": 0, "szDecimals": 8},
                {"name": "PURR", "index": 1, "szDecimals": 0},
                {"name": "HYPE", "index": 150, "szDecimals": 2},
            ],
        },
        [{"coin": "@107", "prevDayPx": "40.2", "dayNtlVlm": "74058905.5", "markPx": "41.328"}],
    ]
).encode()


class FakeRest:
    """Answers the listing's REST calls from what the test sets, counting them."""

    def __init__(self) -> None:
        self.main = meta("BTC", "ETH")
        self.dexes: dict[str, bytes] = {"xyz": meta("xyz:XYZ100")}
        self.calls: list[str] = []

    async def meta_and_contexts(self, dex: str = "", first_asset: int = 0) -> wire.Listing:
        self.calls.append(f"meta:{dex}")
        body = self.dexes[dex] if dex else self.main
        return wire.parse_meta_and_ctxs(body, first_asset)

    async def spot_meta_and_contexts(self) -> wire.Listing:
        self.calls.append("spot")
        return wire.parse_spot_meta_and_ctxs(SPOT)

    async def perp_dexs(self) -> list[str]:
        self.calls.append("perpDexs")
        return list(self.dexes)


async def test_the_list_is_every_kind_and_follows_the_exchange() -> None:
    upstream = Upstream(Endpoint("test", "ws://x/ws", "http://x/info"), on_event=lambda *_: None)
    rest = FakeRest()
    listing = await upstream._read_listing(rest)  # type: ignore[arg-type]
    upstream.markets.load(listing.markets, listing.delisted)
    assert upstream.markets.names == ("BTC", "ETH", "PURR/USDC", "HYPE/USDC", "xyz:XYZ100")
    assert [m.asset for m in upstream.markets.all()] == [0, 1, 10_000, 10_107, 110_000]
    assert listing.contexts["HYPE/USDC"].mark_px == 41.328  # keyed by symbol, not @107
    assert rest.calls == ["meta:", "spot", "perpDexs", "meta:xyz"]

    # The next refresh, within the dex period: the builder dexes are not read again.
    rest.main = meta("BTC", "SOL", delisted=("ETH",))
    rest.calls.clear()
    listing = await upstream._read_listing(rest)  # type: ignore[arg-type]
    upstream.markets.load(listing.markets, listing.delisted)
    assert rest.calls == ["meta:", "spot"]
    assert "SOL" in upstream.markets.names and upstream.markets.resolve("sol") == "SOL"
    assert upstream.markets.resolve("ETH") is None
    assert upstream.markets.delisted("eth") == "ETH"
    assert upstream.markets.resolve("xyz:xyz100") == "xyz:XYZ100"  # kept from the last read


class Flaky(FakeRest):
    """FakeRest whose main listing fails (RestError) on the reads `script` marks False."""

    def __init__(self, script: list[bool]) -> None:
        super().__init__()
        self.script = script

    async def meta_and_contexts(self, dex: str = "", first_asset: int = 0) -> wire.Listing:
        if not dex and not self.script.pop(0):
            raise RestError("HTTP 500")
        return await super().meta_and_contexts(dex, first_asset)


class PlainTiming(LinkTiming):
    """The refresh's backoff without jitter: the waits are exact."""

    @property
    def rest_backoff(self) -> Backoff:
        return Backoff(initial=2.0, decay=2.0, max_delay=5.0, jitter=0)


async def test_a_failing_refresh_backs_off_on_the_one_policy_and_a_success_resets_it() -> None:
    waits: list[float] = []
    loaded_at: list[int] = []
    parked = asyncio.Event()

    async def wait(seconds: float, wake: asyncio.Event) -> None:
        waits.append(seconds)
        if upstream.markets_loaded.is_set() and not loaded_at:
            loaded_at.append(len(waits))
        if not rest.script:
            parked.set()
            await asyncio.Future()  # the test's clock stops here
        await asyncio.sleep(0)

    upstream = Upstream(
        Endpoint("test", "ws://x/ws", "http://x/info"),
        on_event=lambda *_: None,
        timing=PlainTiming(),
        context_refresh=10.0,
        wait=wait,
    )
    rest = Flaky([False, False, False, True, True, False, True])
    upstream.rest = rest  # type: ignore[assignment]
    task = asyncio.get_running_loop().create_task(upstream._refresh_loop())
    try:
        await asyncio.wait_for(parked.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Three failures: 2, 4, then capped at 5; each success waits the refresh interval,
    # and the failure after them starts the backoff again from 2.
    assert waits == [2.0, 4.0, 5.0, 10.0, 10.0, 2.0, 10.0]
    assert loaded_at == [4]  # the list came with the first success, not before
    assert upstream.markets.names[:2] == ("BTC", "ETH")


async def test_a_refresh_that_fails_for_another_reason_is_not_retried() -> None:
    """Only REST failures are an outage to wait out; anything else is a bug that
    must surface, not a loop retrying it for ever."""
    waits: list[float] = []

    async def wait(seconds: float, wake: asyncio.Event) -> None:
        waits.append(seconds)

    class Broken(FakeRest):
        async def spot_meta_and_contexts(self) -> wire.Listing:
            raise KeyError("universe")

    upstream = Upstream(
        Endpoint("test", "ws://x/ws", "http://x/info"), on_event=lambda *_: None, wait=wait
    )
    upstream.rest = Broken()  # type: ignore[assignment]
    with pytest.raises(KeyError):
        await upstream._refresh_loop()
    assert waits == []


class FakeShare(Shared):
    """broker/base.py's Shared as another node would answer it: `leading` says
    whether this node reads; `value` is what the reader put last."""

    def __init__(self, leading: bool, value: bytes | None = None) -> None:
        self.leading = leading
        self.value = value
        self.puts = 0

    async def lead(self) -> bool:
        return self.leading

    async def put(self, value: bytes) -> None:
        self.value = value
        self.puts += 1

    async def get(self) -> bytes | None:
        return self.value


async def next_listing(upstream: Upstream, rest: FakeRest) -> wire.Listing:
    return await upstream._next_listing(rest, Reconnect(LinkTiming().rest_backoff))  # type: ignore[arg-type]


def sharing(share: FakeShare) -> Upstream:
    return Upstream(
        Endpoint("test", "ws://x/ws", "http://x/info"), on_event=lambda *_: None, share=share
    )


async def test_one_node_reads_the_market_list_and_the_others_take_it() -> None:
    share = FakeShare(leading=True)
    reader, reader_rest = sharing(share), FakeRest()
    read = await next_listing(reader, reader_rest)
    assert reader_rest.calls == ["meta:", "spot", "perpDexs", "meta:xyz"] and share.puts == 1
    assert reader.reads_listing and reader.context_weight_per_minute > 0

    share.leading = False  # the same share, as another node sees it
    other, other_rest = sharing(share), FakeRest()
    assert await next_listing(other, other_rest) == read
    assert other_rest.calls == []  # no weight spent on what the reader read
    assert not other.reads_listing and other.context_weight_per_minute == 0
    assert other.health()["marketListReadHere"] is False


async def test_a_node_with_nothing_shared_reads_for_itself_and_shares_nothing() -> None:
    for value in (None, b"\x00not a listing"):
        share = FakeShare(leading=False, value=value)
        upstream, rest = sharing(share), FakeRest()
        listing = await next_listing(upstream, rest)
        assert rest.calls[:2] == ["meta:", "spot"] and "BTC" in {m.symbol for m in listing.markets}
        assert share.puts == 0 and share.value == value

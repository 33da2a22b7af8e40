"""Nodes on one Redis read Hyperliquid's market list once for all: one node spends
the REST weight, the others take the list from Redis (as `--workers N` behind one
IP would otherwise spend N times the weight on the same answer); a reader killed
is replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hlgateway.simulator import Simulator
from tests.helpers import GatewayProcess, eventually
from tests.scaleout.support import addressed, health

ADDRESSES = {"a": "127.0.0.2", "b": "127.0.0.3"}
REFRESH = "0.5"  # seconds between market list reads: several in a short test


@pytest.fixture
async def pair(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[GatewayProcess]]:
    async with addressed(
        simulator.ws_url, redis_url, tmp_path, ADDRESSES, HLGATEWAY_CONTEXT_REFRESH=REFRESH
    ) as procs:
        yield procs


async def test_one_node_reads_the_market_list_for_both(
    pair: list[GatewayProcess], simulator: Simulator
) -> None:
    async def reading() -> list[bool]:
        return [(await health(p))["upstream"]["marketListReadHere"] for p in pair]

    async def one_reader() -> bool:
        loaded = [(await health(p))["upstream"]["marketsLoaded"] for p in pair]
        return all(loaded) and sorted(await reading()) == [False, True]

    await eventually(one_reader, 20, every=0.1)
    readers = await reading()
    reader, other = (pair[0], pair[1]) if readers[0] else (pair[1], pair[0])
    address = {p: ADDRESSES[n] for p, n in zip(pair, ADDRESSES, strict=True)}

    def spent(proc: GatewayProcess) -> int:
        return simulator.rest_usage().get(address[proc], {}).get("total", 0)

    # No client: the market list is all either node asks REST for. Four of the
    # reader's refreshes (40 weight each) while the other spends nothing.
    before = {p: spent(p) for p in pair}
    await eventually(lambda: spent(reader) >= before[reader] + 4 * 40, 20, every=0.1)
    assert spent(other) == before[other]
    state = await health(other)
    assert state["upstream"]["marketsLoaded"] and not state["upstream"]["marketListReadHere"]

    # The reader dies: the other reads for itself once its lease is gone.
    await reader.kill()
    await eventually(lambda: spent(other) > before[other], 20, every=0.1)
    await eventually(lambda: _reads_here(other), 10, every=0.1, ignoring=(KeyError,))


async def _reads_here(proc: GatewayProcess) -> bool:
    return bool((await health(proc))["upstream"]["marketListReadHere"])

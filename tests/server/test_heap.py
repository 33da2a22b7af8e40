"""`hlgateway serve` freezes what it built at start-up out of the garbage collector's
full collections (server/heap.py), and says so on /health."""

from __future__ import annotations

import gc
import weakref

import aiohttp

from hlgateway.server import heap
from tests.helpers import GatewayProcess, free_port


async def test_serve_freezes_its_start_up_objects_and_reports_them() -> None:
    proc = GatewayProcess(free_port())
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{proc.http}/health") as resp:
            body = await resp.json()
        # Tens of thousands: the modules, the app, the market list, the embedded simulator.
        assert body["gc"]["frozenObjects"] > 10_000, body["gc"]
        assert await proc.terminate() == 0
    finally:
        await proc.kill()


def test_settle_collects_then_freezes_what_survives() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    try:
        garbage = weakref.ref(Cycle())  # start-up garbage: collected, not frozen
        kept = Cycle()
        frozen = heap.settle()
        assert garbage() is None
        assert frozen == gc.get_freeze_count() > 0
        # Frozen: no collection of any generation walks it any more.
        assert all(o is not kept for o in gc.get_objects())
        assert heap.health() == {"frozenObjects": frozen}
    finally:
        gc.unfreeze()  # the test process goes on as it was

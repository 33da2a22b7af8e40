"""`--workers 2` for real: the worker reading the market list for both holds the
set-aside beside its share (server/workers.py `budget_shares`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hlgateway.simulator import Simulator
from tests.helpers import GatewayProcess, free_port
from tests.scaleout.support import health


async def test_the_list_reader_has_the_set_aside_and_the_other_its_share(
    simulator: Simulator, redis_url: str, tmp_path: Path
) -> None:
    proc = GatewayProcess(
        free_port(),
        *("--workers", "2", "--broker", redis_url, "--upstream", simulator.ws_url),
        log_file=tmp_path / "workers.log",
    )
    await proc.start()
    try:
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(400):  # the kernel picks the worker; the second may be starting
            state = await health(proc)
            if state["upstream"]["marketsLoaded"]:
                seen[state["node"]] = state["upstream"]
            readers = [u for u in seen.values() if u["marketListReadHere"]]
            if len(seen) == 2 and len(readers) == 1:
                break
            await asyncio.sleep(0.05)
        assert len(seen) == 2, seen
        limits = sorted(u["limits"]["restWeightPerMinute"] for u in seen.values())
        # A ws:// upstream is sized as mainnet: 460 set aside, (1200 - 460) // 2 each.
        assert limits == [370, 370 + 460], seen
        reader = next(u for u in seen.values() if u["marketListReadHere"])
        assert reader["limits"]["restWeightPerMinute"] == 830
    finally:
        await proc.kill()

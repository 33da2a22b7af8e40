"""A bounded recovery run: forced reconnects of every kind, nothing lost or doubled
(fills perp and spot, order transitions, ledger events)."""

from __future__ import annotations

import shutil

import pytest

from bench.recovery.harness import run_recovery


async def test_forced_reconnects_lose_and_duplicate_nothing() -> None:
    report = await run_recovery(9, client="raw", connected=(0.3, 0.8))
    assert report.cut_kinds == {"reset": 3, "slow_consumer": 3, "going_away": 3}
    assert report.ledger.fills_produced > 0 and report.ledger.transitions_produced > 0
    assert report.recovered == 3 * 9  # the three streams, after every cut
    assert report.ledger.events_produced > 0 and report.ledger.spot_fills > 0
    assert report.ok(), report.as_dict()


@pytest.mark.parametrize("client", ["python", "js"])
async def test_the_sdks_recover_by_themselves(client: str) -> None:
    if client == "js" and shutil.which("node") is None:
        pytest.fail("node required by this test (README prerequisites)")
    report = await run_recovery(3, client=client, connected=(0.3, 0.8))
    assert report.cut_kinds == {"reset": 1, "slow_consumer": 1, "going_away": 1}
    assert report.ledger.fills_produced > 0 and report.ledger.transitions_produced > 0
    assert report.recovered == 3 * 3
    assert report.ok(), report.as_dict()

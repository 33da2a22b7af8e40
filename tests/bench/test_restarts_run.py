"""The restart run (bench/restarts), small: two restarts of a real gateway process under
two kinds of clients, every fill and transition of the downtime delivered once, in order."""

from __future__ import annotations

from bench.restarts.harness import run_restarts


async def test_two_restarts_lose_and_repeat_nothing_for_either_client() -> None:
    report = await run_restarts(2, clients=("raw", "python"), down=(1.0, 2.0), up=(1.0, 2.0))
    assert report.stops == {"kill": 1, "sigterm": 1}
    assert report.ok(), report.as_dict()
    assert report.fills_in_downtime + report.transitions_in_downtime > 0

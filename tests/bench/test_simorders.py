"""bench.simorders: its posts are answered as it expects, and a run is deterministic (the
before/after comparison's "same answers" column rests on that)."""

from __future__ import annotations

from bench.simorders.__main__ import Bench


def digest(scenario: str) -> str:
    bench = Bench(resting=10, seed=5)
    bench.run(scenario, 16, None)
    wallet = bench.world.accounts.wallet(bench.address)
    assert wallet is not None and len(wallet.live_orders) == 10  # the setup's orders only
    return bench.digest.hexdigest()


def test_both_scenarios_run_and_repeat_exactly() -> None:
    for scenario in ("order+cancel", "mix"):
        assert digest(scenario) == digest(scenario)
    assert digest("order+cancel") != digest("mix")

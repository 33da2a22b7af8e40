"""`--workers N` and the market list: its REST weight is set aside from the IP's
budget before the split, and the worker that reads it for all holds the set-aside
while it reads (upstream/pool.py `listing_allowance`, server/workers.py). Before,
the reader paid 460 a minute on mainnet from a 300 share (4 workers): its own
wallets, recoveries and candles got nothing."""

from __future__ import annotations

import pytest

from hlgateway.config import AuthSettings, settings_from_env
from hlgateway.server.workers import budget_shares, market_list_weight
from hlgateway.upstream.limits import WeightBudget
from hlgateway.upstream.networks import Endpoint
from hlgateway.upstream.polling import RECOVERY_SHARE, PollBudget
from hlgateway.upstream.pool import Upstream, UpstreamLimits, listing_weight_per_minute
from tests.helpers import SECRET
from tests.upstream.test_listing import FakeRest, FakeShare, next_listing

AUTH = AuthSettings(secret=SECRET)


def worker_settings(n: int, upstream: str = "mainnet") -> dict[str, str]:
    settings = settings_from_env(
        {"HLGATEWAY_BROKER": "redis://h:1/0", "HLGATEWAY_UPSTREAM": upstream}, auth=AUTH, workers=n
    )
    return budget_shares(settings)


def test_the_market_list_costs_460_a_minute_on_mainnet_and_280_on_the_simulator() -> None:
    # docs/upstream.md: 40 every 10 s, plus 20 + 20 per builder dex every 60 s.
    assert listing_weight_per_minute(10.0, 60.0, 10) == 460
    assert listing_weight_per_minute(10.0, 60.0, 1) == 280
    settings = settings_from_env({"HLGATEWAY_UPSTREAM": "sim"}, auth=AUTH)
    assert market_list_weight(settings) == 280
    slower = settings_from_env(
        {"HLGATEWAY_UPSTREAM": "mainnet", "HLGATEWAY_CONTEXT_REFRESH": "60"}, auth=AUTH
    )
    assert market_list_weight(slower) == 260  # 40 + 220
    given = settings_from_env({"HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT": "700"}, auth=AUTH)
    assert market_list_weight(given) == 700


@pytest.mark.parametrize(("n", "share"), [(2, 370), (4, 185), (6, 123)])
def test_the_list_is_set_aside_before_the_split(n: int, share: int) -> None:
    shares = worker_settings(n)
    assert shares["HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT"] == "460"
    assert shares["HLGATEWAY_UPSTREAM_REST_WEIGHT"] == str(share)
    # Every worker's share and the one reader's set-aside stay within the IP's 1200.
    assert n * share + 460 <= 1200


def test_a_misjudged_set_aside_leaves_half_the_budget_to_the_shares() -> None:
    settings = settings_from_env(
        {
            "HLGATEWAY_BROKER": "redis://h:1/0",
            "HLGATEWAY_UPSTREAM": "mainnet",
            "HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT": "5000",
        },
        auth=AUTH,
        workers=4,
    )
    shares = budget_shares(settings)
    assert shares["HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT"] == "600"
    assert shares["HLGATEWAY_UPSTREAM_REST_WEIGHT"] == "150"


def test_a_resized_budget_keeps_what_was_spent() -> None:
    now = [0.0]
    budget = WeightBudget(185, clock=lambda: now[0], window=60.0)
    assert budget.try_take(180)
    assert not budget.try_take(40)  # 220 > 185
    budget.resize(645)  # it now reads the list for the others
    assert budget.try_take(40) and budget.used() == 220 and budget.available() == 425
    budget.resize(185)  # another worker reads it now
    assert budget.available() == 0 and not budget.try_take(1)
    now[0] = 60.0  # the minute passes: the smaller share is whole again
    assert budget.available() == 185


def worker(share: FakeShare, rest_weight: int, set_aside: int) -> Upstream:
    return Upstream(
        Endpoint("test", "ws://x/ws", "http://x/info"),
        on_event=lambda *_: None,
        share=share,
        limits=UpstreamLimits(rest_weight_per_minute=rest_weight, market_list_weight=set_aside),
    )


def polling(upstream: Upstream, rest_weight: int) -> PollBudget:
    # As gateway.py builds it.
    return PollBudget(
        weight_per_minute=rest_weight, reserved=lambda: upstream.reserved_weight_per_minute
    )


async def test_the_reader_holds_the_set_aside_and_polls_as_much_as_the_others() -> None:
    # FakeRest lists one builder dex: 280 a minute, the simulator's set-aside.
    shares = worker_settings(4, "sim")
    base = int(shares["HLGATEWAY_UPSTREAM_REST_WEIGHT"])
    set_aside = int(shares["HLGATEWAY_UPSTREAM_MARKET_LIST_WEIGHT"])
    assert (base, set_aside) == (230, 280)
    share = FakeShare(leading=True)
    reader = worker(share, base, set_aside)
    await next_listing(reader, FakeRest())
    assert reader.reads_listing and reader.context_weight_per_minute == 280
    assert reader.budget.capacity == base + set_aside
    share.leading = False
    other = worker(share, base, set_aside)
    await next_listing(other, FakeRest())
    assert not other.reads_listing and other.budget.capacity == base
    # The same polling rate on both: the list no longer comes out of the reader's share.
    fair = base * (1 - RECOVERY_SHARE) / 60
    assert polling(reader, base).rate == pytest.approx(fair)
    assert polling(other, base).rate == pytest.approx(fair)
    # The lease moves: the former reader is back to its share at its next refresh.
    await next_listing(reader, FakeRest())
    assert not reader.reads_listing and reader.budget.capacity == base


async def test_a_node_alone_reads_from_its_own_budget_as_before() -> None:
    upstream = worker(FakeShare(leading=True), 1200, 0)
    await next_listing(upstream, FakeRest())
    assert upstream.budget.capacity == 1200
    assert polling(upstream, 1200).rate == pytest.approx((1080 - 280) / 60)

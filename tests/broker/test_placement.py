"""Placement by capacity, without I/O: the fleet as plain records and an injected clock."""

from __future__ import annotations

from collections import Counter

from hlgateway.broker.placement import NodeCapacity, Placer, Plan, Stream, admission

ALL_CHANNELS = 42  # userFillsByTime + historicalOrders + clearinghouseState


def wallet_stream(n: int, weight: int = ALL_CHANNELS) -> Stream:
    wallet = f"0x{n:040x}"
    return Stream(f"u{n:03d}", frozenset({wallet}), frozenset({f"userFills:{wallet}"}), weight)


def market_stream(key: str, subscription: str) -> Stream:
    return Stream(key, subscriptions=frozenset({subscription}))


def nodes(*names: str, slots: int = 10, **kw: float) -> dict[str, NodeCapacity]:
    return {name: NodeCapacity(ws_slots=slots, **kw) for name in names}  # type: ignore[arg-type]


def per_node(plan: Plan) -> dict[str, tuple[int, int]]:
    return {name: (int(v["websocket"]), int(v["polled"])) for name, v in plan.nodes.items()}


def settle(
    placer: Placer,
    fleet: dict[str, NodeCapacity],
    streams: list[Stream],
    holders: dict[str, str],
    start: float,
    step: float = 0.5,
    rounds: int = 60,
) -> tuple[Plan, list[tuple[float, int]]]:
    """Run the plan as the fleet would, every `step` s for `rounds`: each node takes
    what is assigned to it (a move completes before the next round). Returns the
    last plan and the moves made per round, with their times."""
    now = start
    moves: list[tuple[float, int]] = []
    plan = placer.plan(now, fleet, streams, holders)
    for _ in range(rounds):
        holders.clear()
        holders.update(plan.assignment)
        if plan.moves:
            moves.append((now, len(plan.moves)))
        now += step
        plan = placer.plan(now, fleet, streams, holders)
    return plan, moves


def test_thirty_wallets_demanded_through_one_node_fill_three_nodes_websocket_slots() -> None:
    placer = Placer()
    streams = [wallet_stream(n) for n in range(30)]
    plan = placer.plan(0.0, nodes("a", "b", "c"), streams, holders={})
    assert per_node(plan) == {"a": (10, 0), "b": (10, 0), "c": (10, 0)}
    assert Counter(plan.assignment.values()) == {"a": 10, "b": 10, "c": 10}
    assert plan.moves == [] and plan.unplaced == [] and plan.over_latency == 0


def test_beyond_every_slot_wallets_are_polled_spread_over_the_rest_budgets() -> None:
    streams = [wallet_stream(n) for n in range(40)]
    plan = Placer().plan(0.0, nodes("a", "b", "c"), streams, holders={})
    polled = sorted(v[1] for v in per_node(plan).values())
    assert polled == [3, 3, 4] and sum(v[0] for v in per_node(plan).values()) == 30
    # 4 wallets of 42 at 16 weight a second: every 10.5 s, within the 30 s accepted.
    assert max(v["pollInterval"] for v in plan.nodes.values()) == 4 * 42 / 16
    assert plan.over_latency == 0


def test_held_streams_stay_where_they_are() -> None:
    streams = [wallet_stream(n) for n in range(6)]
    holders = {s.key: "a" for s in streams}  # unbalanced, but all on WebSockets
    plan = Placer().plan(0.0, nodes("a", "b"), streams, holders)
    assert plan.assignment == holders and plan.moves == []


def test_a_node_joining_takes_polled_wallets_a_bounded_number_a_second() -> None:
    placer = Placer(moves_per_second=2)
    streams = [wallet_stream(n) for n in range(15)]
    holders = {s.key: "a" for s in streams}  # one node: 10 on WebSocket, 5 polled
    assert per_node(placer.plan(0.0, nodes("a"), streams, holders)) == {"a": (10, 5)}
    plan, moves = settle(placer, nodes("a", "b"), streams, holders, start=1.0)
    # Each move frees one of a's slots for one of its polled wallets: 5 moves.
    assert per_node(plan) == {"a": (10, 0), "b": (5, 0)}
    assert sum(n for _, n in moves) == 5
    # Never more than 2 a second.
    for t, _ in moves:
        assert sum(n for u, n in moves if t <= u < t + 1.0) <= 2
    assert moves[-1][0] - moves[0][0] >= 2.0


def test_a_dead_nodes_streams_are_placed_at_once_where_there_is_room() -> None:
    placer = Placer(moves_per_second=1)
    streams = [wallet_stream(n) for n in range(25)]
    holders = {s.key: "abc"[n // 10] for n, s in enumerate(streams)}
    plan = placer.plan(0.0, nodes("a", "b", "c"), streams, holders)
    assert per_node(plan) == {"a": (10, 0), "b": (10, 0), "c": (5, 0)}
    # b dies: its 10 go where there are slots (5 on c), the other 5 polled: not
    # moves (nobody holds them), so not held back by the rate.
    plan = placer.plan(1.0, nodes("a", "c"), streams, holders)
    assert per_node(plan) == {"a": (10, 3), "c": (10, 2)}
    assert plan.moves == [] and plan.unplaced == []
    # A node comes back: the polled ones move onto its slots, one a second.
    plan, moves = settle(placer, nodes("a", "c", "d"), streams, dict(plan.assignment), start=2.0)
    assert per_node(plan) == {"a": (10, 0), "c": (10, 0), "d": (5, 0)}
    assert all(n == 1 for _, n in moves) and len(moves) == 5


def test_a_move_in_flight_is_kept_until_done_or_timed_out() -> None:
    placer = Placer(moves_per_second=10, cooldown=100.0, move_timeout=15.0)
    streams = [wallet_stream(n) for n in range(11)]
    holders = {s.key: "a" for s in streams}
    plan = placer.plan(0.0, nodes("a", "b"), streams, holders)
    assert len(plan.moves) == 1
    move = plan.moves[0]
    assert (move.source, move.target) == ("a", "b")
    # Still held by a (the handover takes a moment): the plan keeps it for b, no second move.
    plan = placer.plan(1.0, nodes("a", "b"), streams, holders)
    assert plan.assignment[move.stream] == "b" and plan.moves == []
    # Never taken: planned again from where it is; the cooldown keeps it from moving
    # again (another stream is tried instead).
    plan = placer.plan(20.0, nodes("a", "b"), streams, holders)
    assert plan.assignment[move.stream] == "a"
    assert [m.stream for m in plan.moves] != [move.stream] and len(plan.moves) == 1


def test_a_moved_stream_is_not_moved_back_and_forth() -> None:
    placer = Placer(moves_per_second=10, cooldown=30.0)
    streams = [wallet_stream(n) for n in range(11)]
    holders = {s.key: "a" for s in streams}
    plan, moves = settle(placer, nodes("a", "b"), streams, holders, start=0.0)
    assert per_node(plan) == {"a": (10, 0), "b": (1, 0)} and len(moves) == 1
    # b is now less loaded than a; nothing moves back.
    for t in range(1, 60):
        assert placer.plan(float(t), nodes("a", "b"), streams, holders).moves == []


def test_wallets_already_on_a_node_go_with_it() -> None:
    w = "0x" + "ab" * 20
    fills = Stream("fills", frozenset({w}), frozenset({f"userFills:{w}"}), 20)
    orders = Stream("orders", frozenset({w}), frozenset({f"orderUpdates:{w}"}), 40)
    others = [wallet_stream(n) for n in range(5)]
    plan = Placer().plan(0.0, nodes("a", "b"), [*others, fills], {s.key: "b" for s in others})
    assert plan.assignment["fills"] == "a"  # most free slots
    plan = Placer().plan(0.0, nodes("a", "b"), [*others, fills, orders], plan.assignment)
    assert plan.assignment["orders"] == "a"  # its wallet is there: no second slot


def test_market_streams_share_their_upstream_subscription_and_spread() -> None:
    streams = [
        market_stream("book-btc-5", "l2Book:BTC"),
        market_stream("book-btc-20", "l2Book:BTC"),
        market_stream("trades-btc", "trades:BTC"),
        market_stream("prices", "allMids"),
        market_stream("prices-eth", "allMids"),
    ]
    plan = Placer().plan(0.0, nodes("a", "b", "c"), streams, holders={})
    assert plan.assignment["book-btc-5"] == plan.assignment["book-btc-20"]
    assert plan.assignment["prices"] == plan.assignment["prices-eth"]
    assert len(set(plan.assignment.values())) == 3  # three upstream streams, three nodes


def test_market_streams_respect_each_nodes_subscription_limit() -> None:
    streams = [market_stream(f"book-{n}", f"l2Book:C{n}") for n in range(6)]
    plan = Placer().plan(0.0, nodes("a", "b", subscriptions=3), streams, holders={})
    assert Counter(plan.assignment.values()) == {"a": 3, "b": 3}


def test_polling_beyond_the_accepted_latency_moves_to_a_node_with_room() -> None:
    placer = Placer(moves_per_second=10)
    fleet = nodes("a", "b", slots=0, poll_rate=2.0, max_poll_interval=30.0)  # 60 a round
    streams = [wallet_stream(n, weight=20) for n in range(5)]
    holders = {s.key: "a" for s in streams}  # 100 a round on a: 50 s
    plan = placer.plan(0.0, fleet, streams, holders)
    assert plan.over_latency == 0  # planned: two moved to b
    assert len(plan.moves) == 2 and {m.target for m in plan.moves} == {"b"}
    assert per_node(plan) == {"a": (0, 3), "b": (0, 2)}


def test_no_able_node_leaves_streams_unplaced() -> None:
    fleet = {"a": NodeCapacity(able=False)}
    plan = Placer().plan(0.0, fleet, [wallet_stream(1)], holders={"u001": "a"})
    assert plan.unplaced == ["u001"] and plan.assignment == {}
    assert admission(plan.nodes, 1, ALL_CHANNELS) is None  # it waits for a node


def test_admission_refuses_only_what_no_node_can_take() -> None:
    fleet = nodes("a", "b", slots=2, poll_rate=2.0, max_poll_interval=30.0)  # 60 a round each
    streams = [wallet_stream(n) for n in range(4)]
    plan = Placer().plan(0.0, fleet, streams, holders={})
    # Every slot is taken; each node may poll one more wallet of 42 within 30 s.
    assert admission(plan.nodes, 2, ALL_CHANNELS) is None
    assert admission(plan.nodes, 3, ALL_CHANNELS) is not None
    plan = Placer().plan(0.0, fleet, [*streams, wallet_stream(5), wallet_stream(6)], {})
    assert per_node(plan) == {"a": (2, 1), "b": (2, 1)}
    reason = admission(plan.nodes, 1, ALL_CHANNELS)
    assert reason is not None and "4 on WebSockets" in reason and "2 polled" in reason
    assert admission(plan.nodes, 1, 2) is None  # an account's poll (2) still fits
    assert admission(plan.nodes, 0, ALL_CHANNELS) is None  # wallets already fed: nothing more

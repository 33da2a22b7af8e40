"""Which node should feed each upstream stream: placement by capacity (scale-out).

Hyperliquid's limits are per IP: 10 tracked users on WebSocket user streams,
1000 subscriptions on at most 10 links, 1200 REST weight a minute. A fleet
whose nodes each leave from their own address has the sum of their budgets,
if its streams are spread by them: a user stream goes to a node with a free
WebSocket wallet slot, wherever its demand came from; a wallet is polled over
REST only when every node's slots are full, and then where polling it keeps
the interval shortest; market streams go where their upstream subscription
already is, or where most subscriptions are free.

When nodes join, leave or die, streams move so that WebSocket slots fill
before any wallet is polled and polling stays within the accepted latency: a
bounded number of moves a second (each a handover: the holder releases, the
new node starts from the stream's first demand and the shared ledger keeps it
exactly once), and a stream that moved is left alone for a while, so that
placement settles instead of oscillating.

Sans I/O: `Placer.plan` takes the fleet as plain records and the time, and
returns the plan; `admission` says whether the fleet can take new wallets.
broker/ownership.py runs it on one node and makes every node follow it; what
a node can feed and what a topic costs are the upstream's answers
(upstream/feeds.py, through FeedControl).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hlgateway.ratelimit import SlidingWindow

MOVES_PER_SECOND = 2  # voluntary moves, fleet-wide
MOVE_COOLDOWN = 30.0  # a stream that moved stays put this long
MOVE_TIMEOUT = 15.0  # a move not completed by then is planned again


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What one node can feed (its own address's budgets), as it publishes them."""

    ws_slots: int = 10  # wallets on WebSocket user streams
    subscriptions: int = 1000  # upstream subscriptions
    poll_rate: float = 16.0  # REST weight a second it may spend polling
    max_poll_interval: float = 30.0  # the accepted latency of a polled wallet
    able: bool = True  # its upstream serves (markets loaded, links not down for long)

    @property
    def poll_capacity(self) -> float:
        """Weight a round of polls may cost and stay within `max_poll_interval`."""
        return self.poll_rate * self.max_poll_interval


@dataclass(frozen=True, slots=True)
class Stream:
    """One demanded topic: the unit a node holds (its lease)."""

    key: str  # the topic's id
    wallets: frozenset[str] = frozenset()  # user topics: the wallets it follows
    # The upstream subscriptions it needs: `allMids`, `l2Book:BTC`; user topics:
    # one per wallet (`userFills:0x..`), used only while the wallet is on WebSocket.
    subscriptions: frozenset[str] = frozenset()
    poll_weight: int = 0  # what polling one of its wallets costs a round

    @property
    def is_user(self) -> bool:
        return bool(self.wallets)


@dataclass
class _Load:
    """A node's streams as planned, and what they cost it."""

    node: str
    capacity: NodeCapacity
    streams: dict[str, Stream] = field(default_factory=dict)
    # wallet -> its poll weight: the heaviest of its streams' (user_orders' 40 covers
    # the fills call user_fills' 20 would make; an account adds 2, not counted).
    wallets: dict[str, int] = field(default_factory=dict)
    subscriptions: dict[str, int] = field(default_factory=dict)  # key -> streams using it

    def add(self, stream: Stream) -> None:
        self.streams[stream.key] = stream
        for wallet in stream.wallets:
            self.wallets[wallet] = max(self.wallets.get(wallet, 0), stream.poll_weight)
        for key in stream.subscriptions:
            self.subscriptions[key] = self.subscriptions.get(key, 0) + 1

    def remove(self, stream: Stream) -> None:
        del self.streams[stream.key]
        for wallet in stream.wallets:
            weights = [s.poll_weight for s in self.streams.values() if wallet in s.wallets]
            if weights:
                self.wallets[wallet] = max(weights)
            else:
                del self.wallets[wallet]
        for key in stream.subscriptions:
            if self.subscriptions[key] > 1:
                self.subscriptions[key] -= 1
            else:
                del self.subscriptions[key]

    @property
    def free_slots(self) -> int:
        return self.capacity.ws_slots - len(self.wallets)

    @property
    def polled(self) -> int:
        return max(0, len(self.wallets) - self.capacity.ws_slots)

    @property
    def poll_weight(self) -> float:
        """A round of polls: the wallets beyond the slots, at their average weight."""
        if not self.polled:
            return 0.0
        return self.polled * sum(self.wallets.values()) / len(self.wallets)

    def interval_with(self, extra_weight: float) -> float:
        """Seconds between polls of each polled wallet with `extra_weight` more a round."""
        weight = self.poll_weight + extra_weight
        if weight <= 0:
            return 0.0
        return math.inf if self.capacity.poll_rate <= 0 else weight / self.capacity.poll_rate

    def new_wallets(self, stream: Stream) -> int:
        return sum(1 for wallet in stream.wallets if wallet not in self.wallets)

    def new_subscriptions(self, stream: Stream) -> int:
        return sum(1 for key in stream.subscriptions if key not in self.subscriptions)

    def summary(self) -> dict[str, float]:
        return {
            "websocket": len(self.wallets) - self.polled,
            "polled": self.polled,
            "pollInterval": interval if math.isfinite(interval := self.interval_with(0)) else -1,
            "freeSlots": max(0, self.free_slots),
            "pollRoom": max(0.0, self.capacity.poll_capacity - self.poll_weight),
        }

    def over_latency(self) -> int:
        """Polled wallets beyond what the accepted latency allows."""
        if not self.polled or self.poll_weight <= self.capacity.poll_capacity:
            return 0
        average = self.poll_weight / self.polled
        return self.polled - math.floor(self.capacity.poll_capacity / average)


@dataclass(frozen=True)
class Move:
    stream: str
    source: str
    target: str


@dataclass
class Plan:
    assignment: dict[str, str]  # stream -> the node that should hold it
    moves: list[Move]  # held streams asked to move now
    unplaced: list[str]  # streams no able node can take
    over_latency: int  # wallets the fleet can poll only beyond the accepted latency
    # Per node: websocket, polled, pollInterval (s; -1: no budget), freeSlots, pollRoom
    # (weight a round of polls may still add within the accepted latency).
    nodes: dict[str, dict[str, float]]


class Placer:
    """The fleet's placement, planned again at every call (one node runs it)."""

    def __init__(
        self,
        moves_per_second: int = MOVES_PER_SECOND,
        cooldown: float = MOVE_COOLDOWN,
        move_timeout: float = MOVE_TIMEOUT,
    ) -> None:
        self._moves = SlidingWindow(moves_per_second, 1.0)
        self._cooldown = cooldown
        self._move_timeout = move_timeout
        self._moved_at: dict[str, float] = {}
        self._pending: dict[str, tuple[str, float]] = {}  # stream -> (target, since)

    def plan(
        self,
        now: float,
        nodes: Mapping[str, NodeCapacity],
        streams: Iterable[Stream],
        holders: Mapping[str, str],
    ) -> Plan:
        """Where each stream should be. `nodes`: every live node's capacity, by name;
        `holders`: who holds each stream's lease now."""
        loads = {name: _Load(name, nodes[name]) for name in sorted(nodes) if nodes[name].able}
        wanted = {s.key: s for s in streams}
        self._forget(now, wanted, holders)
        assignment: dict[str, str] = {}
        unplaced: list[str] = []
        # Streams stay where they are (or where a move in flight takes them).
        orphans: list[Stream] = []
        for key in sorted(wanted):
            stream = wanted[key]
            pending = self._pending.get(key)
            node = pending[0] if pending is not None else holders.get(key)
            if node in loads:
                loads[node].add(stream)
                assignment[key] = node
            else:
                orphans.append(stream)
        # Streams nobody holds (new, or their node is gone): where they cost least.
        # User streams with the most wallets first, so that they find room whole.
        orphans.sort(key=lambda s: (-len(s.wallets), s.key))
        for stream in orphans:
            best = _best_node(stream, loads.values())
            if best is None:
                unplaced.append(stream.key)
                continue
            best.add(stream)
            assignment[stream.key] = best.node
        moves = self._rebalance(now, loads, assignment, holders)
        return Plan(
            assignment,
            moves,
            unplaced,
            sum(load.over_latency() for load in loads.values()),
            {name: load.summary() for name, load in loads.items()},
        )

    def _forget(self, now: float, wanted: Mapping[str, Stream], holders: Mapping[str, str]) -> None:
        for key, (target, since) in list(self._pending.items()):
            if key not in wanted or holders.get(key) == target or now - since > self._move_timeout:
                del self._pending[key]
        for key, at in list(self._moved_at.items()):
            if now - at > self._cooldown:
                del self._moved_at[key]

    def _rebalance(
        self,
        now: float,
        loads: dict[str, _Load],
        assignment: dict[str, str],
        holders: Mapping[str, str],
    ) -> list[Move]:
        """Moves, within the rate: polled wallets to free slots, then over-latency polling
        to nodes with room. Only streams held where they are planned move."""
        moves: list[Move] = []
        while self._moves.wait_time(now) == 0:
            move = _next_move(loads, holders, self._moved_at, self._pending)
            if move is None:
                break
            stream = loads[move.source].streams[move.stream]
            loads[move.source].remove(stream)
            loads[move.target].add(stream)
            assignment[move.stream] = move.target
            self._moves.try_take(now)
            self._moved_at[move.stream] = now
            self._pending[move.stream] = (move.target, now)
            moves.append(move)
        return moves


def _best_node(stream: Stream, loads: Iterable[_Load]) -> _Load | None:
    candidates = list(loads)
    if not candidates:
        return None
    if not stream.is_user:
        fits = [
            load
            for load in candidates
            if len(load.subscriptions) + load.new_subscriptions(stream)
            <= load.capacity.subscriptions
        ]
        # Where its upstream subscription already is; else where most are free.
        return min(
            fits or candidates,
            key=lambda load: (
                load.new_subscriptions(stream),
                len(load.subscriptions) - load.capacity.subscriptions,
                load.node,
            ),
        )
    on_ws = [load for load in candidates if load.new_wallets(stream) <= load.free_slots]
    if on_ws:
        # Where its wallets already are; else where most slots are free.
        return min(
            on_ws,
            key=lambda load: (load.new_wallets(stream), -load.free_slots, load.node),
        )
    # Every slot is full: polled where the interval stays shortest.
    return min(
        candidates,
        key=lambda load: (
            load.interval_with(_poll_cost(load, stream)) / load.capacity.max_poll_interval,
            load.node,
        ),
    )


def _poll_cost(load: _Load, stream: Stream) -> float:
    """What placing `stream` on `load` adds to its round of polls."""
    new = load.new_wallets(stream)
    polled_new = max(0, new - max(0, load.free_slots))
    return polled_new * stream.poll_weight


def _next_move(
    loads: Mapping[str, _Load],
    holders: Mapping[str, str],
    moved_at: Mapping[str, float],
    pending: Mapping[str, tuple[str, float]],
) -> Move | None:
    def movable(load: _Load) -> list[Stream]:
        # Held where planned, not moved lately; fewest wallets first (cheapest handover).
        return sorted(
            (
                s
                for s in load.streams.values()
                if s.is_user
                and holders.get(s.key) == load.node
                and s.key not in moved_at
                and s.key not in pending
            ),
            key=lambda s: (len(s.wallets), s.key),
        )

    # 1. A node polls while another has free slots: a stream moves there, and the
    # holder's own polled wallet takes the slot the stream frees (WalletFeeds).
    sources = sorted(
        (load for load in loads.values() if load.polled),
        key=lambda load: (-load.polled, load.node),
    )
    for source in sources:
        for stream in movable(source):
            freed = sum(1 for w in stream.wallets if _only_in(source, stream, w))
            targets = [
                load
                for load in loads.values()
                if load is not source and 0 < load.new_wallets(stream) <= load.free_slots
            ]
            if freed and targets:
                target = max(targets, key=lambda load: (load.free_slots, load.node))
                return Move(stream.key, source.node, target.node)
    # 2. A node polls beyond the accepted latency while another could poll within it.
    for source in sorted(loads.values(), key=lambda load: -load.over_latency()):
        if not source.over_latency():
            break
        for stream in movable(source):
            for target in sorted(loads.values(), key=lambda load: load.interval_with(0)):
                if target is source:
                    continue
                cost = _poll_cost(target, stream)
                if target.poll_weight + cost <= target.capacity.poll_capacity:
                    return Move(stream.key, source.node, target.node)
    return None


def _only_in(load: _Load, stream: Stream, wallet: str) -> bool:
    """Whether `stream` is the only one of `load`'s streams that follows `wallet`."""
    return not any(wallet in s.wallets for k, s in load.streams.items() if k != stream.key)


def admission(nodes: Mapping[str, Mapping[str, float]], wallets: int, weight: int) -> str | None:
    """Why the fleet cannot take `wallets` more wallets at all (each weighing
    `weight` a poll), or None if it can. `nodes`: a plan's per-node summary.

    They need a free WebSocket slot somewhere, or room to be polled within the
    accepted latency. A plan with no node able to feed (nodes starting, or all
    cut off from the exchange) judges nothing: the subscription waits for one.
    """
    if not nodes:
        return None
    free = sum(int(node["freeSlots"]) for node in nodes.values())
    if wallets <= free:
        return None
    room = sum(node["pollRoom"] for node in nodes.values())
    if (wallets - free) * weight <= room:
        return None
    websocket = sum(int(node["websocket"]) for node in nodes.values())
    polled = sum(int(node["polled"]) for node in nodes.values())
    return (
        f"No upstream capacity for another wallet in the fleet: {websocket} on WebSockets "
        f"(every node's slots taken) and {polled} polled, as many as the REST budgets "
        "allow within the accepted latency"
    )

"""The simulator's clock and fan-out.

One task advances the model in real time (``SimWorld.step``) and pushes what
changed to every subscribed link: trades, candles and user activity (fills,
orders, fundings, ledger updates) every tick, books, mids, bbo and
clearinghouse states every ``book_interval``, asset contexts every
``ctx_interval``. Each frame is built once per distinct subscription shape and
queued on each link (never awaited), so a slow client cannot stall the clock.
The same tick drops idle links and expires wallet tracking and idle budgets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from hlgateway.simulator import wire
from hlgateway.simulator.accounts import WalletActivity
from hlgateway.simulator.connection import Connection
from hlgateway.simulator.exchange import ExchangeResult
from hlgateway.simulator.info import mids_of
from hlgateway.simulator.market import Trade, aggregate_book
from hlgateway.simulator.state import SimState
from hlgateway.simulator.subscriptions import Subscription
from hlgateway.simulator.world import SimWorld

log = logging.getLogger("hlgateway.simulator")


class Fanout:
    def __init__(self, state: SimState) -> None:
        self._state = state

    async def run(self) -> None:
        cfg = self._state.config
        loop = asyncio.get_running_loop()
        next_book = loop.time() + cfg.book_interval
        next_ctx = loop.time() + cfg.ctx_interval
        pause = min(cfg.tick, cfg.book_interval, cfg.ctx_interval)
        while True:
            try:
                now = loop.time()
                result = self._state.world.step(self._state.model_now_ms())
                self._push_trades(result.trades)
                self._push_candles(result.candles)
                self._push_activities(result.activities)
                if now >= next_book:
                    next_book = next_due(next_book, cfg.book_interval, now)
                    self._push_books()
                if now >= next_ctx:
                    next_ctx = next_due(next_ctx, cfg.ctx_interval, now)
                    self._push_ctxs()
                self._drop_idle(now)
                self._state.tracking.expire(now)
                self._state.forget_budgets(now)
            except Exception:  # one bad tick must not stop the clock
                log.exception("simulator clock tick failed")
            await asyncio.sleep(pause)

    def _subscribers(self, kind: str) -> list[tuple[Connection, Subscription]]:
        return [(c, s) for c in self._state.connections.values() for s in c.subs_of(kind)]

    def _push_trades(self, trades: Iterable[Trade]) -> None:
        push_trades(self._state, trades)

    def _push_candles(self, changed: frozenset[tuple[str, str]]) -> None:
        if not changed:
            return
        candles = self._state.world.candles
        frames: dict[tuple[str, str], str] = {}
        for conn, sub in self._subscribers("candle"):
            key = (sub.coin or "", sub.interval or "")
            if key not in changed:
                continue
            if key not in frames:
                current = candles.current(*key)
                if current is None:
                    continue
                frames[key] = wire.dump(wire.frame("candle", wire.candle(current)))
            conn.push(sub, frames[key])

    def _push_activities(self, activities: Iterable[WalletActivity]) -> None:
        push_activities(self._state, activities)

    def _push_books(self) -> None:
        world = self._state.world
        subs = [(c, s) for c in self._state.connections.values() for s in c.subs.values()]
        if not subs:
            return
        mids_frames: dict[str, str] = {}
        books: dict[tuple[str, int | None, int | None], str] = {}
        states: dict[tuple[str, str], tuple[str, str]] = {}
        for conn, sub in subs:
            if sub.kind in ("allMids", "l2Book", "bbo", "clearinghouseState") and conn.withhold(
                sub
            ):
                continue
            if sub.kind == "allMids":
                if sub.dex not in mids_frames:
                    mids_frames[sub.dex] = all_mids_frame(self._state.world, sub.dex)
                conn.send(mids_frames[sub.dex])
            elif sub.kind == "l2Book" and sub.coin is not None:
                key = (sub.coin, sub.n_sig_figs, sub.mantissa)
                if key not in books:
                    book = aggregate_book(world.book(sub.coin), sub.n_sig_figs, sub.mantissa)
                    books[key] = wire.dump(wire.frame("l2Book", wire.l2_book(book)))
                conn.send(books[key])
            elif sub.kind == "bbo" and sub.coin is not None:
                data = wire.bbo(world.book(sub.coin))
                best = wire.dump(data["bbo"])
                if conn.bbo_sent.get(sub.key) != best:  # bbo is pushed only on change
                    conn.bbo_sent[sub.key] = best
                    conn.send(wire.dump(wire.frame("bbo", data)))
            elif sub.kind == "clearinghouseState" and sub.user is not None:
                push_state(self._state.world, conn, sub.user, sub.dex, states)

    def _push_ctxs(self) -> None:
        frames: dict[str, str] = {}
        for conn, sub in self._subscribers("activeAssetCtx"):
            coin = sub.coin
            if coin is None:
                continue
            if coin not in frames:
                frames[coin] = asset_ctx_frame(self._state.world, coin)
            conn.push(sub, frames[coin])

    def _drop_idle(self, now: float) -> None:
        limit = self._state.config.idle_timeout
        for conn in list(self._state.connections.values()):
            if now - conn.last_sent > limit:
                log.info("dropping connection %d: nothing sent for %.0f s", conn.id, limit)
                self._state.counters.dropped_idle += 1
                self._state.cut(conn)


def all_mids_frame(world: SimWorld, dex: str) -> str:
    """An ``allMids`` frame of one perp dex (a builder dex's names itself in ``dex``)."""
    data: dict[str, Any] = {"mids": mids_of(world, dex)}
    if dex:
        data["dex"] = dex
    return wire.dump(wire.frame("allMids", data))


def asset_ctx_frame(world: SimWorld, coin: str) -> str:
    """A perp's ``activeAssetCtx`` frame, or a spot pair's ``activeSpotAssetCtx``."""
    pair = world.listing.pair(coin)
    if pair is not None:
        data = wire.active_spot_asset_ctx(pair, world.market.spot_ctx(coin))
        return wire.dump(wire.frame("activeSpotAssetCtx", data))
    data = wire.active_asset_ctx(coin, world.market.ctx(coin))
    return wire.dump(wire.frame("activeAssetCtx", data))


def push_result(state: SimState, result: ExchangeResult) -> None:
    """What an /exchange action changed goes out at once, not at the next tick."""
    push_trades(state, result.trades)
    push_activities(state, result.activities)


def push_trades(state: SimState, trades: Iterable[Trade]) -> None:
    """Send new trades to every ``trades`` subscriber of their coin (one frame per coin)."""
    by_coin: dict[str, list[dict[str, Any]]] = {}
    for t in trades:
        by_coin.setdefault(t.coin, []).append(wire.trade(t))
    if not by_coin:
        return
    frames = {coin: wire.dump(wire.frame("trades", rows)) for coin, rows in by_coin.items()}
    for conn in list(state.connections.values()):
        for sub in conn.subs_of("trades"):
            if sub.coin in frames:
                conn.push(sub, frames[sub.coin])


def push_activities(state: SimState, activities: Iterable[WalletActivity]) -> None:
    """Send each wallet's order updates, fills, fundings and ledger updates to its user
    streams, and its new state."""
    for act in activities:
        frames: dict[str, str] = {}
        if act.order_updates:
            updates = [wire.order_update(u) for u in act.order_updates]
            frames["orderUpdates"] = wire.dump(wire.frame("orderUpdates", updates))
        if act.fills:
            fills = [wire.fill(f) for f in act.fills]
            frames["userFills"] = wire.dump(
                wire.frame("userFills", {"user": act.user, "fills": fills})
            )
            frames["userEvents"] = wire.dump(wire.frame("user", {"fills": fills}))
        slices = [wire.twap_slice_fill(f) for f in act.fills if f.twap_id is not None]
        if slices:
            data = {"user": act.user, "twapSliceFills": slices}
            frames["userTwapSliceFills"] = wire.dump(wire.frame("userTwapSliceFills", data))
        if act.twaps:
            data = {"user": act.user, "history": list(act.twaps)}
            frames["userTwapHistory"] = wire.dump(wire.frame("userTwapHistory", data))
        if act.fundings:
            data = {"user": act.user, "fundings": [wire.ws_funding(p) for p in act.fundings]}
            frames["userFundings"] = wire.dump(wire.frame("userFundings", data))
        if act.ledger:
            entries = [wire.ledger_update(u) for u in act.ledger]
            data = {"user": act.user, "nonFundingLedgerUpdates": entries}
            frames["userNonFundingLedgerUpdates"] = wire.dump(
                wire.frame("userNonFundingLedgerUpdates", data)
            )
        moved = bool(act.fills or act.fundings or act.ledger)
        states: dict[tuple[str, str], tuple[str, str]] = {}
        for conn in list(state.connections.values()):
            for sub in conn.subs.values():
                if sub.user != act.user:
                    continue
                if sub.kind in frames:
                    conn.push(sub, frames[sub.kind])
                elif sub.kind == "clearinghouseState" and moved and not conn.withhold(sub):
                    push_state(state.world, conn, act.user, sub.dex, states)


def push_state(
    world: SimWorld,
    conn: Connection,
    user: str,
    dex: str,
    cache: dict[tuple[str, str], tuple[str, str]],
    *,
    force: bool = False,
) -> None:
    """Send ``user``'s clearinghouseState on ``dex`` to ``conn`` if it changed since last sent."""
    key = (user, dex)
    if key not in cache:
        view = world.accounts.account_view(user, world.now_ms, dex)
        # The fingerprint ignores "time": a new timestamp alone is not a change.
        fingerprint = wire.dump(wire.clearinghouse_state(dataclasses.replace(view, time=0)))
        cache[key] = (
            fingerprint,
            wire.dump(
                wire.frame("clearinghouseState", wire.ws_clearinghouse_state(user, view, dex))
            ),
        )
    fingerprint, text = cache[key]
    if force or conn.state_sent.get(key) != fingerprint:
        conn.state_sent[key] = fingerprint
        conn.send(text)


def next_due(due: float, interval: float, now: float) -> float:
    """Keep a fixed cadence, but skip missed beats instead of bursting."""
    due += interval
    return due if due > now else now + interval

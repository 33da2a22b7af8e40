"""Gateway events in, lines and alerts out: the notifier's `consume` loop.

Each event is handled in one transaction with what it makes: a fills message's
lines, its claims and its stream position commit together, so a kill never
loses or repeats one. An event that cannot be handled (the database is away)
is tried again, with backoff, before anything later: a fill is never skipped.
Meanwhile the feed's inbox fills up and the feed pauses its streams (feed.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from hlgateway.backoff import Backoff
from hlgateway.client import Position
from hlgateway.notifier.alerts import Direction, liquidation_distance, tier_percent, tier_step
from hlgateway.notifier.events import (
    FILLS,
    LEDGER,
    ORDERS,
    Account,
    FeedEvent,
    Fills,
    Gap,
    LedgerEvents,
    OrderEvent,
    Prices,
    Refused,
)
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.format import (
    LEDGER_KINDS,
    alert_line,
    fill_line,
    ledger_line,
    liquidation_line,
    order_line,
    short_wallet,
)
from hlgateway.notifier.history import FillHistory
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.state import BotState
from hlgateway.reconnect import GiveUp, Reconnect, retrying

log = logging.getLogger("hlgateway.notifier")

RELOAD_MARGIN_MS = 5_000  # fills may arrive a little out of time order
# Retries, doubling, each delay drawn from its upper half (jitter): the database failing
# an event (1, 2, 4 .. 10 s, for ever: never skip a fill), the info API failing a reload
# (0.5 .. 4 s, 5 tries in all).
STORE_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=10.0)
RELOAD_RETRY = Backoff(initial=0.5, decay=2.0, max_delay=4.0, max_attempts=4)


class Consumer:
    def __init__(
        self,
        repo: Repository,
        feed: GatewayFeed,
        state: BotState,
        history: FillHistory,
        info_url: str | None,
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.repo = repo
        self.feed = feed
        self.state = state
        self.history = history
        self.info_url = info_url  # given; else the gateway's (feed.info_url)
        self.now_ms = now_ms
        self.wake = wake  # the sender: lines were made

    async def run(self) -> None:
        policy = Reconnect(STORE_RETRY)
        while True:
            event = await self.feed.next()
            # A database outage: keep the event and try again (never skip a fill).
            await retrying(
                functools.partial(self.handle, event),
                policy,
                failed=functools.partial(_handling_failed, type(event).__name__),
            )
            self.wake()

    async def handle(self, event: FeedEvent) -> None:
        match event:
            case Fills():
                await self.fills(event.wallet, event.fills, event.position)
            case Gap(wallet=wallet, channel=channel):
                if channel == FILLS:
                    await self.reload(wallet)
                elif channel == LEDGER:
                    await self.reload_ledger(wallet)
            case LedgerEvents():
                await self.ledger(event.wallet, event.events, event.position)
            case OrderEvent():
                await self.order(event)
            case Account():
                self.state.accounts[event.wallet] = event.state
                await self.liquidation(event.wallet, event.state)
            case Prices():
                await self.prices(event.prices)
            case Refused():
                log.warning(
                    "gateway refused %s for %s: %s %s",
                    event.channel,
                    event.wallet,
                    event.code,
                    event.message,
                )

    async def fills(
        self, wallet: str, fills: list[dict[str, Any]], position: Position | None
    ) -> int:
        """Record fills for every chat watching `wallet`, each (chat, tid) once. Returns the
        number of lines made."""
        made = 0
        now = self.now_ms()
        async with self.repo.transaction() as t:
            watchers = await t.watches.watchers(wallet)
            newest: int | None = None
            for fill in fills:
                tid, when = fill.get("id"), fill.get("timestamp")
                if not isinstance(tid, int) or not isinstance(when, int):
                    log.warning("fill without an integer id/timestamp ignored: %r", fill)
                    continue
                newest = when if newest is None else max(newest, when)
                for w in watchers:
                    if when >= w.since_ms and await t.outbox.claim(w.chat_id, wallet, tid):
                        await t.outbox.add_line(w.chat_id, fill_line(fill, w.label), now)
                        made += 1
            await t.streams.set(
                wallet,
                FILLS,
                position.epoch if position else None,
                position.offset if position else None,
                newest,
            )
        return made

    async def reload(self, wallet: str) -> None:
        """The fills stream of `wallet` (re)started without a replay: fetch what it may
        have missed from the exchange; the per-fill claim drops what was seen."""
        info_url = self.info_url or self.feed.info_url
        if info_url is None:
            log.warning(
                "fills stream of %s restarted without replay; no info API known to reload from"
                " (--info-url, or a gateway that names it)",
                wallet,
            )
            return
        async with self.repo.transaction() as t:
            stream = await t.streams.get(wallet, FILLS)
            since = await t.watches.earliest(wallet)
        if since is None:
            return
        start = since
        if stream is not None and stream.last_fill_ms is not None:
            start = max(start, stream.last_fill_ms - RELOAD_MARGIN_MS)
        names = await self.history.market_names(self.feed.url)
        fills = await retrying(
            lambda: self.history.fills_since(info_url, wallet, start, names),
            Reconnect(RELOAD_RETRY),
            failed=lambda exc: log.warning("reloading fills of %s failed (%s)", wallet, exc),
        )
        if isinstance(fills, GiveUp):
            log.error("could not reload the fills of %s since %d", wallet, start)
            return
        made = await self.fills(wallet, fills, None)
        if made:
            log.info("reloaded %d fill notification(s) for %s", made, wallet)

    async def ledger(
        self, wallet: str, events: list[dict[str, Any]], position: Position | None
    ) -> int:
        """Deposits, withdrawals and liquidations of `wallet` for every chat with
        /ledger on, each (chat, event id) once. Returns the number of lines made."""
        made = 0
        now = self.now_ms()
        async with self.repo.transaction() as t:
            watchers = [w for w in await t.watches.watchers(wallet) if w.ledger_since is not None]
            newest: int | None = None
            for event in events:
                event_id, when = event.get("id"), event.get("time")
                if not isinstance(event_id, str) or not isinstance(when, int):
                    log.warning("ledger event without an id/time ignored: %r", event)
                    continue
                newest = when if newest is None else max(newest, when)
                if event.get("kind") not in LEDGER_KINDS:
                    continue
                for w in watchers:
                    since = w.ledger_since or 0
                    if when < since or not await t.outbox.claim_event(w.chat_id, wallet, event_id):
                        continue
                    line = ledger_line(event, w.label)
                    if line is not None:
                        await t.outbox.add_line(w.chat_id, line, now)
                        made += 1
            await t.streams.set(
                wallet,
                LEDGER,
                position.epoch if position else None,
                position.offset if position else None,
                newest,
            )
        return made

    async def reload_ledger(self, wallet: str) -> None:
        """The ledger stream of `wallet` (re)started without a replay: read what it may
        have missed from the exchange (the same ids the gateway gives; claims drop
        what was seen)."""
        info_url = self.info_url or self.feed.info_url
        if info_url is None:
            log.warning("ledger of %s restarted without replay; no info API to reload from", wallet)
            return
        async with self.repo.transaction() as t:
            stream = await t.streams.get(wallet, LEDGER)
            starts = [w.ledger_since for w in await t.watches.watchers(wallet) if w.ledger_since]
        if not starts:
            return
        start = min(starts)
        if stream is not None and stream.last_fill_ms is not None:
            start = max(start, stream.last_fill_ms - RELOAD_MARGIN_MS)
        events = await retrying(
            lambda: self.history.ledger_since(info_url, wallet, start),
            Reconnect(RELOAD_RETRY),
            failed=lambda exc: log.warning("reloading the ledger of %s failed (%s)", wallet, exc),
        )
        if isinstance(events, GiveUp):
            log.error("could not reload the ledger of %s since %d", wallet, start)
            return
        made = await self.ledger(wallet, events, None)
        if made:
            log.info("reloaded %d ledger notification(s) for %s", made, wallet)

    async def order(self, event: OrderEvent) -> None:
        action = event.update.get("action")
        now = self.now_ms()
        async with self.repo.transaction() as t:
            if action in ("created", "cancelled"):
                for w in await t.watches.watchers(event.wallet):
                    if w.orders:
                        await t.outbox.add_line(w.chat_id, order_line(event.update, w.label), now)
            if event.position is not None:
                await t.streams.set(
                    event.wallet, ORDERS, event.position.epoch, event.position.offset, None
                )

    async def liquidation(self, wallet: str, state: dict[str, Any]) -> None:
        distances: dict[str, tuple[Decimal | None, Any]] = {}
        for p in state.get("positions") or []:
            distances[str(p.get("symbol"))] = (_distance(p), p.get("liquidationPrice"))
        tiers = self.state.tiers
        changes: list[tuple[int, str, int, str | None]] = []
        async with self.repo.transaction() as t:
            watchers = await t.watches.watchers(wallet)
        for w in watchers:
            symbols = {s for (chat, wal, s) in tiers if chat == w.chat_id and wal == wallet}
            for symbol in symbols | set(distances):
                current = tiers.get((w.chat_id, wallet, symbol), 0)
                distance, liq = distances.get(symbol, (None, None))
                new, warn = tier_step(distance, current)
                if new != current:
                    text = None
                    if warn and distance is not None:
                        who = w.label or short_wallet(wallet)
                        text = liquidation_line(symbol, who, distance, liq, tier_percent(new))
                    changes.append((w.chat_id, symbol, new, text))
        if not changes:
            return
        now = self.now_ms()
        async with self.repo.transaction() as t:
            for chat, symbol, new, text in changes:
                await t.tiers.set(chat, wallet, symbol, new)
                if text is not None:
                    await t.outbox.add_line(chat, text, now)
        for chat, symbol, new, _text in changes:
            tiers[(chat, wallet, symbol)] = new

    async def prices(self, prices: dict[str, Any]) -> None:
        self.state.observe_prices(prices)
        for alert in list(self.state.alerts.values()):
            price = self.state.prices.get(alert.symbol)
            if price is None:
                continue
            was = alert.armed
            fired = alert.observe(price)
            if alert.armed == was:
                continue
            async with self.repo.transaction() as t:
                await t.alerts.set_armed(alert.id, alert.armed)
                if fired:
                    text = alert_line(
                        alert.symbol,
                        alert.direction is Direction.ABOVE,
                        price,
                        alert.direction.value,
                        alert.level,
                    )
                    await t.outbox.add_message(alert.chat_id, text, self.now_ms())


def _handling_failed(kind: str, _: Exception) -> None:
    log.exception("handling %s failed; retrying", kind)  # called inside the except


def _distance(p: dict[str, Any]) -> Decimal | None:
    try:
        size = Decimal(str(p.get("size")))
        value = Decimal(str(p.get("positionValue")))
        liq_raw = p.get("liquidationPrice")
        if liq_raw is None or size == 0:
            return None
        mark = value / abs(size)
        return liquidation_distance(mark, Decimal(str(liq_raw)))
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None

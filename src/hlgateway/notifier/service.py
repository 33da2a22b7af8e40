"""The notifier: Telegram updates in, gateway events in, the outbox out.

Three loops share one store: `poll` (getUpdates -> commands, each in a
transaction with the update offset), `consume` (gateway events -> lines and
alerts, each message in a transaction with its stream position) and `send`
(pack lines into messages, send them as the pacer allows, record the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from hlgateway.backoff import Backoff
from hlgateway.notifier import commands as c
from hlgateway.notifier.alerts import (
    Direction,
    PriceAlert,
    liquidation_distance,
    tier_percent,
    tier_step,
)
from hlgateway.notifier.database import Tx
from hlgateway.notifier.feed import (
    FILLS,
    ORDERS,
    Account,
    FeedEvent,
    Fills,
    Gap,
    GatewayFeed,
    OrderEvent,
    Position,
    Prices,
    Refused,
)
from hlgateway.notifier.format import esc, fill_line, number, order_line, short_wallet
from hlgateway.notifier.history import FillHistory
from hlgateway.notifier.pacing import Limits, Pacer
from hlgateway.notifier.store import Outgoing, Store
from hlgateway.notifier.telegram import Incoming, Outcome, TelegramApi
from hlgateway.notifier.webhook import Webhook
from hlgateway.reconnect import GiveUp, Reconnect, Retry, Supervisor, retrying

log = logging.getLogger("hlgateway.notifier")

UPDATE_OFFSET = "telegram_update_offset"
RELOAD_MARGIN_MS = 5_000  # fills may arrive a little out of time order
MAX_ATTEMPTS = 20  # a message that failed this often for reasons other than 429 is dropped
# Retries, doubling, each delay drawn from its upper half (jitter): getUpdates failing
# (1, 2, 4 .. 30 s), the database failing an event (1, 2, 4 .. 10 s, for ever: never
# skip a fill), the info API failing a reload (0.5 .. 4 s, 5 tries in all), a message
# failing (its chat held 1, 2, 4 .. 60 s).
POLL_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=30.0)
STORE_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=10.0)
RELOAD_RETRY = Backoff(initial=0.5, decay=2.0, max_delay=4.0, max_attempts=4)
SEND_RETRY = Backoff(initial=1.0, decay=2.0, max_delay=60.0)


@dataclass(frozen=True)
class Options:
    coalesce_ms: int = 700  # fills of one chat within this window share a message
    max_watches: int = 10  # per chat
    max_alerts: int = 20  # per chat
    # Webhook mode: the public URL Telegram posts to, where to listen, the secret.
    webhook_url: str | None = None
    webhook_listen: tuple[str, int] = ("0.0.0.0", 8443)
    webhook_secret: str = ""
    # The dashboard's address for /dashboard's web-app button (https for real Telegram).
    dashboard_url: str | None = None
    limits: Limits = field(default_factory=Limits)


class Notifier:
    def __init__(
        self,
        store: Store,
        api: TelegramApi,
        feed: GatewayFeed,
        history: FillHistory | None = None,
        options: Options | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.api = api
        self.feed = feed
        self.history = history
        self.options = options or Options()
        self.clock = clock
        self.pacer = Pacer(self.options.limits)
        self.alerts: dict[int, PriceAlert] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, Decimal] = {}
        self._tiers: dict[tuple[int, str, str], int] = {}
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.bot_username: str | None = None
        self.webhook: Webhook | None = None
        self.started = asyncio.Event()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        self.bot_username = await self.api.start()
        for row in await self.store.all_alerts():
            self.alerts[row.id] = PriceAlert(
                row.id,
                row.chat_id,
                row.symbol,
                Direction(row.direction),
                Decimal(row.level),
                row.armed,
            )
        async with self.store.db.transaction() as tx:
            for chat_id, wallet, symbol, tier in await tx.fetchall(
                "SELECT chat_id, wallet, symbol, tier FROM liquidation_tiers"
            ):
                self._tiers[(int(chat_id), str(wallet), str(symbol))] = int(tier)
        # Pace from where the last run stopped: its last requests and 429 holds.
        last, held = await self.store.pacing_state(self.now_ms())
        for chat_id, at_ms in last.items():
            self.pacer.restore(chat_id, at_ms / 1000)
        for chat_id, until_ms in held.items():
            self.pacer.hold(chat_id, until_ms / 1000)
        self.feed.start()
        await self.feed.want_prices(True)  # alerts, and to know which symbols exist
        fills = await self.store.streams(FILLS)
        orders = await self.store.streams(ORDERS)
        for wallet in await self.store.watched_wallets():
            self.feed.watch(
                wallet, {FILLS: _pos(fills.get(wallet)), ORDERS: _pos(orders.get(wallet))}
            )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume(), name="notifier-consume"),
            loop.create_task(self._send_loop(), name="notifier-send"),
        ]
        if self.options.webhook_url:
            path = urlsplit(self.options.webhook_url).path or "/"
            self.webhook = Webhook(
                path, self.options.webhook_secret, self.api.parse_update, self.handle_update
            )
            await self.webhook.start(*self.options.webhook_listen)
            await self.api.use_webhook(self.options.webhook_url, self.options.webhook_secret)
        else:
            await self.api.use_polling()
            self._tasks.append(loop.create_task(self._poll(), name="notifier-poll"))
        self.started.set()
        log.info("notifier up as @%s", self.bot_username)

    async def run(self) -> None:
        """Until a loop fails (it raises) or `stop()`."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; let the requests in flight finish and be recorded; close.
        Every step is bounded: a shutdown never hangs on a peer."""
        self._stopping = True
        if self.webhook is not None:
            await _bounded(self.webhook.stop(), grace)
        for task in self._tasks:
            task.cancel()
        await _bounded(asyncio.gather(*self._tasks, return_exceptions=True), grace)
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=grace)
        await _bounded(self.feed.close(), grace)
        if self.history is not None:
            await _bounded(self.history.close(), grace)
        await _bounded(self.api.close(), grace)
        await self.store.close()

    # -- Telegram updates --------------------------------------------------------------
    async def _poll(self) -> None:
        async with self.store.db.transaction() as tx:
            raw = await Store.get_kv(tx, UPDATE_OFFSET)
        offset = int(raw) if raw is not None else None
        policy = Reconnect(POLL_RETRY)

        async def long_poll() -> Retry | GiveUp:
            """Up while getUpdates answers: a link, as far as retrying goes."""
            nonlocal offset
            while True:
                try:
                    updates = await self.api.updates(offset)
                except Exception as exc:
                    log.warning("getUpdates failed (%s); retrying", exc)
                    return policy.ended(repr(exc))
                policy.connected()
                for update in updates:
                    await self.handle_update(update)
                    offset = update.update_id + 1

        await Supervisor(long_poll).run()

    async def handle_update(self, update: Incoming) -> None:
        after: list[Callable[[], Any]] = []
        async with self.store.db.transaction() as tx:
            done = await Store.get_kv(tx, UPDATE_OFFSET)
            if done is not None and update.update_id < int(done):
                return  # handled already (a webhook retry, a poll overlap)
            if update.chat_id is not None and update.text is not None:
                await self._command(tx, update, after)
            await Store.set_kv(tx, UPDATE_OFFSET, str(update.update_id + 1))
        for action in after:  # only once the command's effects are committed
            result = action()
            if asyncio.iscoroutine(result):
                await result
        self._wake.set()

    async def _command(self, tx: Tx, update: Incoming, after: list[Callable[[], Any]]) -> None:
        assert update.chat_id is not None and update.text is not None
        chat = update.chat_id
        command = c.parse(update.text, self.bot_username)
        if isinstance(command, c.NotACommand):
            if update.chat_type == "private":
                await self._reply(tx, chat, "Send /help to see what I can do.")
            return
        await Store.touch_chat(tx, chat)
        now = self.now_ms()
        match command:
            case c.BadCommand(reply=text):
                await self._reply(tx, chat, text)
            case c.Start() | c.Help():
                intro = (
                    "I notify the fills of Hyperliquid wallets.\n\n"
                    if isinstance(command, c.Start)
                    else ""
                )
                await self._reply(tx, chat, intro + c.HELP)
            case c.Watch(wallet=wallet, label=label):
                existing = {w.wallet for w in await Store.watches_of(tx, chat)}
                if wallet not in existing and len(existing) >= self.options.max_watches:
                    await self._reply(
                        tx,
                        chat,
                        f"Too many watches (at most {self.options.max_watches})."
                        " /unwatch one first.",
                    )
                    return
                new = await Store.add_watch(tx, chat, wallet, label, now)
                name = f" ({label})" if label else ""
                if new:
                    await self._reply(
                        tx, chat, f"Watching {wallet}{name}. Every fill from now on comes here."
                    )
                else:
                    await self._reply(tx, chat, f"Already watching {wallet}; label set{name}.")
                if wallet not in self.feed.watching():
                    after.append(lambda: self.feed.watch(wallet))
            case c.Unwatch(wallet=wallet):
                if not await Store.remove_watch(tx, chat, wallet):
                    await self._reply(tx, chat, f"Not watching {wallet}.")
                    return
                await self._reply(tx, chat, f"Stopped watching {wallet}.")
                others = await tx.scalar("SELECT COUNT(*) FROM watches WHERE wallet = ?", (wallet,))
                if not others:
                    after.append(lambda: self.feed.unwatch(wallet))
                for key in [k for k in self._tiers if k[0] == chat and k[1] == wallet]:
                    after.append(lambda key=key: self._tiers.pop(key, None))  # type: ignore[misc]
            case c.Wallets():
                rows = await Store.watches_of(tx, chat)
                if not rows:
                    await self._reply(tx, chat, "No wallets watched. /watch <0x wallet> [label]")
                    return
                lines = [f"{r.wallet}" + (f" ({r.label})" if r.label else "") for r in rows]
                await self._reply(tx, chat, "Watching:\n" + "\n".join(lines))
            case c.Positions():
                await self._positions(tx, chat)
            case c.Alert(symbol=symbol, direction=direction, price=level):
                if not self.prices:
                    await self._reply(tx, chat, "Prices are not in yet; try again in a moment.")
                    return
                if symbol not in self.prices:
                    await self._reply(tx, chat, f"Unknown symbol: {symbol}")
                    return
                if len(await Store.alerts_of(tx, chat)) >= self.options.max_alerts:
                    await self._reply(
                        tx, chat, f"Too many alerts (at most {self.options.max_alerts})."
                    )
                    return
                alert_id = await Store.add_alert(tx, chat, symbol, direction.value, str(level))
                alert = PriceAlert(alert_id, chat, symbol, direction, level)
                after.append(lambda: self.alerts.__setitem__(alert_id, alert))
                await self._reply(
                    tx,
                    chat,
                    f"Alert set: {symbol} {direction.value} {level}"
                    f" (now {number(str(self.prices[symbol]))}).",
                )
            case c.Alerts():
                alert_rows = await Store.alerts_of(tx, chat)
                if not alert_rows:
                    await self._reply(tx, chat, "No alerts. /alert <SYMBOL> above|below <price>")
                    return
                lines = [
                    f"{n}. {r.symbol} {r.direction} {r.level}" + ("" if r.armed else " (fired)")
                    for n, r in enumerate(alert_rows, start=1)
                ]
                await self._reply(tx, chat, "\n".join(lines))
            case c.DelAlert(number=n):
                alert_rows = await Store.alerts_of(tx, chat)
                if n > len(alert_rows):
                    await self._reply(tx, chat, f"No alert {n}; /alerts lists {len(alert_rows)}.")
                    return
                row = alert_rows[n - 1]
                await Store.delete_alert(tx, row.id)
                after.append(lambda: self.alerts.pop(row.id, None))
                await self._reply(
                    tx, chat, f"Deleted alert {n}: {row.symbol} {row.direction} {row.level}"
                )
            case c.Mute(minutes=minutes):
                await Store.set_muted(tx, chat, now + minutes * 60_000)
                await self._reply(
                    tx, chat, f"Muted for {minutes} min. Fills are kept and come when it ends."
                )
            case c.Unmute():
                await Store.set_muted(tx, chat, 0)
                await self._reply(tx, chat, "Unmuted.")
            case c.Orders(on=on):
                await Store.set_orders(tx, chat, on)
                await self._reply(
                    tx, chat, "Order events on." if on else "Order events off (fills only)."
                )
            case c.Dashboard():
                await self._dashboard(tx, chat, update.chat_type)

    async def _dashboard(self, tx: Tx, chat: int, chat_type: str | None) -> None:
        """A web-app button: the dashboard opens inside Telegram, logged in as this chat
        (the gateway checks Telegram's initData and reads this chat's watches)."""
        url = self.options.dashboard_url
        if url is None:
            await self._reply(tx, chat, "This bot has no dashboard configured.")
        elif chat_type != "private":
            # Telegram allows web-app buttons in private chats only.
            await self._reply(tx, chat, "Open /dashboard in a private chat with me.")
        elif not await Store.watches_of(tx, chat):
            await self._reply(tx, chat, "Watch a wallet first: /watch <0x wallet> [label]")
        else:
            text = esc("Your watched wallets, live: orders, fills, positions.")
            await Store.add_message(tx, chat, text, self.now_ms(), web_app_url=url)

    async def _reply(self, tx: Tx, chat_id: int, text: str) -> None:
        await Store.add_message(tx, chat_id, esc(text), self.now_ms())

    async def _positions(self, tx: Tx, chat: int) -> None:
        rows = await Store.watches_of(tx, chat)
        if not rows:
            await self._reply(tx, chat, "No wallets watched.")
            return
        out: list[str] = []
        for row in rows:
            name = esc(row.label or short_wallet(row.wallet))
            state = self.accounts.get(row.wallet)
            if state is None:
                out.append(f"<b>{name}</b>: no account data yet")
                continue
            positions = [p for p in state.get("positions") or [] if p.get("size")]
            out.append(
                f"<b>{name}</b>: account {esc(number(state.get('accountValue')))}"
                + ("" if positions else ", no open positions")
            )
            for p in positions:
                size = p.get("size")
                numeric = isinstance(size, int | float)
                side = "long" if numeric and size > 0 else "short"
                amount = esc(number(abs(size) if numeric else size))
                liq = p.get("liquidationPrice")
                out.append(
                    f"  {esc(p.get('symbol'))} {side} {amount}"
                    f" @ {esc(number(p.get('entryPrice')))}"
                    f" · uPnL {esc(number(p.get('unrealizedPnl')))}"
                    + (f" · liq {esc(number(liq))}" if liq else "")
                )
        await Store.add_message(tx, chat, "\n".join(out), self.now_ms())

    # -- gateway events -------------------------------------------------------------
    async def _consume(self) -> None:
        policy = Reconnect(STORE_RETRY)
        while True:
            event = await self.feed.queue.get()
            # A database outage: keep the event and try again (never skip a fill).
            await retrying(
                functools.partial(self.handle_event, event),
                policy,
                failed=functools.partial(_handling_failed, type(event).__name__),
            )
            self._wake.set()

    async def handle_event(self, event: FeedEvent) -> None:
        match event:
            case Fills():
                await self._fills(event.wallet, event.fills, event.position)
            case Gap(wallet=wallet, channel=channel):
                if channel == FILLS:
                    await self._reload(wallet)
            case OrderEvent():
                await self._order(event)
            case Account():
                self.accounts[event.wallet] = event.state
                await self._liquidation(event.wallet, event.state)
            case Prices():
                await self._prices(event.prices)
            case Refused():
                log.warning(
                    "gateway refused %s for %s: %s %s",
                    event.channel,
                    event.wallet,
                    event.code,
                    event.message,
                )

    async def _fills(
        self, wallet: str, fills: list[dict[str, Any]], position: Position | None
    ) -> int:
        """Record fills for every chat watching `wallet`, each (chat, tid) once. Returns the
        number of lines made."""
        made = 0
        now = self.now_ms()
        async with self.store.db.transaction() as tx:
            watchers = await Store.watchers(tx, wallet)
            newest: int | None = None
            for fill in fills:
                tid, when = fill.get("id"), fill.get("timestamp")
                if not isinstance(tid, int) or not isinstance(when, int):
                    log.warning("fill without an integer id/timestamp ignored: %r", fill)
                    continue
                newest = when if newest is None else max(newest, when)
                for w in watchers:
                    if when >= w.since_ms and await Store.deliver_once(tx, w.chat_id, wallet, tid):
                        await Store.add_line(tx, w.chat_id, fill_line(fill, w.label), now)
                        made += 1
            await Store.set_stream(
                tx,
                wallet,
                FILLS,
                position.epoch if position else None,
                position.offset if position else None,
                newest,
            )
        return made

    async def _reload(self, wallet: str) -> None:
        """The fills stream of `wallet` (re)started without a replay: fetch what it may
        have missed from the exchange; the per-fill claim drops what was seen."""
        if self.history is None:
            log.warning(
                "fills stream of %s restarted without replay; no --info-url to reload", wallet
            )
            return
        async with self.store.db.transaction() as tx:
            stream = await Store.stream(tx, wallet, FILLS)
            since = await tx.scalar("SELECT MIN(since_ms) FROM watches WHERE wallet = ?", (wallet,))
        if since is None:
            return
        start = int(since)
        if stream is not None and stream.last_fill_ms is not None:
            start = max(start, stream.last_fill_ms - RELOAD_MARGIN_MS)
        history = self.history
        fills = await retrying(
            lambda: history.fills_since(wallet, start),
            Reconnect(RELOAD_RETRY),
            failed=lambda exc: log.warning("reloading fills of %s failed (%s)", wallet, exc),
        )
        if isinstance(fills, GiveUp):
            log.error("could not reload the fills of %s since %d", wallet, start)
            return
        made = await self._fills(wallet, fills, None)
        if made:
            log.info("reloaded %d fill notification(s) for %s", made, wallet)

    async def _order(self, event: OrderEvent) -> None:
        action = event.update.get("action")
        now = self.now_ms()
        async with self.store.db.transaction() as tx:
            if action in ("created", "cancelled"):
                for w in await Store.watchers(tx, event.wallet):
                    if w.orders:
                        await Store.add_line(tx, w.chat_id, order_line(event.update, w.label), now)
            if event.position is not None:
                await Store.set_stream(
                    tx, event.wallet, ORDERS, event.position.epoch, event.position.offset, None
                )

    async def _liquidation(self, wallet: str, state: dict[str, Any]) -> None:
        distances: dict[str, tuple[Decimal | None, Any]] = {}
        for p in state.get("positions") or []:
            distances[str(p.get("symbol"))] = (_distance(p), p.get("liquidationPrice"))
        changes: list[tuple[int, str, int, bool, str | None]] = []
        async with self.store.db.transaction() as tx:
            watchers = await Store.watchers(tx, wallet)
        for w in watchers:
            symbols = {s for (chat, wal, s) in self._tiers if chat == w.chat_id and wal == wallet}
            for symbol in symbols | set(distances):
                current = self._tiers.get((w.chat_id, wallet, symbol), 0)
                distance, liq = distances.get(symbol, (None, None))
                new, warn = tier_step(distance, current)
                if new != current:
                    text = None
                    if warn and distance is not None:
                        text = (
                            f"⚠️ <b>{esc(symbol)}</b> position of"
                            f" <i>{esc(w.label or short_wallet(wallet))}</i>"
                            f" is {distance * 100:.1f}% from liquidation (liq {esc(number(liq))};"
                            f" under {tier_percent(new)})"
                        )
                    changes.append((w.chat_id, symbol, new, warn, text))
        if not changes:
            return
        now = self.now_ms()
        async with self.store.db.transaction() as tx:
            for chat, symbol, new, _warn, text in changes:
                await Store.set_tier(tx, chat, wallet, symbol, new)
                if text is not None:
                    await Store.add_line(tx, chat, text, now)
        for chat, symbol, new, _warn, _text in changes:
            self._tiers[(chat, wallet, symbol)] = new

    async def _prices(self, prices: dict[str, Any]) -> None:
        for symbol, quote in prices.items():
            raw = quote.get("price") if isinstance(quote, dict) else None
            try:
                self.prices[symbol] = Decimal(str(raw))
            except (InvalidOperation, ValueError):
                continue
        for alert in list(self.alerts.values()):
            price = self.prices.get(alert.symbol)
            if price is None:
                continue
            was = alert.armed
            fired = alert.observe(price)
            if alert.armed == was:
                continue
            async with self.store.db.transaction() as tx:
                await Store.set_armed(tx, alert.id, alert.armed)
                if fired:
                    verb = "reached" if alert.direction is Direction.ABOVE else "fell to"
                    await Store.add_message(
                        tx,
                        alert.chat_id,
                        f"🔔 <b>{esc(alert.symbol)}</b> {verb} {esc(number(str(price)))}"
                        f" ({esc(alert.direction.value)} {esc(str(alert.level))})",
                        self.now_ms(),
                    )

    # -- sending ----------------------------------------------------------------------
    async def _send_loop(self) -> None:
        window = self.options.coalesce_ms
        while True:
            self._wake.clear()
            now = self.clock()
            now_ms = int(now * 1000)
            await self.store.pack_lines(now_ms, window)
            wake_at = now + 1.0
            for msg in await self.store.pending_messages(exclude=self._in_flight):
                ready = self.pacer.ready_at(msg.chat_id, now)
                if ready <= now:
                    self.pacer.start(msg.chat_id, now)
                    task = asyncio.get_running_loop().create_task(self._send(msg, now))
                    self._in_flight[msg.chat_id] = task
                else:
                    wake_at = min(wake_at, ready)
            oldest = await self.store.next_line_due(now_ms)
            if oldest is not None:
                wake_at = min(wake_at, max(now, (oldest + window) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.005, wake_at - self.clock()))

    async def _send(self, msg: Outgoing, started: float) -> None:
        try:
            await self.store.mark_attempted(msg.id, int(started * 1000))
            result = await self.api.send(msg.chat_id, msg.text, msg.web_app_url)
            match result.outcome:
                case Outcome.SENT:
                    await self.store.mark_sent(msg.id, result.message_id, self.now_ms())
                case Outcome.RETRY_AFTER:
                    log.info("429 for chat %d: holding %.1f s", msg.chat_id, result.retry_after)
                    until = self.clock() + result.retry_after
                    self.pacer.hold(msg.chat_id, until)
                    await self.store.hold_chat(msg.chat_id, int(until * 1000) + 1)
                    await self.store.mark_attempt(msg.id, give_up=False)
                case Outcome.FORBIDDEN:
                    log.info("chat %d blocked the bot: its watches are off", msg.chat_id)
                    async with self.store.db.transaction() as tx:
                        await Store.deactivate_chat(tx, msg.chat_id)
                case Outcome.MIGRATED:
                    assert result.new_chat_id is not None
                    log.info("chat %d moved to %d", msg.chat_id, result.new_chat_id)
                    async with self.store.db.transaction() as tx:
                        await Store.migrate_chat(tx, msg.chat_id, result.new_chat_id)
                    for alert in self.alerts.values():
                        if alert.chat_id == msg.chat_id:
                            alert.chat_id = result.new_chat_id
                    self._tiers = {
                        ((result.new_chat_id if k[0] == msg.chat_id else k[0]), k[1], k[2]): v
                        for k, v in self._tiers.items()
                    }
                case Outcome.REJECTED:
                    log.error("Telegram rejected message %d: %s", msg.id, result.detail)
                    await self.store.mark_attempt(msg.id, give_up=True)
                case Outcome.UNKNOWN | Outcome.FAILED:
                    give_up = msg.attempts + 1 >= MAX_ATTEMPTS
                    log.warning("sending message %d failed: %s", msg.id, result.detail)
                    self.pacer.hold(msg.chat_id, self.clock() + SEND_RETRY.delay(msg.attempts + 1))
                    await self.store.mark_attempt(msg.id, give_up=give_up)
        except Exception:
            log.exception("sending message %d", msg.id)
            self.pacer.hold(msg.chat_id, self.clock() + 5.0)
        finally:
            self._in_flight.pop(msg.chat_id, None)
            self._wake.set()


def _handling_failed(kind: str, _: Exception) -> None:
    log.exception("handling %s failed; retrying", kind)  # called inside the except


async def _bounded(step: Awaitable[Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("shutdown step took over %.0f s; going on", seconds)
    except Exception:
        log.exception("shutdown step failed; going on")


def _pos(stream: Any) -> Position | None:
    if stream is None or stream.epoch is None or stream.position is None:
        return None
    return Position(str(stream.epoch), int(stream.position))


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

"""The notifier: Telegram updates in, gateway events in, the outbox out.

Three loops share one repository: `updates` (getUpdates -> the command handlers,
each in a transaction with the update offset; or the webhook), `consumer`
(gateway events -> lines and alerts, each in a transaction with its stream
position) and `sender` (pack lines into messages, send them as the pacer
allows, record the result). This class builds them, starts them and stops them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from hlgateway.client import Position
from hlgateway.config import NotifierSettings
from hlgateway.notifier.consumer import Consumer
from hlgateway.notifier.events import FILLS, LEDGER, ORDERS
from hlgateway.notifier.exchange import ExchangeInfo
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.handlers import dashboard_of
from hlgateway.notifier.history import FillHistory
from hlgateway.notifier.pacing import Limits, Pacer
from hlgateway.notifier.repository import Repository, StreamRow
from hlgateway.notifier.sender import Sender
from hlgateway.notifier.state import BotState
from hlgateway.notifier.telegram import TelegramApi
from hlgateway.notifier.trading import Trading
from hlgateway.notifier.updates import Updates
from hlgateway.notifier.vault import Vault, load_master_key
from hlgateway.notifier.webhook import Webhook

log = logging.getLogger("hlgateway.notifier")


class Notifier:
    def __init__(
        self,
        repo: Repository,
        api: TelegramApi,
        feed: GatewayFeed,
        settings: NotifierSettings | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.api = api
        self.feed = feed
        self.settings = settings or NotifierSettings()
        self.clock = clock
        self.state = BotState()
        self.history = FillHistory()
        self.sender = Sender(repo, api, Pacer(limits), self.state, self.settings.coalesce_ms, clock)
        master = load_master_key(self.settings.key, self.settings.key_file)
        self.trading = Trading(
            repo,
            api,
            feed,
            self.settings,
            Vault(master) if master is not None else None,
            ExchangeInfo(
                dashboard_of(self.settings.gateway), lambda: self.settings.info_url or feed.info_url
            ),
            self.now_ms,
            self.sender.wake,
        )
        self.updates = Updates(
            repo,
            api,
            feed,
            self.state,
            self.settings,
            self.now_ms,
            self.sender.wake,
            self.trading,
        )
        self.consumer = Consumer(
            repo,
            feed,
            self.state,
            self.history,
            self.settings.info_url,
            self.now_ms,
            self.sender.wake,
        )
        self.webhook: Webhook | None = None
        self.started = asyncio.Event()
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def start(self) -> None:
        await self.repo.open()
        self.state.bot_username = await self.api.start()
        async with self.repo.transaction() as t:
            await self.state.load(t)
            fills = await t.streams.all(FILLS)
            orders = await t.streams.all(ORDERS)
            ledgers = await t.streams.all(LEDGER)
            wallets = await t.watches.wallets()
            ledger_wallets = await t.watches.ledger_wallets()
        await self.sender.restore()
        self.feed.start()
        await self.feed.want_prices(True)  # alerts, and to know which symbols exist
        for wallet in wallets:
            self.feed.watch(
                wallet, {FILLS: _since(fills.get(wallet)), ORDERS: _since(orders.get(wallet))}
            )
        for wallet in ledger_wallets:
            await self.feed.want_ledger(wallet, True, _since(ledgers.get(wallet)))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.consumer.run(), name="notifier-consume"),
            loop.create_task(self.sender.run(), name="notifier-send"),
            loop.create_task(self.trading.run(), name="notifier-trading"),
        ]
        settings = self.settings
        if settings.webhook_url:
            host, port = settings.webhook_address
            path = urlsplit(settings.webhook_url).path or "/"
            self.webhook = Webhook(
                path, settings.webhook_secret or "", self.api.parse_update, self.updates.handle
            )
            await self.webhook.start(host, port)
            await self.api.use_webhook(settings.webhook_url, settings.webhook_secret or "")
        else:
            await self.api.use_polling()
            self._tasks.append(loop.create_task(self.updates.poll(), name="notifier-poll"))
        self.started.set()
        log.info("notifier up as @%s", self.state.bot_username)

    async def run(self) -> None:
        """Until a loop fails (it raises) or `stop()`."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            if not self.stopping:
                raise

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; let the requests in flight finish and be recorded; close.
        Every step is bounded: a shutdown never hangs on a peer."""
        self.stopping = True
        if self.webhook is not None:
            await _bounded(self.webhook.stop(), grace)
        for task in self._tasks:
            task.cancel()
        await _bounded(asyncio.gather(*self._tasks, return_exceptions=True), grace)
        await _bounded(self.trading.stop(grace), grace)
        await self.sender.drain(grace)
        await _bounded(self.feed.close(), grace)
        await _bounded(self.history.close(), grace)
        await _bounded(self.api.close(), grace)
        await self.repo.close()


async def _bounded(step: Awaitable[Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("shutdown step took over %.0f s; going on", seconds)
    except Exception:
        log.exception("shutdown step failed; going on")


def _since(stream: StreamRow | None) -> Position | None:
    if stream is None or stream.epoch is None or stream.offset is None:
        return None
    return Position(int(stream.offset), str(stream.epoch))

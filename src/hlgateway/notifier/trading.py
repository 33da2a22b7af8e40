"""Trading from a private chat: agent keys in, each confirmed order placed exactly once.

- A message holding a key is deleted before anything else (`prepare`, ahead of the
  update's transaction); in a chat that asked to /connect, the key is checked with
  the exchange (an approved agent of the wallet the chat named, not the account's
  own key) and sealed (vault.py); the handler stores only the sealed form.
- A confirmation commits `pending -> confirmed` with a cloid derived from it, in the
  transaction of the button press (so a double tap or a retried callback finds it
  confirmed already); then `place` signs with the agent key and sends the order
  through the gateway's `post`, and records what came of it. A kill between the two
  leaves it `confirmed`: at the next start `recover` asks the exchange for the cloid
  and records the order if it exists, else places it if the confirmation is still
  within its window, else gives it up and says so. Never twice.
- Previews not confirmed in time expire visibly (their message is edited).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from hlgateway.backoff import Backoff
from hlgateway.client.errors import RequestFailed
from hlgateway.client.trading import ANSWER_LOST, Sent, Trader
from hlgateway.config import NotifierSettings
from hlgateway.notifier.desk import Desk
from hlgateway.notifier.exchange import ExchangeError, ExchangeInfo
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.format import esc, number, short_wallet
from hlgateway.notifier.preview import Intent
from hlgateway.notifier.repository import AgentRow, PreviewRow, Repository
from hlgateway.notifier.telegram import Incoming, TelegramApi
from hlgateway.notifier.vault import Vault, find_key
from hlgateway.reconnect import Reconnect, Retry
from hlgateway.upstream.exchange import UNKNOWN_FATE

log = logging.getLogger("hlgateway.notifier.trading")

PASSING = frozenset({"RATE_LIMITED", "UPSTREAM_UNAVAILABLE", "INTERNAL"})  # nothing was sent
STUCK_MS = 10_000  # a confirmed order not placed by then is looked up again
# A passing refusal is sent again after 0.4, 0.8, 1.6, then every 2 s (each drawn from the
# upper half: jitter), until the confirmation's window closes.
PLACE_RETRY = Backoff(initial=0.4, decay=2.0, max_delay=2.0)
# The order of an answer of unknown fate is looked for 0.5, 1, 2 and 4 s later (jittered).
LOOKUP = Backoff(initial=0.5, decay=2.0, max_delay=4.0, max_attempts=4)


def bound_to(chat_id: int, wallet: str, agent: str) -> str:
    """What a sealed key is bound to (AES-GCM associated data)."""
    return f"{chat_id}|{wallet}|{agent}"


@dataclass(frozen=True)
class KeyCheck:
    """What became of a key-shaped message (never the key)."""

    deleted: bool
    agent: AgentRow | None = None  # checked and sealed: store it
    refusal: str | None = None  # why it was not taken


class Trading:
    def __init__(
        self,
        repo: Repository,
        api: TelegramApi,
        feed: GatewayFeed,
        settings: NotifierSettings,
        vault: Vault | None,
        exchange: ExchangeInfo,
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.repo = repo
        self.api = api
        self.feed = feed
        self.settings = settings
        self.vault = vault  # None: trading is off (no HLGATEWAY_NOTIFIER_KEY)
        self.exchange = exchange
        self.now_ms = now_ms
        self.wake = wake  # the sender
        self._placing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.desk = Desk(repo, feed, exchange, self.trader, now_ms, wake)

    def trader(self, chat_id: int, agent: AgentRow) -> Trader:
        """The chat's agent, able to sign (its key opened for this one use)."""
        assert self.vault is not None
        key = self.vault.open(agent.sealed, bound_to(chat_id, agent.wallet, agent.agent))
        return Trader(
            self.feed.clients[0],
            key,
            assets=self.exchange.assets(),
            mainnet=self.exchange.mainnet,
        )

    @property
    def window_ms(self) -> int:
        return self.settings.confirm_seconds * 1000

    # -- a message holding a key ------------------------------------------------------
    async def prepare(self, update: Incoming) -> KeyCheck | None:
        """Before the update's transaction: a key-shaped message is deleted at once, and
        checked and sealed if this private chat is connecting. None: no key in it."""
        key = find_key(update.text or "")
        if key is None or update.chat_id is None:
            return None
        chat = update.chat_id
        deleted = update.message_id is not None and await self.api.delete(chat, update.message_id)
        if update.chat_type != "private" or self.vault is None:
            return KeyCheck(deleted)
        async with self.repo.transaction() as t:
            wallet = await t.chats.connecting(chat, self.now_ms())
        if wallet is None:
            return KeyCheck(deleted)
        try:
            agent = str(Account.from_key(key).address).lower()
        except (ValueError, TypeError):
            return KeyCheck(deleted, refusal="That is not a valid private key.")
        if agent == wallet:
            return KeyCheck(
                deleted,
                refusal="That is the account's own key, which can withdraw: never share it. "
                "Create an API wallet for it on Hyperliquid and send that one's key.",
            )
        try:
            owner = await self.exchange.agent_owner(agent)
        except ExchangeError as exc:
            return KeyCheck(deleted, refusal=f"It could not be checked: {exc}.")
        if owner != wallet:
            return KeyCheck(
                deleted,
                refusal=f"Its address {agent} is not an approved agent of {wallet} "
                "(approve it on Hyperliquid's API page first).",
            )
        sealed = self.vault.seal(key, bound_to(chat, wallet, agent))
        return KeyCheck(deleted, agent=AgentRow(wallet, agent, sealed))

    # -- placing ----------------------------------------------------------------------
    def schedule(self, preview_id: int, recovering: bool = False) -> None:
        """Place a confirmed preview in the background (the update loop goes on)."""
        task = asyncio.get_running_loop().create_task(self.place(preview_id, recovering))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def place(self, preview_id: int, recovering: bool = False) -> None:
        if preview_id in self._placing:
            return
        self._placing.add(preview_id)
        try:
            await self._place(preview_id, recovering)
        except Exception:
            log.exception("placing preview %d failed; it is looked up again shortly", preview_id)
        finally:
            self._placing.discard(preview_id)

    async def _place(self, preview_id: int, recovering: bool) -> None:
        async with self.repo.transaction() as t:
            row = await t.previews.get(preview_id)
            agent = None if row is None else await t.agents.get(row.chat_id)
        if row is None or row.state != "confirmed" or row.cloid is None:
            return
        if agent is None or agent.wallet != row.wallet or self.vault is None:
            await self._finish(row, "failed", "Not placed: this chat is no longer connected.")
            return
        if recovering and await self._found(row):
            return
        deadline = (row.confirmed_ms or 0) + self.window_ms
        policy = Reconnect(PLACE_RETRY)
        while True:
            if self.now_ms() > deadline:
                await self._finish(row, "abandoned", EXPIRED)
                return
            try:
                sent = await self._send(row, agent)
                break
            except RequestFailed as exc:  # refused by the gateway: nothing was sent
                if exc.code not in PASSING:
                    await self._finish(row, "failed", f"Not placed: the gateway said {esc(exc)}.")
                    return
            retry = policy.ended()
            assert isinstance(retry, Retry)  # PLACE_RETRY never gives up: the deadline does
            await asyncio.sleep(retry.after)
        if not sent.ok and "expired" in str(sent.response).lower():
            await self._finish(row, "abandoned", EXPIRED)
            return
        if not sent.ok and _ambiguous(sent):
            # It may be on the exchange (the answer was lost, the gateway went away, or
            # this very action was taken before: its nonce is spent): ask by its cloid, a
            # few times while a copy may still arrive (copies are refused after its
            # expiresAfter, and the exchange takes its nonce once).
            looking = Reconnect(LOOKUP)
            while isinstance(wait := looking.ended(), Retry):
                await asyncio.sleep(wait.after)
                if await self._found(row):
                    return
            await self._finish(row, "failed", _not_found(sent))
            return
        await self._finish(row, *outcome(row, sent))

    async def _send(self, row: PreviewRow, agent: AgentRow) -> Sent:
        assert self.vault is not None and row.cloid is not None
        intent = Intent.from_json(row.intent)
        await self.exchange.markets()  # asset ids and the network, to sign for
        stamp = row.confirmed_ms or 0
        # The same cloid, nonce and deadline at every attempt: the exchange executes this
        # confirmation once however often it is sent, and never after its window.
        return await self.trader(row.chat_id, agent).order(
            intent.coin,
            intent.is_buy,
            float(intent.size),
            float(intent.price),
            tif=intent.tif,
            reduce_only=intent.reduce_only,
            cloid=row.cloid,
            nonce=stamp,
            expires_after=stamp + self.window_ms,
        )

    async def _found(self, row: PreviewRow) -> bool:
        """Is the order of this confirmation on the exchange? Recorded if so."""
        assert row.cloid is not None
        order = await self.exchange.order_status(row.wallet, row.cloid)
        if order is None:
            return False
        body = order.get("order")
        oid = body.get("oid") if isinstance(body, dict) else None
        text = f"Placed (order {esc(oid)}, now {esc(order.get('status', 'placed'))})."
        await self._finish(row, "placed", text)
        return True

    async def _finish(self, row: PreviewRow, state: str, text: str) -> None:
        async with self.repo.transaction() as t:
            if await t.previews.finish(row.id, state, text, from_state="confirmed"):
                await t.outbox.add_message(row.chat_id, text, self.now_ms())
        self.wake()

    async def recover(self) -> None:
        """At start: the confirmations a stop or a kill left unplaced or unrecorded."""
        async with self.repo.transaction() as t:
            rows = await t.previews.confirmed()
        for row in rows:
            log.info("confirmed order %d of chat %d: checking it was placed", row.id, row.chat_id)
            await self.place(row.id, recovering=True)

    # -- expiring previews ------------------------------------------------------------
    def poke(self) -> None:
        """A preview was made: its expiry is due sooner than the loop thought."""
        self._changed.set()

    async def run(self) -> None:
        await self.recover()
        while True:
            self._changed.clear()
            now = self.now_ms()
            async with self.repo.transaction() as t:
                due = await t.previews.due(now)
                for row in due:
                    if await t.previews.finish(row.id, "expired", "", from_state="pending"):
                        await t.outbox.add_message(
                            row.chat_id,
                            f"⌛ <s>{row.summary}</s>\nExpired: nothing was placed.",
                            now,
                            edit_of=row.message_row,
                        )
                following = await t.previews.next_expiry()
                # Confirmed, not being placed, for a while: a placement that failed on
                # the way (the info API away) is looked up and finished here.
                stuck = [
                    row.id
                    for row in await t.previews.confirmed()
                    if row.id not in self._placing and now - (row.confirmed_ms or 0) > STUCK_MS
                ]
            for preview_id in stuck:
                self.schedule(preview_id, recovering=True)
            if due:
                self.wake()
            wait = 1.0 if following is None else max(0.05, (following - now + 1) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(wait, 1.0))

    async def stop(self, grace: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        await self.exchange.close()


EXPIRED = (
    "Not placed: the confirmation's time ran out before the order reached the exchange, "
    "which refuses it from then on. Send the command again if you still want it."
)


SUPERSEDED = (
    "Not placed: Hyperliquid refused this confirmation as too old. It was sent again "
    "(after a restart of this bot, or an answer lost on the way), and meanwhile the same "
    "agent key had signed more than 100 newer actions (in another chat, app or bot using "
    "that key); Hyperliquid only accepts a signature newer than those. Nothing was placed, "
    "and this confirmation will not be sent again. Send the command again if you still want it."
)
TAKEN_BEFORE = (
    "Not placed: Hyperliquid had already received this confirmation and did not place "
    "the order (its answer, with the reason, was lost on the way). It will not be sent "
    "again. Send the command again if you still want it."
)


def _not_found(sent: Sent) -> str:
    """The chat's answer when an answer of unknown fate left no order by its cloid."""
    text = str(sent.response)
    # Hyperliquid keeps a signer's 100 highest nonces: "nonce too low" is a nonce below
    # them, one never used; "duplicate nonce" is this very action, taken before.
    if "Invalid nonce" in text and "too low" in text:
        return SUPERSEDED
    if "Invalid nonce" in text:
        return TAKEN_BEFORE
    return f"Not placed: {esc(sent.error)}."


def _ambiguous(sent: Sent) -> bool:
    """An `err` after which the order may exist: look it up by its cloid."""
    text = str(sent.response)
    return sent.response == ANSWER_LOST or UNKNOWN_FATE in text or "Invalid nonce" in text


def outcome(row: PreviewRow, sent: Sent) -> tuple[str, str]:
    """(state, the chat's answer) for what the exchange said about the order."""
    intent = Intent.from_json(row.intent)
    what = f"{'buy' if intent.is_buy else 'sell'} {intent.size} {intent.coin}"
    if not sent.ok:
        return "rejected", f"❌ Not placed ({esc(what)}): {esc(sent.error)}"
    status: dict[str, Any] = next((s for s in sent.statuses if isinstance(s, dict)), {})
    if "filled" in status:
        filled = status["filled"]
        return "placed", (
            f"✅ Filled: {esc(what)} at {esc(number(filled.get('avgPx')))} on average"
            f" (order {esc(filled.get('oid'))}). The fills follow."
        )
    if "resting" in status:
        oid = status["resting"].get("oid")
        return "placed", f"📌 Resting: {esc(what)} @ {esc(intent.price)} (order {esc(oid)})."
    if "error" in status:
        return "rejected", f"❌ Rejected by Hyperliquid ({esc(what)}): {esc(status['error'])}"
    return "placed", f"Placed: {esc(what)} ({esc(short_wallet(row.wallet))})."

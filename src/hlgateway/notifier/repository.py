"""Every SQL statement of the notifier, behind one repository (SQLite or PostgreSQL).

`async with repo.transaction() as t:` gives the tables of one transaction:
`t.chats`, `t.watches`, `t.streams`, `t.outbox`, `t.alerts`, `t.tiers`, `t.kv`.
Every read and write goes through such a transaction, opened by the caller, so
what belongs together commits together: a command's effects with its update
offset, a fill's line with its claim and its stream position.

The outbox is the exactly-once machinery. A fill becomes a *line* for a chat in
the transaction that claims it for that chat (`deliveries`, keyed by chat, wallet
and the fill's `tid`: a fill seen twice, from a replay or a reload, finds its key
taken and makes nothing) and advances the wallet's stream position. Lines are
packed into *messages*; a message is marked sent, with Telegram's message id, in
the transaction after Telegram accepted it. So a kill at any point loses nothing;
the one window for a repeat is between Telegram's answer and that commit (see
docs/notifier.md). The schema and its migrations are in `schema.py`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hlgateway.notifier import schema
from hlgateway.notifier.database import Database, Tx
from hlgateway.notifier.format import take_first


@dataclass(frozen=True)
class Watcher:
    chat_id: int
    label: str | None
    since_ms: int
    orders: bool
    # /ledger on (deposits, withdrawals, liquidations): since when; None when off.
    ledger_since: int | None = None


@dataclass(frozen=True)
class WatchRow:
    wallet: str
    label: str | None
    since_ms: int


@dataclass(frozen=True)
class StreamRow:
    epoch: str | None
    offset: int | None
    last_fill_ms: int | None


Buttons = list[list[tuple[str, str]]]  # rows of (label, callback data)


@dataclass(frozen=True)
class Outgoing:
    id: int
    chat_id: int
    text: str
    attempts: int
    web_app_url: str | None = None  # a button that opens this Mini App
    buttons: Buttons | None = None  # inline buttons that answer with callback data
    edit_of: int | None = None  # this replaces the text of that message (its row id)
    edit_telegram_id: int | None = None  # ... which Telegram knows by this id, once sent


@dataclass(frozen=True)
class AgentRow:
    wallet: str
    agent: str  # the agent's address
    sealed: str  # vault.Vault.seal(key, bound_to=f"{chat}|{wallet}|{agent}")


@dataclass(frozen=True)
class PreviewRow:
    id: int
    chat_id: int
    wallet: str
    intent: str  # JSON (preview.Intent)
    summary: str
    notional: str
    created_ms: int
    expires_ms: int
    state: str  # pending, confirmed, placed, rejected, failed, expired, cancelled, abandoned
    cloid: str | None
    confirmed_ms: int | None
    message_row: int | None
    result: str | None


@dataclass(frozen=True)
class AlertRow:
    id: int
    chat_id: int
    symbol: str
    direction: str
    level: str
    armed: bool


class Repository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self) -> None:
        """Connect and bring the schema to the latest version (schema.migrate)."""
        await self.db.open()
        try:
            await schema.migrate(self.db)
        except BaseException:
            await self.db.close()
            raise

    async def connect(self) -> None:
        """Connect without migrating: for a reader that does not own the database
        (the gateway's Telegram login reads which wallets a chat watches)."""
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tables]:
        async with self.db.transaction() as tx:
            yield Tables(tx)


class Tables:
    """The tables, in one transaction."""

    def __init__(self, tx: Tx) -> None:
        self.kv = Kv(tx)
        self.chats = Chats(tx)
        self.watches = Watches(tx)
        self.streams = Streams(tx)
        self.outbox = Outbox(tx)
        self.alerts = Alerts(tx)
        self.tiers = Tiers(tx)
        self.agents = Agents(tx)
        self.previews = Previews(tx)
        self.nonces = Nonces(tx)


class Kv:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def get(self, key: str) -> str | None:
        value = await self.tx.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        await self.tx.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class Chats:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def touch(self, chat_id: int) -> None:
        """A chat spoke to us: it exists and is active (again, after a block)."""
        await self.tx.execute(
            "INSERT INTO chats (chat_id) VALUES (?) ON CONFLICT (chat_id) DO UPDATE SET active = 1",
            (chat_id,),
        )

    async def is_active(self, chat_id: int) -> bool:
        value = await self.tx.scalar("SELECT active FROM chats WHERE chat_id = ?", (chat_id,))
        return value is None or bool(value)

    async def set_muted(self, chat_id: int, until_ms: int) -> None:
        await self.tx.execute(
            "UPDATE chats SET muted_until = ? WHERE chat_id = ?", (until_ms, chat_id)
        )

    async def set_orders(self, chat_id: int, on: bool) -> None:
        await self.tx.execute("UPDATE chats SET orders = ? WHERE chat_id = ?", (int(on), chat_id))

    async def set_ledger(self, chat_id: int, on: bool, now_ms: int) -> None:
        """On from `now_ms` (what happened before is not news); turning it on again
        while on keeps the earlier start."""
        await self.tx.execute(
            "UPDATE chats SET ledger_since = CASE WHEN ledger = 1 THEN ledger_since ELSE ? END, "
            "ledger = ? WHERE chat_id = ?",
            (now_ms, int(on), chat_id),
        )

    async def ledger(self, chat_id: int) -> bool:
        value = await self.tx.scalar("SELECT ledger FROM chats WHERE chat_id = ?", (chat_id,))
        return bool(value)

    async def hold(self, chat_id: int, until_ms: int) -> None:
        """A 429's retry_after, kept across a restart."""
        await self.tx.execute(
            "INSERT INTO chats (chat_id, held_until) VALUES (?, ?) ON CONFLICT (chat_id) "
            "DO UPDATE SET held_until = excluded.held_until",
            (chat_id, until_ms),
        )

    async def holds(self, now_ms: int) -> dict[int, int]:
        """The 429 holds still in force: chat -> until (ms)."""
        rows = await self.tx.fetchall(
            "SELECT chat_id, held_until FROM chats WHERE held_until > ?", (now_ms,)
        )
        return {int(c): int(t) for c, t in rows}

    async def set_connecting(self, chat_id: int, wallet: str | None, until_ms: int) -> None:
        """/connect named `wallet`: its agent key is awaited until `until_ms`."""
        await self.tx.execute(
            "UPDATE chats SET connecting = ?, connecting_until = ? WHERE chat_id = ?",
            (wallet, until_ms, chat_id),
        )

    async def connecting(self, chat_id: int, now_ms: int) -> str | None:
        value = await self.tx.scalar(
            "SELECT connecting FROM chats WHERE chat_id = ? AND connecting_until > ?",
            (chat_id, now_ms),
        )
        return None if value is None else str(value)

    async def set_max_notional(self, chat_id: int, usdc: str | None) -> None:
        await self.tx.execute(
            "UPDATE chats SET max_notional = ? WHERE chat_id = ?", (usdc, chat_id)
        )

    async def max_notional(self, chat_id: int) -> str | None:
        value = await self.tx.scalar("SELECT max_notional FROM chats WHERE chat_id = ?", (chat_id,))
        return None if value is None else str(value)

    async def deactivate(self, chat_id: int) -> None:
        """The user blocked the bot (403): stop notifying; drop what waits for it."""
        await self.tx.execute("UPDATE chats SET active = 0 WHERE chat_id = ?", (chat_id,))
        await self.tx.execute(
            "UPDATE messages SET state = 'dropped' WHERE chat_id = ? AND state = 'pending'",
            (chat_id,),
        )
        await self.tx.execute(
            "DELETE FROM lines WHERE chat_id = ? AND message_id IS NULL", (chat_id,)
        )

    async def migrate(self, old: int, new: int) -> None:
        """A group became a supergroup with another id: everything moves along."""
        tx = self.tx
        row = await tx.fetchone(
            "SELECT active, muted_until, orders, ledger, ledger_since FROM chats WHERE chat_id = ?",
            (old,),
        )
        if row is not None:
            await tx.execute(
                "INSERT INTO chats (chat_id, active, muted_until, orders, ledger, ledger_since) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO NOTHING",
                (new, *row),
            )
            await tx.execute("DELETE FROM chats WHERE chat_id = ?", (old,))
        for table, key in (
            ("watches", "t2.wallet = watches.wallet"),
            ("deliveries", "t2.wallet = deliveries.wallet AND t2.tid = deliveries.tid"),
            (
                "ledger_deliveries",
                "t2.wallet = ledger_deliveries.wallet AND t2.event_id = ledger_deliveries.event_id",
            ),
            (
                "liquidation_tiers",
                "t2.wallet = liquidation_tiers.wallet AND t2.symbol = liquidation_tiers.symbol",
            ),
        ):
            # Rows the new chat already has win; the old ones go.
            await tx.execute(
                f"UPDATE {table} SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS "
                f"(SELECT 1 FROM {table} t2 WHERE t2.chat_id = ? AND {key})",
                (new, old, new),
            )
            await tx.execute(f"DELETE FROM {table} WHERE chat_id = ?", (old,))
        for table in ("lines", "messages", "alerts"):
            await tx.execute(f"UPDATE {table} SET chat_id = ? WHERE chat_id = ?", (new, old))


class Watches:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def add(self, chat_id: int, wallet: str, label: str | None, now_ms: int) -> bool:
        """True if new; an existing watch only changes its label."""
        changed = await self.tx.execute(
            "UPDATE watches SET label = ? WHERE chat_id = ? AND wallet = ?",
            (label, chat_id, wallet),
        )
        if changed:
            return False
        await self.tx.execute(
            "INSERT INTO watches (chat_id, wallet, label, since_ms) VALUES (?, ?, ?, ?)",
            (chat_id, wallet, label, now_ms),
        )
        return True

    async def remove(self, chat_id: int, wallet: str) -> bool:
        removed = await self.tx.execute(
            "DELETE FROM watches WHERE chat_id = ? AND wallet = ?", (chat_id, wallet)
        )
        await self.tx.execute(
            "DELETE FROM liquidation_tiers WHERE chat_id = ? AND wallet = ?", (chat_id, wallet)
        )
        return removed > 0

    async def of_chat(self, chat_id: int) -> list[WatchRow]:
        rows = await self.tx.fetchall(
            "SELECT wallet, label, since_ms FROM watches WHERE chat_id = ? ORDER BY since_ms",
            (chat_id,),
        )
        return [WatchRow(str(r[0]), r[1], int(r[2])) for r in rows]

    async def watchers(self, wallet: str) -> list[Watcher]:
        """Active chats watching `wallet`."""
        rows = await self.tx.fetchall(
            "SELECT w.chat_id, w.label, w.since_ms, COALESCE(c.orders, 0), "
            "COALESCE(c.ledger, 0), COALESCE(c.ledger_since, 0) FROM watches w "
            "LEFT JOIN chats c ON c.chat_id = w.chat_id "
            "WHERE w.wallet = ? AND COALESCE(c.active, 1) = 1 ORDER BY w.chat_id",
            (wallet,),
        )
        return [
            Watcher(
                int(r[0]), r[1], int(r[2]), bool(r[3]), max(int(r[2]), int(r[5])) if r[4] else None
            )
            for r in rows
        ]

    async def ledger_wanted(self, wallet: str) -> bool:
        """Does an active chat with /ledger on watch `wallet`?"""
        value = await self.tx.scalar(
            "SELECT 1 FROM watches w JOIN chats c ON c.chat_id = w.chat_id "
            "WHERE w.wallet = ? AND c.active = 1 AND c.ledger = 1 LIMIT 1",
            (wallet,),
        )
        return value is not None

    async def ledger_wallets(self) -> list[str]:
        """Every wallet that an active chat with /ledger on watches."""
        rows = await self.tx.fetchall(
            "SELECT DISTINCT w.wallet FROM watches w JOIN chats c ON c.chat_id = w.chat_id "
            "WHERE c.active = 1 AND c.ledger = 1 ORDER BY w.wallet"
        )
        return [str(r[0]) for r in rows]

    async def watched(self, wallet: str) -> bool:
        """Does any chat still watch `wallet`?"""
        return (
            await self.tx.scalar("SELECT 1 FROM watches WHERE wallet = ? LIMIT 1", (wallet,))
            is not None
        )

    async def earliest(self, wallet: str) -> int | None:
        """The earliest watch time (ms) of `wallet`, if any chat watches it."""
        value = await self.tx.scalar(
            "SELECT MIN(since_ms) FROM watches WHERE wallet = ?", (wallet,)
        )
        return None if value is None else int(value)

    async def wallets(self) -> list[str]:
        """Every wallet some active chat watches."""
        rows = await self.tx.fetchall(
            "SELECT DISTINCT w.wallet FROM watches w LEFT JOIN chats c ON c.chat_id = w.chat_id "
            "WHERE COALESCE(c.active, 1) = 1 ORDER BY w.wallet"
        )
        return [str(r[0]) for r in rows]


class Streams:
    """Where each wallet's lossless streams stand (offset, epoch), and its newest fill."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def get(self, wallet: str, channel: str) -> StreamRow | None:
        row = await self.tx.fetchone(
            "SELECT epoch, position, last_fill_ms FROM streams WHERE wallet = ? AND channel = ?",
            (wallet, channel),
        )
        return None if row is None else StreamRow(row[0], row[1], row[2])

    async def all(self, channel: str) -> dict[str, StreamRow]:
        rows = await self.tx.fetchall(
            "SELECT wallet, epoch, position, last_fill_ms FROM streams WHERE channel = ?",
            (channel,),
        )
        return {str(r[0]): StreamRow(r[1], r[2], r[3]) for r in rows}

    async def set(
        self,
        wallet: str,
        channel: str,
        epoch: str | None,
        offset: int | None,
        last_fill_ms: int | None,
    ) -> None:
        """Only what is given changes; `last_fill_ms` only grows (a reload is older)."""
        await self.tx.execute(
            "INSERT INTO streams (wallet, channel, epoch, position, last_fill_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (wallet, channel) DO UPDATE SET "
            "epoch = COALESCE(excluded.epoch, streams.epoch), "
            "position = COALESCE(excluded.position, streams.position), "
            "last_fill_ms = CASE WHEN streams.last_fill_ms IS NULL THEN excluded.last_fill_ms "
            "WHEN excluded.last_fill_ms IS NULL THEN streams.last_fill_ms "
            "WHEN excluded.last_fill_ms > streams.last_fill_ms THEN excluded.last_fill_ms "
            "ELSE streams.last_fill_ms END",
            (wallet, channel, epoch, offset, last_fill_ms),
        )


class Outbox:
    """Claims, lines, messages: what each chat is told, once, in order."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def claim(self, chat_id: int, wallet: str, tid: int) -> bool:
        """Claim fill `tid` of `wallet` for `chat_id`: True the first time only."""
        return (
            await self.tx.execute(
                "INSERT INTO deliveries (chat_id, wallet, tid) VALUES (?, ?, ?) "
                "ON CONFLICT (chat_id, wallet, tid) DO NOTHING",
                (chat_id, wallet, tid),
            )
            == 1
        )

    async def claim_event(self, chat_id: int, wallet: str, event_id: str) -> bool:
        """Claim ledger event `event_id` of `wallet` for `chat_id`: True the first time only."""
        return (
            await self.tx.execute(
                "INSERT INTO ledger_deliveries (chat_id, wallet, event_id) VALUES (?, ?, ?) "
                "ON CONFLICT (chat_id, wallet, event_id) DO NOTHING",
                (chat_id, wallet, event_id),
            )
            == 1
        )

    async def add_line(self, chat_id: int, text: str, now_ms: int) -> None:
        await self.tx.execute(
            "INSERT INTO lines (chat_id, text, created_ms) VALUES (?, ?, ?)",
            (chat_id, text, now_ms),
        )

    async def add_message(
        self,
        chat_id: int,
        text: str,
        now_ms: int,
        web_app_url: str | None = None,
        buttons: Buttons | None = None,
        edit_of: int | None = None,
    ) -> int:
        """Queue a message (or, with `edit_of`, a new text for an earlier one); its row id."""
        return int(
            await self.tx.scalar(
                "INSERT INTO messages (chat_id, text, created_ms, web_app_url, buttons, edit_of) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    chat_id,
                    text,
                    now_ms,
                    web_app_url,
                    None if buttons is None else json.dumps(buttons),
                    edit_of,
                ),
            )
        )

    async def pack(self, now_ms: int, window_ms: int) -> int:
        """Turn waiting lines into messages: for each chat that is not muted, has no
        message waiting, and whose oldest line is at least `window_ms` old, as many
        lines (in order) as fit one message. Returns the messages made."""
        tx = self.tx
        made = 0
        chats = await tx.fetchall(
            "SELECT l.chat_id, MIN(l.created_ms) FROM lines l "
            "LEFT JOIN chats c ON c.chat_id = l.chat_id "
            "WHERE l.message_id IS NULL AND COALESCE(c.muted_until, 0) <= ? "
            "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.chat_id = l.chat_id "
            "AND m.state = 'pending') GROUP BY l.chat_id",
            (now_ms,),
        )
        for chat_id, oldest in chats:
            if int(oldest) > now_ms - window_ms:
                continue
            rows = await tx.fetchall(
                "SELECT id, text FROM lines WHERE chat_id = ? AND message_id IS NULL "
                "ORDER BY id LIMIT 200",
                (chat_id,),
            )
            chosen = rows[: take_first([str(r[1]) for r in rows])]
            message_id = await tx.scalar(
                "INSERT INTO messages (chat_id, text, created_ms) VALUES (?, ?, ?) RETURNING id",
                (chat_id, "\n".join(str(r[1]) for r in chosen), now_ms),
            )
            await tx.execute(
                "UPDATE lines SET message_id = ? WHERE chat_id = ? AND message_id IS NULL "
                "AND id <= ?",
                (message_id, chat_id, chosen[-1][0]),
            )
            made += 1
        return made

    async def next_line_due(self, now_ms: int) -> int | None:
        """When the oldest unpacked line of an unmuted chat was made (ms), if any."""
        value = await self.tx.scalar(
            "SELECT MIN(l.created_ms) FROM lines l LEFT JOIN chats c ON "
            "c.chat_id = l.chat_id WHERE l.message_id IS NULL "
            "AND COALESCE(c.muted_until, 0) <= ?",
            (now_ms,),
        )
        return None if value is None else int(value)

    async def pending(self, exclude: Iterable[int] = ()) -> list[Outgoing]:
        """The oldest waiting message of each chat (one per chat: a chat's messages go
        in order, one at a time)."""
        skip = set(exclude)
        rows = await self.tx.fetchall(
            "SELECT m.id, m.chat_id, m.text, m.attempts, m.web_app_url, m.buttons, m.edit_of, "
            "t.telegram_id FROM messages m JOIN "
            "(SELECT chat_id, MIN(id) AS id FROM messages WHERE state = 'pending' "
            "GROUP BY chat_id) f ON f.id = m.id LEFT JOIN messages t ON t.id = m.edit_of "
            "ORDER BY m.id"
        )
        return [
            Outgoing(
                int(r[0]),
                int(r[1]),
                str(r[2]),
                int(r[3]),
                r[4],
                None if r[5] is None else [[(b[0], b[1]) for b in row] for row in json.loads(r[5])],
                r[6],
                r[7],
            )
            for r in rows
            if r[1] not in skip
        ]

    async def mark_attempted(self, message_id: int, now_ms: int) -> None:
        """A request for this message starts now: kept so that a restarted notifier
        paces its first message to the chat from here."""
        await self.tx.execute(
            "UPDATE messages SET attempted_ms = ? WHERE id = ?", (now_ms, message_id)
        )

    async def last_attempts(self, since_ms: int) -> dict[int, int]:
        """The start of the last request to each chat since `since_ms`."""
        rows = await self.tx.fetchall(
            "SELECT chat_id, MAX(attempted_ms) FROM messages WHERE attempted_ms > ? "
            "GROUP BY chat_id",
            (since_ms,),
        )
        return {int(c): int(t) for c, t in rows}

    async def mark_sent(self, message_id: int, telegram_id: int | None, now_ms: int) -> None:
        await self.tx.execute(
            "UPDATE messages SET state = 'sent', sent_ms = ?, telegram_id = ?, "
            "attempts = attempts + 1 WHERE id = ?",
            (now_ms, telegram_id, message_id),
        )

    async def mark_dropped(self, message_id: int) -> None:
        """Never to be sent (an edit of a message that never went)."""
        await self.tx.execute("UPDATE messages SET state = 'dropped' WHERE id = ?", (message_id,))

    async def mark_attempt(self, message_id: int, give_up: bool) -> None:
        await self.tx.execute(
            "UPDATE messages SET attempts = attempts + 1, state = ? WHERE id = ?",
            ("failed" if give_up else "pending", message_id),
        )


class Alerts:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def add(self, chat_id: int, symbol: str, direction: str, level: str) -> int:
        return int(
            await self.tx.scalar(
                "INSERT INTO alerts (chat_id, symbol, direction, level) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                (chat_id, symbol, direction, level),
            )
        )

    async def of_chat(self, chat_id: int) -> list[AlertRow]:
        rows = await self.tx.fetchall(
            "SELECT id, chat_id, symbol, direction, level, armed FROM alerts "
            "WHERE chat_id = ? ORDER BY id",
            (chat_id,),
        )
        return [_alert(r) for r in rows]

    async def all(self) -> list[AlertRow]:
        rows = await self.tx.fetchall(
            "SELECT id, chat_id, symbol, direction, level, armed FROM alerts ORDER BY id"
        )
        return [_alert(r) for r in rows]

    async def delete(self, alert_id: int) -> None:
        await self.tx.execute("DELETE FROM alerts WHERE id = ?", (alert_id,))

    async def set_armed(self, alert_id: int, armed: bool) -> None:
        await self.tx.execute("UPDATE alerts SET armed = ? WHERE id = ?", (int(armed), alert_id))


class Tiers:
    """The liquidation tier each (chat, wallet, symbol) was last warned of."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def all(self) -> dict[tuple[int, str, str], int]:
        rows = await self.tx.fetchall("SELECT chat_id, wallet, symbol, tier FROM liquidation_tiers")
        return {(int(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in rows}

    async def set(self, chat_id: int, wallet: str, symbol: str, tier: int) -> None:
        await self.tx.execute(
            "INSERT INTO liquidation_tiers (chat_id, wallet, symbol, tier) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (chat_id, wallet, symbol) DO UPDATE SET tier = excluded.tier",
            (chat_id, wallet, symbol, tier),
        )


class Agents:
    """Each private chat's agent (API wallet): its address and its sealed key."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def put(self, chat_id: int, row: AgentRow, now_ms: int) -> None:
        await self.tx.execute("DELETE FROM agents WHERE chat_id = ?", (chat_id,))
        await self.tx.execute(
            "INSERT INTO agents (chat_id, wallet, agent, sealed, created_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (chat_id, row.wallet, row.agent, row.sealed, now_ms),
        )

    async def get(self, chat_id: int) -> AgentRow | None:
        row = await self.tx.fetchone(
            "SELECT wallet, agent, sealed FROM agents WHERE chat_id = ?", (chat_id,)
        )
        return None if row is None else AgentRow(str(row[0]), str(row[1]), str(row[2]))

    async def delete(self, chat_id: int) -> bool:
        return await self.tx.execute("DELETE FROM agents WHERE chat_id = ?", (chat_id,)) > 0


class Nonces:
    """Hyperliquid's nonces per signer: every action an agent key signs (a confirmed order,
    a cancel, a leverage change), from whichever chat, takes the next one here. The
    exchange refuses a nonce it saw before, so two chats that share one agent key and
    act in the same millisecond must not both use that millisecond."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def next(self, agent: str, now_ms: int) -> int:
        """`now_ms`, or one more than the last nonce of `agent` if that is not below it.
        One statement, so two notifiers on one PostgreSQL database never share one
        either (the row's lock orders them); it counts once its transaction commits."""
        value = await self.tx.scalar(
            "INSERT INTO agent_nonces (agent, last_nonce) VALUES (?, ?) "
            "ON CONFLICT (agent) DO UPDATE SET last_nonce = CASE "
            "WHEN excluded.last_nonce > agent_nonces.last_nonce THEN excluded.last_nonce "
            "ELSE agent_nonces.last_nonce + 1 END RETURNING last_nonce",
            (agent.lower(), now_ms),
        )
        return int(value)


_PREVIEW = (
    "SELECT id, chat_id, wallet, intent, summary, notional, created_ms, expires_ms, state, "
    "cloid, confirmed_ms, message_row, result FROM previews "
)


class Previews:
    """Orders shown to a chat and waiting for Confirm, and what became of them."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def add(
        self,
        chat_id: int,
        wallet: str,
        intent: str,
        summary: str,
        notional: str,
        now_ms: int,
        expires_ms: int,
    ) -> int:
        return int(
            await self.tx.scalar(
                "INSERT INTO previews (chat_id, wallet, intent, summary, notional, created_ms, "
                "expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (chat_id, wallet, intent, summary, notional, now_ms, expires_ms),
            )
        )

    async def set_message(self, preview_id: int, message_row: int) -> None:
        await self.tx.execute(
            "UPDATE previews SET message_row = ? WHERE id = ?", (message_row, preview_id)
        )

    async def get(self, preview_id: int) -> PreviewRow | None:
        row = await self.tx.fetchone(_PREVIEW + "WHERE id = ?", (preview_id,))
        return None if row is None else _preview(row)

    async def confirm(self, preview_id: int, cloid: str, now_ms: int, stamp: int) -> bool:
        """Pending and not expired at `now_ms` -> confirmed at `stamp`, once: False for
        every later tap."""
        changed = await self.tx.execute(
            "UPDATE previews SET state = 'confirmed', cloid = ?, confirmed_ms = ? "
            "WHERE id = ? AND state = 'pending' AND expires_ms >= ?",
            (cloid, stamp, preview_id, now_ms),
        )
        return changed == 1

    async def finish(self, preview_id: int, state: str, result: str, from_state: str) -> bool:
        """`from_state` -> `state` with its `result`; False if it was not in `from_state`."""
        changed = await self.tx.execute(
            "UPDATE previews SET state = ?, result = ? WHERE id = ? AND state = ?",
            (state, result, preview_id, from_state),
        )
        return changed == 1

    async def due(self, now_ms: int) -> list[PreviewRow]:
        """Pending previews whose time is up."""
        rows = await self.tx.fetchall(
            _PREVIEW + "WHERE state = 'pending' AND expires_ms < ? ORDER BY id", (now_ms,)
        )
        return [_preview(r) for r in rows]

    async def next_expiry(self) -> int | None:
        value = await self.tx.scalar("SELECT MIN(expires_ms) FROM previews WHERE state = 'pending'")
        return None if value is None else int(value)

    async def confirmed(self) -> list[PreviewRow]:
        """Confirmed and not yet known placed or refused (a kill came in between)."""
        rows = await self.tx.fetchall(_PREVIEW + "WHERE state = 'confirmed' ORDER BY id")
        return [_preview(r) for r in rows]

    async def confirmed_since(self, chat_id: int, since_ms: int) -> int:
        """Orders this chat confirmed since `since_ms` (the daily cap counts them)."""
        return int(
            await self.tx.scalar(
                "SELECT COUNT(*) FROM previews WHERE chat_id = ? AND confirmed_ms >= ?",
                (chat_id, since_ms),
            )
        )


def _preview(r: Sequence[Any]) -> PreviewRow:
    return PreviewRow(
        int(r[0]),
        int(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        int(r[6]),
        int(r[7]),
        str(r[8]),
        r[9],
        None if r[10] is None else int(r[10]),
        None if r[11] is None else int(r[11]),
        r[12],
    )


def _alert(r: Sequence[Any]) -> AlertRow:
    return AlertRow(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), bool(r[5]))

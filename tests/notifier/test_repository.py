"""The repository, on SQLite and on the local PostgreSQL (a schema per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hlgateway.notifier.database import open_database
from hlgateway.notifier.repository import Repository

W = "0x" + "e1" * 20


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[Repository]:
    r = Repository(open_database(database_url))
    await r.open()
    yield r
    await r.close()


async def test_a_fill_is_claimed_once_per_chat(repo: Repository) -> None:
    async with repo.transaction() as t:
        assert await t.outbox.claim(1, W, 77)
        assert not await t.outbox.claim(1, W, 77)
        assert await t.outbox.claim(2, W, 77)  # another chat has its own claim


async def test_a_failed_transaction_leaves_nothing(repo: Repository) -> None:
    with pytest.raises(RuntimeError):
        async with repo.transaction() as t:
            await t.outbox.claim(1, W, 5)
            await t.outbox.add_line(1, "x", 0)
            raise RuntimeError("killed half way")
    async with repo.transaction() as t:
        assert await t.outbox.claim(1, W, 5)
        assert await t.outbox.next_line_due(10**15) is None


async def pack(repo: Repository, now_ms: int, window_ms: int) -> int:
    async with repo.transaction() as t:
        return await t.outbox.pack(now_ms, window_ms)


async def test_lines_wait_for_the_window_then_pack_in_order_under_4096(repo: Repository) -> None:
    async with repo.transaction() as t:
        for n in range(100):
            await t.outbox.add_line(1, f"{n:03d} " + "y" * 96, 1_000)
    assert await pack(repo, now_ms=1_500, window_ms=700) == 0  # still coalescing
    assert await pack(repo, now_ms=1_700, window_ms=700) == 1
    # One message waits: nothing more is packed for that chat until it is sent.
    assert await pack(repo, now_ms=9_000, window_ms=700) == 0
    texts = []
    while True:
        async with repo.transaction() as t:
            pending = await t.outbox.pending()
            if not pending:
                break
            (msg,) = pending
            assert len(msg.text) <= 4096
            texts.append(msg.text)
            await t.outbox.mark_sent(msg.id, 1, 9_000)
            await t.outbox.pack(now_ms=9_000, window_ms=700)
    lines = "\n".join(texts).split("\n")
    assert [line[:3] for line in lines] == [f"{n:03d}" for n in range(100)]
    assert len(texts) == 3  # 100 lines of 100 characters: 40 + 40 + 20


async def test_a_muted_chat_keeps_its_lines_until_the_mute_ends(repo: Repository) -> None:
    async with repo.transaction() as t:
        await t.chats.touch(1)
        await t.chats.set_muted(1, 5_000)
        await t.outbox.add_line(1, "held", 1_000)
    assert await pack(repo, now_ms=4_999, window_ms=0) == 0
    assert await pack(repo, now_ms=5_000, window_ms=0) == 1


async def test_pending_messages_one_per_chat_oldest_first(repo: Repository) -> None:
    async with repo.transaction() as t:
        for chat, text in ((1, "a"), (2, "b"), (1, "c")):
            await t.outbox.add_message(chat, text, 0)
        pending = await t.outbox.pending()
        assert [(m.chat_id, m.text) for m in pending] == [(1, "a"), (2, "b")]
        assert [m.text for m in await t.outbox.pending(exclude={1})] == ["b"]


async def test_blocked_chat_stops_and_its_queue_is_dropped(repo: Repository) -> None:
    async with repo.transaction() as t:
        await t.chats.touch(1)
        await t.watches.add(1, W, None, 0)
        await t.outbox.add_message(1, "m", 0)
        await t.outbox.add_line(1, "l", 0)
        await t.chats.deactivate(1)
        assert await t.watches.watchers(W) == []
        assert not await t.chats.is_active(1)
        assert await t.watches.wallets() == []
        assert await t.outbox.pending() == []
        assert await t.outbox.pack(10_000, 0) == 0
        await t.chats.touch(1)  # writing to the bot again turns it back on
        assert [w.chat_id for w in await t.watches.watchers(W)] == [1]
        assert await t.watches.wallets() == [W]


async def test_migrated_group_takes_everything_along(repo: Repository) -> None:
    async with repo.transaction() as t:
        await t.chats.touch(-5)
        await t.watches.add(-5, W, "desk", 0)
        await t.outbox.claim(-5, W, 9)
        await t.outbox.add_message(-5, "m", 0)
        await t.tiers.set(-5, W, "BTC", 2)
        await t.chats.migrate(-5, -1005)
        assert [w.chat_id for w in await t.watches.watchers(W)] == [-1005]
        assert not await t.outbox.claim(-1005, W, 9)
        assert [m.chat_id for m in await t.outbox.pending()] == [-1005]
        assert await t.tiers.all() == {(-1005, W, "BTC"): 2}


async def test_stream_positions_only_move_forward_in_fill_time(repo: Repository) -> None:
    async with repo.transaction() as t:
        await t.streams.set(W, "user_fills", "e1", 5, 1_000)
        await t.streams.set(W, "user_fills", None, None, 900)  # a reload, older
        stream = await t.streams.get(W, "user_fills")
        assert await t.streams.all("user_fills") == {W: stream}
    assert stream is not None
    assert (stream.epoch, stream.offset, stream.last_fill_ms) == ("e1", 5, 1_000)


async def test_watches_and_who_still_watches(repo: Repository) -> None:
    async with repo.transaction() as t:
        assert await t.watches.add(1, W, "a", 100)
        assert not await t.watches.add(1, W, "b", 200)  # a label change, same watch
        assert await t.watches.add(2, W, None, 50)
        assert [(r.wallet, r.label, r.since_ms) for r in await t.watches.of_chat(1)] == [
            (W, "b", 100)
        ]
        assert await t.watches.earliest(W) == 50
        await t.tiers.set(1, W, "ETH", 1)
        assert await t.watches.remove(1, W)
        assert not await t.watches.remove(1, W)
        assert await t.tiers.all() == {}  # its tiers went with it
        assert await t.watches.watched(W)
        assert await t.watches.remove(2, W)
        assert not await t.watches.watched(W) and await t.watches.earliest(W) is None


async def test_pacing_state_survives_in_the_tables(repo: Repository) -> None:
    async with repo.transaction() as t:
        await t.outbox.add_message(7, "m", 0)
        (msg,) = await t.outbox.pending()
        await t.outbox.mark_attempted(msg.id, 10_000)
        await t.chats.hold(7, 20_000)
        assert await t.outbox.last_attempts(since_ms=5_000) == {7: 10_000}
        assert await t.outbox.last_attempts(since_ms=10_000) == {}
        assert await t.chats.holds(now_ms=19_999) == {7: 20_000}
        assert await t.chats.holds(now_ms=20_000) == {}


async def test_alerts_and_the_kv(repo: Repository) -> None:
    async with repo.transaction() as t:
        first = await t.alerts.add(1, "BTC", "above", "100")
        await t.alerts.add(2, "ETH", "below", "5.5")
        await t.alerts.set_armed(first, False)
        assert [(a.symbol, a.armed) for a in await t.alerts.of_chat(1)] == [("BTC", False)]
        await t.alerts.delete(first)
        assert [a.chat_id for a in await t.alerts.all()] == [2]
        assert await t.kv.get("k") is None
        await t.kv.set("k", "1")
        await t.kv.set("k", "2")
        assert await t.kv.get("k") == "2"


async def test_agents_and_the_preview_state_machine(repo: Repository) -> None:
    from hlgateway.notifier.repository import AgentRow

    async with repo.transaction() as t:
        await t.chats.touch(5)
        await t.chats.set_connecting(5, W, 2_000)
        assert await t.chats.connecting(5, 1_999) == W
        assert await t.chats.connecting(5, 2_000) is None  # timed out
        await t.agents.put(5, AgentRow(W, "0xagent", "v1:sealed"), 0)
        await t.agents.put(5, AgentRow(W, "0xother", "v1:sealed2"), 1)  # replaces
        assert await t.agents.get(5) == AgentRow(W, "0xother", "v1:sealed2")
        pid = await t.previews.add(5, W, "{}", "<b>Buy</b>", "10.5", 1_000, 31_000)
        message = await t.outbox.add_message(
            5, "preview", 1_000, buttons=[[("Confirm", f"ok:{pid}"), ("Cancel", f"no:{pid}")]]
        )
        await t.previews.set_message(pid, message)
        (out,) = await t.outbox.pending()
        assert out.buttons == [[("Confirm", f"ok:{pid}"), ("Cancel", f"no:{pid}")]]
        assert not await t.previews.confirm(pid, "0xc1", now_ms=31_001, stamp=31_001)  # late
        assert await t.previews.confirm(pid, "0xc1", now_ms=30_000, stamp=30_000)
        assert not await t.previews.confirm(pid, "0xc2", now_ms=30_001, stamp=30_001)  # once
        assert [r.id for r in await t.previews.confirmed()] == [pid]
        assert await t.previews.confirmed_since(5, 29_999) == 1
        assert await t.previews.finish(pid, "placed", "ok", from_state="confirmed")
        assert not await t.previews.finish(pid, "failed", "no", from_state="confirmed")
        row = await t.previews.get(pid)
        assert row is not None and (row.state, row.cloid, row.message_row) == (
            "placed",
            "0xc1",
            message,
        )
        other = await t.previews.add(5, W, "{}", "x", "1", 2_000, 3_000)
        assert [r.id for r in await t.previews.due(3_001)] == [other]
        assert await t.previews.next_expiry() == 3_000
        await t.outbox.mark_sent(message, 77, 5)
        edit = await t.outbox.add_message(5, "expired", 4_000, edit_of=message)
        (out,) = await t.outbox.pending()
        assert (out.id, out.edit_of, out.edit_telegram_id) == (edit, message, 77)
        assert await t.agents.delete(5) and await t.agents.get(5) is None


async def test_nonces_are_unique_per_signing_key(repo: Repository) -> None:
    async with repo.transaction() as t:
        # The same millisecond, one key: each action gets its own nonce.
        assert [await t.nonces.next("0xAgent", 1_000) for _ in range(3)] == [1_000, 1_001, 1_002]
        assert await t.nonces.next("0xagent", 1_001) == 1_003  # case does not make a key
        assert await t.nonces.next("0xother", 1_000) == 1_000  # another key: its own
        assert await t.nonces.next("0xagent", 5_000) == 5_000  # time moved on
    with pytest.raises(RuntimeError):
        async with repo.transaction() as t:
            assert await t.nonces.next("0xagent", 5_000) == 5_001
            raise RuntimeError("killed before the commit: nothing was signed with it")
    async with repo.transaction() as t:
        assert await t.nonces.next("0xagent", 5_000) == 5_001


async def test_two_notifiers_on_one_database_never_share_a_nonce(
    repo: Repository, database_url: str
) -> None:
    other = Repository(open_database(database_url))
    await other.open()
    try:

        async def take(r: Repository, n: int) -> list[int]:
            got = []
            for _ in range(n):
                async with r.transaction() as t:
                    got.append(await t.nonces.next("0xshared", 7_000))
            return got

        first, second = await asyncio.gather(take(repo, 40), take(other, 40))
    finally:
        await other.close()
    assert sorted(first + second) == list(range(7_000, 7_080))


async def test_the_nonce_migration_starts_each_key_after_its_chats_confirmations(
    database_url: str,
) -> None:
    from hlgateway.notifier import schema
    from hlgateway.notifier.repository import AgentRow

    repo = Repository(open_database(database_url))
    await repo.open()
    try:
        async with repo.transaction() as t:
            # A database of release 4: confirmations stamped per chat, no nonce table.
            for chat, stamp in ((1, 9_000), (2, 9_500), (3, 4_000)):
                await t.agents.put(chat, AgentRow(W, "0xshared" if chat < 3 else "0xown", "s"), 0)
                pid = await t.previews.add(chat, W, "{}", "x", "1", 0, 10**9)
                assert await t.previews.confirm(pid, f"0x{chat}", 0, stamp)
        async with repo.db.transaction() as tx:
            await tx.execute("DROP TABLE agent_nonces")
            await tx.execute("UPDATE kv SET value = '4' WHERE key = 'schema'")
        await schema.migrate(repo.db)
        async with repo.transaction() as t:
            assert await t.nonces.next("0xshared", 1_000) == 9_501
            assert await t.nonces.next("0xown", 1_000) == 4_001
            assert await t.nonces.next("0xnew", 1_000) == 1_000
    finally:
        await repo.close()

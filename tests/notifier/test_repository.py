"""The outbox store, on SQLite and on the local PostgreSQL (a schema per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hlgateway.notifier.database import open_database
from hlgateway.notifier.store import Store

W = "0x" + "e1" * 20


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(open_database(database_url))
    await s.open()
    yield s
    await s.close()


async def test_a_fill_is_claimed_once_per_chat(store: Store) -> None:
    async with store.db.transaction() as tx:
        assert await Store.deliver_once(tx, 1, W, 77)
        assert not await Store.deliver_once(tx, 1, W, 77)
        assert await Store.deliver_once(tx, 2, W, 77)  # another chat has its own claim


async def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.db.transaction() as tx:
            await Store.deliver_once(tx, 1, W, 5)
            await Store.add_line(tx, 1, "x", 0)
            raise RuntimeError("killed half way")
    async with store.db.transaction() as tx:
        assert await Store.deliver_once(tx, 1, W, 5)
        assert await tx.scalar("SELECT COUNT(*) FROM lines") == 0


async def test_lines_wait_for_the_window_then_pack_in_order_under_4096(store: Store) -> None:
    async with store.db.transaction() as tx:
        for n in range(100):
            await Store.add_line(tx, 1, f"{n:03d} " + "y" * 96, 1_000)
    assert await store.pack_lines(now_ms=1_500, window_ms=700) == 0  # still coalescing
    assert await store.pack_lines(now_ms=1_700, window_ms=700) == 1
    # One message waits: nothing more is packed for that chat until it is sent.
    assert await store.pack_lines(now_ms=9_000, window_ms=700) == 0
    texts = []
    while pending := await store.pending_messages():
        (msg,) = pending
        assert len(msg.text) <= 4096
        texts.append(msg.text)
        await store.mark_sent(msg.id, 1, 9_000)
        await store.pack_lines(now_ms=9_000, window_ms=700)
    lines = "\n".join(texts).split("\n")
    assert [line[:3] for line in lines] == [f"{n:03d}" for n in range(100)]
    assert len(texts) == 3  # 100 lines of 100 characters: 40 + 40 + 20


async def test_a_muted_chat_keeps_its_lines_until_the_mute_ends(store: Store) -> None:
    async with store.db.transaction() as tx:
        await Store.touch_chat(tx, 1)
        await Store.set_muted(tx, 1, 5_000)
        await Store.add_line(tx, 1, "held", 1_000)
    assert await store.pack_lines(now_ms=4_999, window_ms=0) == 0
    assert await store.pack_lines(now_ms=5_000, window_ms=0) == 1


async def test_pending_messages_one_per_chat_oldest_first(store: Store) -> None:
    async with store.db.transaction() as tx:
        for chat, text in ((1, "a"), (2, "b"), (1, "c")):
            await Store.add_message(tx, chat, text, 0)
    pending = await store.pending_messages()
    assert [(m.chat_id, m.text) for m in pending] == [(1, "a"), (2, "b")]
    assert [m.text for m in await store.pending_messages(exclude={1})] == ["b"]


async def test_blocked_chat_stops_and_its_queue_is_dropped(store: Store) -> None:
    async with store.db.transaction() as tx:
        await Store.touch_chat(tx, 1)
        await Store.add_watch(tx, 1, W, None, 0)
        await Store.add_message(tx, 1, "m", 0)
        await Store.add_line(tx, 1, "l", 0)
        await Store.deactivate_chat(tx, 1)
        assert await Store.watchers(tx, W) == []
    assert await store.pending_messages() == []
    assert await store.pack_lines(10_000, 0) == 0
    async with store.db.transaction() as tx:
        await Store.touch_chat(tx, 1)  # writing to the bot again turns it back on
        assert [w.chat_id for w in await Store.watchers(tx, W)] == [1]


async def test_migrated_group_takes_everything_along(store: Store) -> None:
    async with store.db.transaction() as tx:
        await Store.touch_chat(tx, -5)
        await Store.add_watch(tx, -5, W, "desk", 0)
        await Store.deliver_once(tx, -5, W, 9)
        await Store.add_message(tx, -5, "m", 0)
        await Store.migrate_chat(tx, -5, -1005)
        assert [w.chat_id for w in await Store.watchers(tx, W)] == [-1005]
        assert not await Store.deliver_once(tx, -1005, W, 9)
    assert [m.chat_id for m in await store.pending_messages()] == [-1005]


async def test_stream_positions_only_move_forward_in_fill_time(store: Store) -> None:
    async with store.db.transaction() as tx:
        await Store.set_stream(tx, W, "user_fills", "e1", 5, 1_000)
        await Store.set_stream(tx, W, "user_fills", None, None, 900)  # a reload, older
        stream = await Store.stream(tx, W, "user_fills")
    assert stream is not None
    assert (stream.epoch, stream.position, stream.last_fill_ms) == ("e1", 5, 1_000)

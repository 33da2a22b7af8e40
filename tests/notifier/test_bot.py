"""The notifier against the fake Bot API, a real gateway process and the simulator."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hlgateway.notifier.database import open_database
from hlgateway.notifier.events import Account, Fills
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.pacing import Limits
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.service import Notifier
from hlgateway.notifier.telegram import TelegramApi
from hlgateway.simulator import Simulator
from hlgateway.simulator.listing import Listing
from tests.helpers import eventually, free_port
from tests.notifier.conftest import NotifierFactory
from tests.notifier.fakebot import Failure, FakeBotApi, visible_text

WALLET = "0x" + "d1" * 20
CHAT = 1001


# The gateway names spot pairs BASE/QUOTE (Hyperliquid's `@107` is HYPE/USDC).
PAIRS = {pair.coin: pair.display_name for pair in Listing().pairs}


def fill_prefix(f: dict[str, Any]) -> str:
    verb = "Bought" if f["side"] == "B" else "Sold"
    return f"{verb} {f['sz']} {PAIRS.get(f['coin'], f['coin'])} @ {f['px']}"


def fill_lines(bot: FakeBotApi, chat: int) -> list[str]:
    return [
        line
        for text in bot.texts(chat)
        for line in text.split("\n")
        if line.startswith(("Bought ", "Sold "))
    ]


async def watch_since(notifier: Notifier, chat: int, wallet: str) -> int:
    async with notifier.repo.db.transaction() as tx:
        value = await tx.scalar(
            "SELECT since_ms FROM watches WHERE chat_id = ? AND wallet = ?", (chat, wallet)
        )
    assert value is not None
    return int(value)


async def test_watch_delivers_every_ledger_fill_once_in_order(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sim: Simulator, database_url: str
) -> None:
    notifier = make_notifier(database_url)
    await notifier.start()
    fakebot.say(CHAT, "/start")
    fakebot.say(CHAT, f"/watch {WALLET} <b>_*[x]")
    await eventually(lambda: any("Watching" in t for t in fakebot.texts(CHAT)), 10)
    since = await watch_since(notifier, CHAT, WALLET)
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 8, 30)
    # Everything the simulator made up to a cut-off, after the watch, came exactly once.
    cutoff = sim.ledger(WALLET)["fills"][-1]["time"]
    expected = [f for f in sim.ledger(WALLET)["fills"] if since <= f["time"] <= cutoff]
    expected.sort(key=lambda f: (f["time"], f["tid"]))

    def got() -> list[str]:
        return fill_lines(fakebot, CHAT)[: len(expected)]

    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= len(expected), 20)
    lines = got()
    assert [line.split(" · ")[0] for line in lines] == [fill_prefix(f) for f in expected]
    assert all(line.endswith("<b>_*[x]") for line in lines)  # the label, shown as typed
    # And nothing after the cut-off came twice or out of order either.
    await notifier.stop()
    everything = sorted(
        (f for f in sim.ledger(WALLET)["fills"] if f["time"] >= since),
        key=lambda f: (f["time"], f["tid"]),
    )
    delivered = [line.split(" · ")[0] for line in fill_lines(fakebot, CHAT)]
    assert delivered == [fill_prefix(f) for f in everything[: len(delivered)]]
    assert len(expected) >= 8
    assert not fakebot.violations
    assert all(s.status == 200 for s in fakebot.sent)  # the HTML always parsed
    print(len(delivered), "fills in", len(fakebot.delivered(CHAT)), "messages")


FAST_CHAT = Limits(private_interval=0.05, group_interval=0.05)


async def replies(bot: FakeBotApi, chat: int, count: int) -> list[str]:
    await eventually(lambda: len(bot.texts(chat)) >= count, 15)
    return bot.texts(chat)


async def test_commands_answer_and_bad_input_is_refused_clearly(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT)
    await notifier.start()
    await eventually(lambda: {"BTC", "HYPE/USDC", "xyz:XYZ100"} <= set(notifier.state.prices), 10)
    script = [
        ("/help", "/watch <0x wallet> [label]"),
        ("/watch 0xnothex", "Not a wallet address: 0xnothex"),
        (f"/watch {WALLET} desk", f"Watching {WALLET} (desk)"),
        ("/wallets", f"Watching:\n{WALLET} (desk)"),
        ("/alert NOPE above 5", "Unknown symbol: NOPE"),
        ("/alert BTC above 1", "Alert set: BTC above 1"),
        ("/alerts", "1. BTC above 1"),
        # Markets spelled their own way, typed in any case; neither fires.
        ("/alert xyz:xyz100 above 100000000", "Alert set: xyz:XYZ100 above 100000000"),
        ("/alert hype/usdc below 0.0001", "Alert set: HYPE/USDC below 0.0001"),
        ("/mute 5", "Muted for 5 min"),
        ("/unmute", "Unmuted."),
        ("/orders on", "Order events on."),
        ("/delalert 9", "No alert 9"),
        ("hello", "Send /help"),
    ]
    for n, (text, expected) in enumerate(script, start=1):
        fakebot.say(CHAT, text)
        got = await eventually_text(fakebot, CHAT, expected)
        assert got, (n, text)
    # The alert fired once (BTC is far above 1) and says so in /alerts.
    await eventually_text(fakebot, CHAT, "🔔 BTC reached")
    fakebot.say(CHAT, "/alerts")
    await eventually_text(fakebot, CHAT, "1. BTC above 1 (fired)")
    fakebot.say(CHAT, "/positions")
    await eventually_text(fakebot, CHAT, "desk: account")
    fakebot.say(CHAT, "/delalert 1")
    await eventually_text(fakebot, CHAT, "Deleted alert 1: BTC above 1")
    assert sum("🔔" in t for t in fakebot.texts(CHAT)) == 1
    assert all(s.status == 200 for s in fakebot.sent)


async def eventually_text(bot: FakeBotApi, chat: int, fragment: str) -> str:
    def found() -> str | None:
        return next((t for t in bot.texts(chat) if fragment in t), None)

    await eventually(lambda: found() is not None, 15)
    text = found()
    assert text is not None
    return text


async def test_dashboard_is_a_web_app_button_in_private_chats(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    url = "https://gateway.example/"
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT, dashboard_url=url)
    await notifier.start()
    fakebot.say(CHAT, "/dashboard")
    await eventually_text(fakebot, CHAT, "Watch a wallet first")
    fakebot.say(CHAT, f"/watch {WALLET}")
    fakebot.say(CHAT, "/dashboard")
    await eventually_text(fakebot, CHAT, "Your watched wallets, live")
    (sent,) = [s for s in fakebot.sent if "Your watched wallets" in s.text]
    button = {"text": "Open the dashboard", "web_app": {"url": url}}
    assert sent.markup == {"inline_keyboard": [[button]]}
    assert all(s.markup is None for s in fakebot.sent if s is not sent)
    group = -2002
    fakebot.say(group, "/dashboard", chat_type="group")
    await eventually_text(fakebot, group, "Open /dashboard in a private chat with me.")


async def test_too_many_watches(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT, max_watches=1)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET}")
    fakebot.say(CHAT, "/watch 0x" + "d2" * 20)
    await eventually_text(fakebot, CHAT, "Too many watches (at most 1)")


async def test_429_is_honoured_and_nothing_is_dropped(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    fakebot.fail(CHAT, Failure(429, retry_after=2))
    notifier = make_notifier(sqlite_url)
    await notifier.start()
    fakebot.say(CHAT, "/help")
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually_text(fakebot, CHAT, "/watch <0x wallet>")
    await eventually_text(fakebot, CHAT, "Watching")
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 3, 20)
    statuses = [s.status for s in fakebot.sent if s.chat_id == CHAT]
    assert statuses[0] == 429 and 429 not in statuses[1:]
    first_429 = next(s for s in fakebot.sent if s.status == 429)
    retried = next(s for s in fakebot.sent if s.status == 200)
    assert retried.text == first_429.text  # the same message, not dropped
    assert not fakebot.violations  # nothing reached the chat before retry_after passed


async def test_blocked_chat_is_switched_off(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually_text(fakebot, CHAT, "Watching")
    fakebot.forbidden.add(CHAT)  # the user blocks the bot
    await eventually(lambda: any(s.status == 403 for s in fakebot.sent), 20)

    async def switched_off() -> bool:
        async with notifier.repo.transaction() as t:
            return await t.watches.watchers(WALLET) == []

    await eventually(switched_off, 10)
    async with notifier.repo.transaction() as t:
        assert await t.outbox.pending() == []


async def test_migrated_group_follows_the_new_id(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    group, supergroup = -1001, -100_1001
    fakebot.fail(group, Failure(400, migrate_to=supergroup))
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT)
    await notifier.start()
    fakebot.say(group, f"/watch@hl_test_bot {WALLET} desk", chat_type="group")
    await eventually_text(fakebot, supergroup, "Watching")
    await eventually(lambda: len(fill_lines(fakebot, supergroup)) >= 1, 20)
    async with notifier.repo.transaction() as t:
        assert [w.chat_id for w in await t.watches.watchers(WALLET)] == [supergroup]


async def test_rates_kept_per_chat_and_across_the_bot(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    """A busy wallet watched by one chat, and 12 chats asking at once, with a bot-wide
    budget of 5 a second (30 in production) to see it bind. Checked on the request starts
    the notifier decided (stored with each message), so the check does not depend on how
    late a loaded machine delivers them; every request did reach the fake Bot API."""
    notifier = make_notifier(
        sqlite_url, coalesce_ms=100, limits=Limits(global_per_second=5, margin=0.1)
    )
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 2, 20)
    others = list(range(2001, 2013))
    for chat in others:
        fakebot.say(chat, "/help")
        fakebot.say(chat, "/wallets")
    await eventually(lambda: all(len(fakebot.texts(c)) == 2 for c in others), 30)
    # The busy chat's fills keep coming: stop first, so that no request is between the fake
    # accepting it and the notifier recording it when the two are compared.
    await notifier.stop()
    repo = Repository(open_database(sqlite_url))
    await repo.open()
    async with repo.db.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT chat_id, attempted_ms FROM messages WHERE state = 'sent' ORDER BY attempted_ms"
        )
    await repo.close()
    starts = [int(at) for _, at in rows]
    assert len(starts) == len([s for s in fakebot.sent if s.status == 200])
    busiest = max(sum(1 for u in starts if t <= u < t + 1000) for t in starts)
    assert busiest == 5  # the budget binds, and holds
    mine = [int(at) for chat, at in rows if chat == CHAT]
    assert len(mine) >= 2
    assert min(b - a for a, b in itertools.pairwise(mine)) >= 1000
    assert not fakebot.violations


async def test_wallets_spread_over_connections_each_delivered(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT, wallets_per_connection=1)
    await notifier.start()
    other = "0x" + "d3" * 20
    fakebot.say(CHAT, f"/watch {WALLET} one")
    fakebot.say(CHAT + 1, f"/watch {other} two")
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 2, 20)
    await eventually(lambda: len(fill_lines(fakebot, CHAT + 1)) >= 2, 20)
    assert len(notifier.feed.clients) == 2


def burst(wallet: str, count: int, start_tid: int, when: int) -> Fills:
    fills = [
        {
            "id": start_tid + n,
            "orderId": 1,
            "symbol": "BURST",  # no simulated fill has it: these lines are told apart
            "side": "sell" if n % 2 else "buy",
            "price": 3000.5,
            "size": 0.01 * (n + 1),
            "fee": 0.01,
            "closedPnl": 0.0,
            "timestamp": when,  # one sweep: one time (and hash) for all
            "wallet": wallet,
        }
        for n in range(count)
    ]
    return Fills(wallet, fills, None)


async def test_a_burst_of_200_fills_is_a_few_messages_and_a_replay_adds_none(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    quiet = "0x" + "d4" * 20
    notifier = make_notifier(sqlite_url)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {quiet} desk")
    await eventually_text(fakebot, CHAT, "Watching")
    since = await watch_since(notifier, CHAT, quiet)
    event = burst(quiet, 200, 1_000_000, since + 1)
    assert notifier.feed.offer(event)
    assert notifier.feed.offer(event)  # the same fills again (a replay)

    def bursts() -> list[str]:
        return [line for line in fill_lines(fakebot, CHAT) if " BURST @ " in line]

    await eventually(lambda: len(bursts()) >= 200, 30)

    async def claimed_and_sent() -> bool:
        async with notifier.repo.db.transaction() as tx:
            waiting = await tx.scalar(
                "SELECT COUNT(*) FROM lines l LEFT JOIN messages m ON m.id = l.message_id "
                "WHERE l.text LIKE '% BURST</b> @%' AND (m.id IS NULL OR m.state <> 'sent')"
            )
        return bool(waiting == 0 and len(notifier.feed.inbox) == 0)

    await eventually(claimed_and_sent, 20)
    assert len(bursts()) == 200  # the replay made nothing
    async with notifier.repo.db.transaction() as tx:
        made = await tx.scalar("SELECT COUNT(*) FROM lines WHERE text LIKE '% BURST</b> @%'")
    assert made == 200
    messages = [t for t in fakebot.texts(CHAT) if " BURST @ " in t]
    assert len(messages) <= 6
    assert all(len(m) <= 4096 for m in fakebot.texts(CHAT))


async def test_muted_chat_gets_its_fills_when_the_mute_ends(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    quiet = "0x" + "d5" * 20
    notifier = make_notifier(sqlite_url, limits=FAST_CHAT)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {quiet}")
    fakebot.say(CHAT, "/mute 10")
    await eventually_text(fakebot, CHAT, "Muted for 10 min")
    since = await watch_since(notifier, CHAT, quiet)
    await notifier.consumer.handle(burst(quiet, 3, 5, since + 1))
    async with notifier.repo.db.transaction() as tx:  # held: made, not packed
        held = await tx.scalar(
            "SELECT COUNT(*) FROM lines WHERE message_id IS NULL AND text LIKE '% BURST</b> @%'"
        )
    assert held == 3
    assert fill_lines(fakebot, CHAT) == []  # nor anything the simulator traded meanwhile
    fakebot.say(CHAT, "/unmute")
    await eventually(
        lambda: len([ln for ln in fill_lines(fakebot, CHAT) if " BURST @ " in ln]) == 3, 15
    )


async def test_liquidation_warning_once_per_tier(tmp_path: Path) -> None:
    """The service alone (no socket is opened): account updates in, lines out."""
    quiet = "0x" + "d6" * 20
    feed = GatewayFeed("ws://127.0.0.1:9/ws", "unused", "root")
    notifier = Notifier(
        Repository(open_database(str(tmp_path / "n.db"))),
        TelegramApi("1:x", "http://127.0.0.1:9"),
        feed,
    )
    await notifier.repo.open()
    async with notifier.repo.transaction() as t:
        await t.watches.add(CHAT, quiet, "<lev>", 0)

    def account(liq: float) -> Account:
        position = {
            "symbol": "BTC",
            "size": 2.0,
            "entryPrice": 100.0,
            "positionValue": 200.0,  # mark 100
            "unrealizedPnl": 0.0,
            "leverage": 10.0,
            "liquidationPrice": liq,
            "marginUsed": 20.0,
        }
        return Account(quiet, {"wallet": quiet, "accountValue": 50.0, "positions": [position]})

    # 30 %, 15 %, 14 %, 9 %, 4.5 %, 9 %, no position, 15 %
    for liq in (70.0, 85.0, 86.0, 91.0, 95.5, 91.0):
        await notifier.consumer.handle(account(liq))
    await notifier.consumer.handle(Account(quiet, {"wallet": quiet, "positions": []}))
    await notifier.consumer.handle(account(85.0))
    async with notifier.repo.db.transaction() as tx:
        lines = [str(r[0]) for r in await tx.fetchall("SELECT text FROM lines ORDER BY id")]
    await notifier.repo.close()
    assert [visible_text(line).split("under ")[1] for line in lines] == [
        "20%)",
        "10%)",
        "5%)",
        "20%)",  # the position closed and opened again: warned anew
    ]
    assert "&lt;lev&gt;" in lines[0]


async def test_webhook_mode_handles_each_update_once_and_checks_the_secret(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sqlite_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook/abc"
    notifier = make_notifier(
        sqlite_url,
        limits=FAST_CHAT,
        webhook_url=url,
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret="s3cret",
    )
    await notifier.start()
    assert fakebot.webhook == (url, "s3cret")
    assert not any(method == "getUpdates" for _, method in fakebot.requests)
    update = fakebot.update(CHAT, "/help")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=update) as resp:
            assert resp.status == 403  # no secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
        for _ in range(2):  # Telegram retries: handled once
            async with http.post(url, json=update, headers=headers) as resp:
                assert resp.status == 200
        async with http.post(url, data=b"[1]", headers=headers) as resp:
            assert resp.status == 400
    await eventually_text(fakebot, CHAT, "/watch <0x wallet>")
    async with notifier.repo.db.transaction() as tx:
        replies = await tx.scalar("SELECT COUNT(*) FROM messages WHERE chat_id = ?", (CHAT,))
    assert replies == 1


async def test_commands_are_answered_while_the_gateway_is_away(
    fakebot: FakeBotApi, tmp_path: Path
) -> None:
    feed = GatewayFeed(f"ws://127.0.0.1:{free_port()}/ws", "unused", "root")
    notifier = Notifier(
        Repository(open_database(str(tmp_path / "n.db"))),
        TelegramApi(fakebot.token, fakebot.url, poll_timeout=1),
        feed,
        limits=FAST_CHAT,
    )
    await notifier.start()
    try:
        fakebot.say(CHAT, f"/watch {WALLET} later")
        await eventually_text(fakebot, CHAT, "Watching")  # kept; read once the gateway is up
        assert WALLET in feed.watching()
    finally:
        await notifier.stop(grace=1.0)


async def test_without_an_info_url_the_notifier_learns_it_from_the_gateway(
    make_notifier: NotifierFactory,
    fakebot: FakeBotApi,
    sim: Simulator,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first subscribe of a wallet is a gap (what came since /watch): reloaded from
    the info API that the gateway names in its welcome."""
    notifier = make_notifier(sqlite_url, info_url=None, limits=FAST_CHAT)
    asked: list[str] = []
    real = notifier.history.fills_since

    async def noted(
        info_url: str, wallet: str, start_ms: int, names: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        asked.append(info_url)
        return await real(info_url, wallet, start_ms, names)

    monkeypatch.setattr(notifier.history, "fills_since", noted)
    await notifier.start()
    fakebot.say(CHAT, f"/watch {WALLET}")
    await eventually(lambda: bool(asked), 20)
    assert asked == [sim.http_url + "/info"] == [notifier.feed.info_url]
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 2, 30)

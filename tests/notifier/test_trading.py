"""Trading from a private chat, against the simulator's /exchange through a real gateway
and the tests' fake Bot API: connect an agent key, preview, confirm, the fill once; double
taps and retried callbacks; expiry; wrong keys; groups; limits; a 429 while confirming.
(kill -9 between confirm and placement, and the key in logs and files: test_trading_kill.py)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import eth_account
import pytest
from hyperliquid.utils.signing import sign_l1_action

from hlgateway.notifier import commands as c
from hlgateway.notifier.pacing import Limits
from hlgateway.notifier.preview import Market, cloid_for, plan_trade, preview
from hlgateway.notifier.service import Notifier
from hlgateway.notifier.vault import new_master_key
from hlgateway.simulator import Simulator
from hlgateway.simulator.info import handle_info
from tests.helpers import eventually
from tests.notifier.conftest import NotifierFactory
from tests.notifier.fakebot import Failure, FakeBotApi, Sent, buttons_of
from tests.notifier.test_bot import eventually_text
from tests.trading.test_orders_end_to_end import approve_agent

CHAT = 3001
MASTER = new_master_key()
FAST = Limits(private_interval=0.05, group_interval=0.05)


def fills_of(fakebot: FakeBotApi, chat: int, coin: str) -> list[str]:
    return [
        line
        for text in fakebot.texts(chat)
        for line in text.split("\n")
        if line.startswith(("Bought ", "Sold ")) and f" {coin} @ " in line
    ]


async def next_buttons(fakebot: FakeBotApi, chat: int, after: int) -> Sent:
    """The next message of ours with buttons, after the first `after` of them."""
    await eventually(lambda: len(fakebot.with_buttons(chat)) > after, 20)
    return fakebot.with_buttons(chat)[after]


def orders_with(sim: Simulator, account: str, cloid: str) -> set[int]:
    """The distinct orders the exchange has for `cloid` (exactly once: one)."""
    return {o["oid"] for o in sim.ledger(account)["orders"] if o.get("cloid") == cloid}


async def cloid_of(notifier: Notifier, preview_id: int) -> str:
    async with notifier.repo.transaction() as t:
        row = await t.previews.get(preview_id)
    assert row is not None and row.cloid is not None
    return row.cloid


@pytest.fixture
async def connected(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sim: Simulator, sqlite_url: str
) -> Callable[..., Any]:
    async def connect(**options: Any) -> tuple[Notifier, str, str]:
        notifier = make_notifier(sqlite_url, key=MASTER, limits=FAST, **options)
        await notifier.start()
        account = sim.local_account.address
        key = await approve_agent(sim)
        fakebot.say(CHAT, f"/connect {account}")
        await eventually_text(fakebot, CHAT, "Send me the private key")
        update = fakebot.say(CHAT, key)
        await eventually_text(fakebot, CHAT, "Connected: agent")
        assert (CHAT, 10_000 + update) in fakebot.deleted  # the key's message, at once
        await eventually(lambda: "ETH" in notifier.state.prices, 20)
        return notifier, account, key

    return connect


async def test_connect_buy_confirm_and_the_fill_comes_once(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected()
    fakebot.say(CHAT, "/buy ETH 0.05")
    preview = await next_buttons(fakebot, CHAT, 0)
    assert "Buy 0.05 ETH" in preview.visible and "at market" in preview.visible
    for shown in ("Notional ≈", "fee ≈", "Leverage", "liquidation", "confirm within 30 s"):
        assert shown in preview.visible, shown
    confirm = buttons_of(preview)["Confirm"]
    tap = fakebot.press(CHAT, preview.message_id or 0, confirm)
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 0.05 ETH")
    await eventually(lambda: len(fills_of(fakebot, CHAT, "ETH")) >= 1, 20)
    assert fakebot.current(CHAT, preview.message_id or 0).endswith("Confirmed: placing it.")
    # A double tap and Telegram's retry of the first tap place nothing more.
    fakebot.press(CHAT, preview.message_id or 0, confirm)
    fakebot.replay(tap)
    await eventually(lambda: any(t == "Already placed." for _, t in fakebot.answers), 20)
    fakebot.say(CHAT, "/wallets")  # everything before it has been handled by then
    await eventually_text(fakebot, CHAT, f"{account} (trading)")
    cloid = await cloid_of(notifier, int(confirm.split(":")[1]))
    assert len(orders_with(sim, account, cloid)) == 1
    answers = [t for _, t in fakebot.answers]
    assert answers.count("Placing…") == 1 and answers.count("Already placed.") == 1
    # Even the very same signed order sent again (as after a kill whose first send did
    # reach the exchange) is taken once: its nonce is the confirmation's, spent already.
    preview_id = int(confirm.split(":")[1])
    async with notifier.repo.db.transaction() as tx:
        await tx.execute("UPDATE previews SET state = 'confirmed' WHERE id = ?", (preview_id,))
    await notifier.trading.place(preview_id)
    await eventually_text(fakebot, CHAT, "Placed (order")
    assert len(orders_with(sim, account, cloid)) == 1
    assert len(fills_of(fakebot, CHAT, "ETH")) == len(
        [f for f in sim.ledger(account)["fills"] if f["coin"] == "ETH"]
    )
    assert not fakebot.violations


async def test_a_limit_order_rests_is_listed_and_cancelled_by_its_button(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected()
    mid = notifier.state.prices["ETH"]
    price = (mid * Decimal("0.8")).quantize(Decimal(1))
    fakebot.say(CHAT, f"/buy ETH $100 {price}")
    preview = await next_buttons(fakebot, CHAT, 0)
    assert f"limit {price} (Gtc)" in preview.visible and "(maker)" in preview.visible
    fakebot.press(CHAT, preview.message_id or 0, buttons_of(preview)["Confirm"])
    await eventually_text(fakebot, CHAT, "📌 Resting: buy")
    fakebot.say(CHAT, "/orders")
    listing = await next_buttons(fakebot, CHAT, 1)
    assert "Open orders:" in listing.visible and f"@ {price}" in listing.visible
    (cancel,) = [data for label, data in buttons_of(listing).items() if label.startswith("Cancel")]
    fakebot.press(CHAT, listing.message_id or 0, cancel)
    await eventually_text(fakebot, CHAT, "Cancelled 1 order(s).")
    oid = int(cancel.split(":")[2])
    statuses = [o["status"] for o in sim.ledger(account)["orders"] if o["oid"] == oid]
    assert statuses == ["open", "canceled"]


async def test_close_a_position_from_the_positions_button(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected()
    fakebot.say(CHAT, "/sell SOL 2")
    preview = await next_buttons(fakebot, CHAT, 0)
    fakebot.press(CHAT, preview.message_id or 0, buttons_of(preview)["Confirm"])
    await eventually_text(fakebot, CHAT, "✅ Filled: sell 2 SOL")

    def short_sol() -> bool:
        state = notifier.state.accounts.get(account) or {}
        return any(p.get("symbol") == "SOL" for p in state.get("positions") or [])

    await eventually(short_sol, 20)
    fakebot.say(CHAT, "/positions")
    positions = await next_buttons(fakebot, CHAT, 1)
    fakebot.press(CHAT, positions.message_id or 0, buttons_of(positions)["Close SOL"])
    closing = await next_buttons(fakebot, CHAT, 2)
    assert "Close with a buy of 2 SOL" in closing.visible
    fakebot.press(CHAT, closing.message_id or 0, buttons_of(closing)["Confirm"])
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 2 SOL")
    await eventually(lambda: not short_sol(), 20)


async def spot_total(sim: Simulator, account: str, token: str) -> Decimal:
    state = handle_info(sim.world, {"type": "spotClearinghouseState", "user": account})
    row = next((b for b in state["balances"] if b["coin"] == token), None)
    return Decimal(row["total"]) if row else Decimal(0)


async def test_spot_buy_limit_cancel_and_close_sells_the_base(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected()
    await eventually(lambda: "HYPE/USDC" in notifier.state.prices, 20)
    fakebot.say(CHAT, "/buy HYPE/USDC 10")
    preview = await next_buttons(fakebot, CHAT, 0)
    assert "Buy 10 HYPE/USDC" in preview.visible and "at market" in preview.visible
    assert "Spot: pays USDC, receives HYPE · no leverage" in preview.visible
    assert "Leverage" not in preview.visible and "liquidation" not in preview.visible
    fakebot.press(CHAT, preview.message_id or 0, buttons_of(preview)["Confirm"])
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 10 HYPE/USDC")
    await eventually(lambda: len(fills_of(fakebot, CHAT, "HYPE/USDC")) >= 1, 20)
    bought = await spot_total(sim, account, "HYPE")
    assert bought == Decimal(10) * (1 - Decimal("0.00045"))  # the fee is taken in HYPE

    # A limit buy rests, is listed under its pair's name, and its button cancels it.
    mid = notifier.state.prices["HYPE/USDC"]
    low = (mid * Decimal("0.8")).quantize(Decimal("0.01"))
    fakebot.say(CHAT, f"/buy HYPE/USDC 1 {low}")
    limit = await next_buttons(fakebot, CHAT, 1)
    fakebot.press(CHAT, limit.message_id or 0, buttons_of(limit)["Confirm"])
    await eventually_text(fakebot, CHAT, "📌 Resting: buy 1 HYPE/USDC")
    fakebot.say(CHAT, "/orders")
    listing = await next_buttons(fakebot, CHAT, 2)
    assert "HYPE/USDC @" in listing.visible and "@107" not in listing.visible
    (cancel,) = [data for label, data in buttons_of(listing).items() if label.startswith("Cancel")]
    assert cancel.startswith("cancel:HYPE/USDC:")
    fakebot.press(CHAT, listing.message_id or 0, cancel)
    await eventually_text(fakebot, CHAT, "Cancelled 1 order(s).")

    # /close on a spot pair sells what is free of the base token (on its size step).
    fakebot.say(CHAT, "/close HYPE/USDC")
    closing = await next_buttons(fakebot, CHAT, 3)
    step = Decimal(1).scaleb(-(await notifier.trading.exchange.market("HYPE/USDC")).sz_decimals)
    size = (bought / step).to_integral_value(rounding="ROUND_DOWN") * step
    assert f"Sell {size.normalize()} HYPE/USDC" in closing.visible, closing.visible
    assert "Spot: pays HYPE, receives USDC" in closing.visible
    fakebot.press(CHAT, closing.message_id or 0, buttons_of(closing)["Confirm"])
    await eventually_text(fakebot, CHAT, f"✅ Filled: sell {size.normalize()} HYPE/USDC")
    assert await spot_total(sim, account, "HYPE") == bought - size
    fakebot.say(CHAT, "/leverage HYPE/USDC 3")
    await eventually_text(fakebot, CHAT, "HYPE/USDC is a spot pair: it has no leverage.")
    fakebot.say(CHAT, "/close PURR/USDC")
    await eventually_text(fakebot, CHAT, "No PURR to sell")
    assert not fakebot.violations


def test_spot_prices_and_sizes_round_as_hyperliquid_wants() -> None:
    spot = Market("X/USDC", 10_001, 0, 0, spot=True, base="X")
    perp = Market("X", 3, 0, 20)
    cmd = c.Trade(True, "X/USDC", Decimal("12.7"), False, Decimal("0.00123456789"))
    assert plan_trade(cmd, spot, Decimal("0.0012")).price == Decimal("0.0012346")  # 8 - 0
    assert plan_trade(cmd, perp, Decimal("0.0012")).price == Decimal("0.001235")  # 6 - 0
    assert plan_trade(cmd, spot, Decimal("0.0012")).size == Decimal(12)  # szDecimals 0
    shown = preview(plan_trade(cmd, spot, Decimal("0.0012")), spot, Decimal("0.0012"), 0, None)
    assert shown.liquidation is None


class HeldClock:
    """The wall clock, until `hold()`: then one millisecond for as long as it is held."""

    def __init__(self) -> None:
        self.held: float | None = None

    def __call__(self) -> float:
        return time.time() if self.held is None else self.held

    def hold(self) -> None:
        self.held = int(time.time() * 1000) / 1000

    def release(self) -> None:
        self.held = None


async def test_chats_sharing_an_agent_key_confirm_in_the_same_millisecond(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    clock = HeldClock()
    notifier, account, key = await connected(clock=clock)
    other = CHAT + 1
    fakebot.say(other, f"/connect {account}")
    await eventually_text(fakebot, other, "Send me the private key")
    fakebot.say(other, key)  # the same agent key: one signer, one nonce sequence
    await eventually_text(fakebot, other, "Connected: agent")
    previews = []
    for chat, size in ((CHAT, "0.05"), (other, "0.06")):
        fakebot.say(chat, f"/buy ETH {size}")
        previews.append(await next_buttons(fakebot, chat, 0))
    ids = [int(buttons_of(p)["Confirm"].split(":")[1]) for p in previews]

    async def states() -> list[tuple[str, int | None]]:
        async with notifier.repo.transaction() as t:
            rows = [await t.previews.get(i) for i in ids]
        return [(r.state, r.confirmed_ms) for r in rows if r is not None]

    clock.hold()  # both taps land in one millisecond of the notifier's clock
    for chat, shown in zip((CHAT, other), previews, strict=True):
        fakebot.press(chat, shown.message_id or 0, buttons_of(shown)["Confirm"])
    stamps: list[int] = []

    async def both_confirmed() -> bool:
        found = await states()
        stamps[:] = sorted(ms for state, ms in found if state != "pending" and ms is not None)
        return len(stamps) == 2

    await eventually(both_confirmed, 20)
    held_ms = int((clock.held or 0) * 1000)
    assert stamps == [held_ms, held_ms + 1]  # one nonce each, from the key's sequence
    # Still that millisecond: a leverage change signed by the same key takes the next one.
    # (The chat hears of it once the clock moves again: sending is paced by it.)
    fakebot.say(other, "/leverage ETH 5")
    wallet = sim.world.accounts.wallet(account)
    assert wallet is not None
    await eventually(lambda: wallet.leverages.get("ETH") == 5, 20)
    clock.release()
    await eventually_text(fakebot, other, "Leverage of ETH: 5x (cross).")
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 0.05 ETH")
    await eventually_text(fakebot, other, "✅ Filled: buy 0.06 ETH")
    for preview_id, chat in zip(ids, (CHAT, other), strict=True):
        cloid = cloid_for(chat, preview_id, await created(notifier, preview_id))
        assert len(orders_with(sim, account, cloid)) == 1
    assert not fakebot.violations


async def created(notifier: Notifier, preview_id: int) -> int:
    async with notifier.repo.transaction() as t:
        row = await t.previews.get(preview_id)
    assert row is not None
    return row.created_ms


async def test_an_expired_preview_places_nothing(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected(confirm_seconds=5)
    fakebot.say(CHAT, "/buy ETH 0.05")
    preview = await next_buttons(fakebot, CHAT, 0)
    message = preview.message_id or 0
    await eventually(lambda: "Expired: nothing was placed." in fakebot.current(CHAT, message), 20)
    fakebot.press(CHAT, message, buttons_of(preview)["Confirm"])
    await eventually(lambda: any(t and "Expired" in t for _, t in fakebot.answers), 20)
    async with notifier.repo.transaction() as t:
        row = await t.previews.get(int(buttons_of(preview)["Confirm"].split(":")[1]))
    assert row is not None and row.state == "expired" and row.cloid is None
    assert not [f for f in sim.ledger(account)["fills"] if f["coin"] == "ETH"]
    # Cancel, on a fresh one: nothing placed either.
    fakebot.say(CHAT, "/sell ETH 0.05 99999")
    second = await next_buttons(fakebot, CHAT, 1)
    fakebot.press(CHAT, second.message_id or 0, buttons_of(second)["Cancel"])
    await eventually(
        lambda: "Cancelled: nothing was placed." in fakebot.current(CHAT, second.message_id or 0),
        20,
    )
    assert not sim.ledger(account)["orders"]


async def test_keys_that_are_wrong_are_refused_and_deleted(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sim: Simulator, sqlite_url: str
) -> None:
    notifier = make_notifier(sqlite_url, key=MASTER, limits=FAST)
    await notifier.start()
    account = sim.local_account.address
    unapproved = "0x" + "42" * 32
    for key, reason in (
        (unapproved, "is not an approved agent of"),
        (sim.local_account.key, "That is the account's own key"),
        ("0x" + "0" * 64, "not a valid private key"),
    ):
        fakebot.say(CHAT, f"/connect {account}")
        update = fakebot.say(CHAT, f"here it is: {key}")
        reply = await eventually_text(fakebot, CHAT, reason)
        assert reply.startswith("Not connected:") and "I deleted it." in reply
        assert (CHAT, 10_000 + update) in fakebot.deleted
    async with notifier.repo.transaction() as t:
        assert await t.agents.get(CHAT) is None
    fakebot.say(CHAT, "/buy ETH 1")
    await eventually_text(fakebot, CHAT, "Not connected: /connect <0x wallet> first.")
    # A key nobody asked for is deleted too, and never echoed, whatever came with it.
    fakebot.say(CHAT, "/disconnect")  # stop waiting for a key
    await eventually_text(fakebot, CHAT, "Not connected.")
    fakebot.say(CHAT, f"/watch {unapproved}")
    await eventually_text(fakebot, CHAT, "I was not waiting for one")
    everything = "\n".join(s.text for s in fakebot.sent)
    assert unapproved[2:] not in everything and sim.local_account.key[2:] not in everything


async def test_groups_get_no_trading_and_a_pasted_key_is_deleted(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    await connected()
    group = -4004
    for command in ("/connect " + sim.local_account.address, "/buy ETH 1", "/orders", "/limit"):
        fakebot.say(group, command, chat_type="group")
    await eventually(lambda: len(fakebot.texts(group)) >= 4, 20)
    assert all("private chat with me only" in t for t in fakebot.texts(group))
    update = fakebot.say(group, "0x" + "ab" * 32, chat_type="group")
    warning = await eventually_text(fakebot, group, "That looked like a private key")
    assert "treat it as leaked" in warning and (group, 10_000 + update) in fakebot.deleted


async def test_limits_per_order_and_per_day(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    await connected(trade_daily_orders=1)
    fakebot.say(CHAT, "/limit 50")
    await eventually_text(fakebot, CHAT, "Largest order: 50 USDC")
    fakebot.say(CHAT, "/buy ETH 1")
    await eventually_text(fakebot, CHAT, "Over this chat's limit")
    fakebot.say(CHAT, "/limit off")
    await eventually_text(fakebot, CHAT, "Largest order: 10000 USDC (this bot's limit)")
    fakebot.say(CHAT, "/buy ETH 0.01")
    preview = await next_buttons(fakebot, CHAT, 0)
    fakebot.press(CHAT, preview.message_id or 0, buttons_of(preview)["Confirm"])
    await eventually_text(fakebot, CHAT, "✅ Filled")
    fakebot.say(CHAT, "/buy ETH 0.01")
    await eventually_text(fakebot, CHAT, "the daily cap is 1")
    assert len(fakebot.with_buttons(CHAT)) == 1


async def test_a_429_while_confirming_delays_the_answer_and_places_once(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    notifier, account, _ = await connected()
    fakebot.say(CHAT, "/buy ETH 0.02")
    preview = await next_buttons(fakebot, CHAT, 0)
    confirm = buttons_of(preview)["Confirm"]
    fakebot.fail(CHAT, Failure(429, retry_after=2, count=2))
    fakebot.press(CHAT, preview.message_id or 0, confirm)
    fakebot.press(CHAT, preview.message_id or 0, confirm)  # impatient: a second tap
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 0.02 ETH")
    assert any(s.status == 429 for s in fakebot.sent)
    assert not fakebot.violations  # nothing reached the chat before retry_after passed
    cloid = await cloid_of(notifier, int(confirm.split(":")[1]))
    assert len(orders_with(sim, account, cloid)) == 1
    filled = [t for t in fakebot.texts(CHAT) if t.startswith("✅ Filled")]
    assert len(filled) == 1


def test_button_data_is_parsed_strictly() -> None:
    assert c.parse_button("ok:12") == c.ConfirmPreview(12)
    assert c.parse_button("no:12") == c.DropPreview(12)
    assert c.parse_button("close:eth") == c.ClosePressed("ETH")
    assert c.parse_button("cancel:ETH:77") == c.CancelPressed("ETH", 77)
    for bad in ("ok:x", "close:", "cancel:ETH", "drop table", "ok:1:2:3x"):
        assert isinstance(c.parse_button(bad), c.BadCommand), bad
    assert re.fullmatch(r"0x[0-9a-f]{32}", cloid_for(1, 2, 3))
    assert cloid_for(1, 2, 3) == cloid_for(1, 2, 3) != cloid_for(1, 3, 3)


async def burn_nonces(sim: Simulator, key: str, above: int, count: int) -> None:
    """`count` actions the agent key signs with nonces above `above` (as another app
    sharing the key would): Hyperliquid then keeps none at or below `above`."""
    agent = eth_account.Account.from_key(key)
    async with aiohttp.ClientSession() as session:
        for n in range(1, count + 1):
            nonce = above + n
            action = {"type": "scheduleCancel"}  # harmless: nothing to cancel
            signature = sign_l1_action(agent, action, None, nonce, None, False)
            body = {"action": action, "nonce": nonce, "signature": signature}
            async with session.post(sim.http_url + "/exchange", json=body) as resp:
                answer = await resp.json()
            assert "Invalid nonce" not in str(answer), answer


async def test_a_resent_confirmation_superseded_by_100_newer_actions_says_so(
    connected: Callable[..., Any], fakebot: FakeBotApi, sim: Simulator
) -> None:
    """docs/notifier.md "Nonces": a placement sent again (after a restart) once the same
    key signed more than 100 newer actions is refused as too low: the chat is told what
    happened, that nothing was placed, and what to do; never a wrong reason."""
    notifier, account, key = await connected()
    fakebot.say(CHAT, "/buy ETH 0.05")
    preview = await next_buttons(fakebot, CHAT, 0)
    confirm = buttons_of(preview)["Confirm"]
    fakebot.press(CHAT, preview.message_id or 0, confirm)
    await eventually_text(fakebot, CHAT, "✅ Filled: buy 0.05 ETH")
    # A confirmation whose first send never reached the exchange (a kill -9 right
    # after the tap): confirmed a moment ago, its own cloid, its nonce never used.
    preview_id = int(confirm.split(":")[1])
    stamp = notifier.trading.now_ms() - 1_000
    cloid = "0x" + "5e" * 16
    async with notifier.repo.db.transaction() as tx:
        await tx.execute(
            "UPDATE previews SET state = 'confirmed', cloid = ?, confirmed_ms = ? WHERE id = ?",
            (cloid, stamp, preview_id),
        )
    await burn_nonces(sim, key, stamp, 101)
    await notifier.trading.place(preview_id)
    await eventually_text(fakebot, CHAT, "refused this confirmation as too old")
    told = [t for t in fakebot.texts(CHAT) if "too old" in t][-1]
    for said in ("more than 100 newer actions", "Nothing was placed", "Send the command again"):
        assert said in told, told
    assert "took this confirmation before" not in told
    assert orders_with(sim, account, cloid) == set()
    async with notifier.repo.transaction() as t:
        row = await t.previews.get(preview_id)
    assert row is not None and row.state == "failed"

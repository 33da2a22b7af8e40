"""The trading commands and buttons, one short function each (docs/notifier.md "Trading").

Registered on the same router as the other commands (handlers.py); the update loop
refuses them in groups before they get here. Orders are only ever previewed here:
placing one is the Confirm button's work, once (trading.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from hlgateway.notifier import commands as c
from hlgateway.notifier.exchange import ExchangeError
from hlgateway.notifier.handlers import router
from hlgateway.notifier.preview import (
    NotPlaceable,
    check_limits,
    cloid_for,
    plain,
    plan_close,
    plan_spot_close,
    plan_trade,
    preview,
    preview_text,
)
from hlgateway.notifier.repository import AgentRow
from hlgateway.notifier.router import Context
from hlgateway.notifier.trading import Trading

__all__ = ["router"]

CONNECT_MS = 5 * 60_000  # how long /connect waits for the key
DEFAULT_LEVERAGE = 20  # Hyperliquid's default for a new position (cross), capped by the coin


def _trading(ctx: Context) -> Trading:
    assert ctx.trading is not None  # the update loop answers "off" before
    return ctx.trading


async def _agent(ctx: Context) -> AgentRow | None:
    agent = await ctx.t.agents.get(ctx.chat)
    if agent is None:
        await ctx.reply("Not connected: /connect <0x wallet> first.")
    return agent


@router.command(c.SecretPasted)
async def secret(ctx: Context, cmd: c.SecretPasted) -> None:
    check = ctx.prepared
    deleted = check is not None and check.deleted
    note = "I deleted it." if deleted else "I could not delete it: delete it yourself now."
    if ctx.chat_type != "private":
        await ctx.reply(
            f"⚠️ That looked like a private key. {note} Everyone here may have seen it: "
            "treat it as leaked (remove that API wallet on Hyperliquid). Keys and trading "
            "belong in a private chat with me."
        )
    elif check is not None and check.agent is not None:
        agent = check.agent
        await ctx.t.agents.put(ctx.chat, agent, ctx.now_ms)
        await ctx.t.chats.set_connecting(ctx.chat, None, 0)
        if await ctx.t.watches.add(ctx.chat, agent.wallet, "trading", ctx.now_ms):
            ctx.later(lambda: ctx.feed.watch(agent.wallet))
        await ctx.reply(
            f"Connected: agent {agent.agent} trades {agent.wallet} from this chat. {note} "
            "It is kept encrypted; /disconnect forgets it. /buy, /sell, /close, /orders."
        )
    elif check is not None and check.refusal is not None:
        await ctx.reply(f"Not connected: {check.refusal} {note}")
    else:
        await ctx.reply(
            f"That looked like a private key. {note} I was not waiting for one: "
            "/connect <0x wallet> first, then send the agent key."
        )


@router.command(c.Connect)
async def connect(ctx: Context, cmd: c.Connect) -> None:
    if ctx.trading is None or ctx.trading.vault is None:
        await ctx.reply(
            "Trading is off on this bot: its operator has set no key to keep agent keys "
            "encrypted with (HLGATEWAY_NOTIFIER_KEY)."
        )
        return
    await ctx.t.chats.set_connecting(ctx.chat, cmd.wallet, ctx.now_ms + CONNECT_MS)
    await ctx.reply(
        f"Send me the private key of an agent (API wallet) approved for {cmd.wallet}, in your "
        "next message. Not the account's own key: an API wallet can trade but not withdraw "
        "(Hyperliquid: More > API; on the simulator, `hlgateway simulate` prints a local "
        "account). I delete the message at once, check the key with the exchange and keep it "
        "encrypted."
    )


@router.command(c.Disconnect)
async def disconnect(ctx: Context, cmd: c.Disconnect) -> None:
    await ctx.t.chats.set_connecting(ctx.chat, None, 0)
    if await ctx.t.agents.delete(ctx.chat):
        await ctx.reply("Disconnected: the agent key is wiped. Revoke it on Hyperliquid too.")
    else:
        await ctx.reply("Not connected.")


@router.command(c.Trade, c.Close, c.ClosePressed)
async def order(ctx: Context, cmd: c.Trade | c.Close | c.ClosePressed) -> None:
    trading = _trading(ctx)
    if (agent := await _agent(ctx)) is None:
        return
    try:
        market = await trading.exchange.market(cmd.coin)
    except ExchangeError as exc:
        await ctx.reply(str(exc))
        return
    mid = ctx.state.prices.get(cmd.coin)
    if mid is None:
        await ctx.reply(f"No price for {cmd.coin} yet; try again in a moment.")
        return
    account = ctx.state.accounts.get(agent.wallet) or {}
    position = next(
        (p for p in account.get("positions") or [] if p.get("symbol") == cmd.coin), None
    )
    try:
        if isinstance(cmd, c.Trade):
            intent = plan_trade(cmd, market, mid)
        elif market.spot:  # closing a spot pair: selling its base token
            percent = cmd.percent if isinstance(cmd, c.Close) else Decimal(100)
            available = await trading.exchange.spot_available(agent.wallet, market.base)
            intent = plan_spot_close(c.Close(cmd.coin, percent), market, mid, available)
        else:
            percent = cmd.percent if isinstance(cmd, c.Close) else Decimal(100)
            size = _decimal(position.get("size") if position else None) or Decimal(0)
            intent = plan_close(c.Close(cmd.coin, percent), market, mid, size)
    except NotPlaceable as exc:
        await ctx.reply(str(exc))
        return
    except ExchangeError as exc:
        await ctx.reply(str(exc))
        return
    leverage = int(_decimal(position.get("leverage") if position else None) or 0) or min(
        DEFAULT_LEVERAGE, market.max_leverage
    )
    shown = preview(intent, market, mid, leverage, _decimal(account.get("accountValue")))
    limit = plain(Decimal(str(ctx.settings.trade_max_notional)))
    own = _decimal(await ctx.t.chats.max_notional(ctx.chat))
    refusal = check_limits(
        shown.notional,
        min(limit, own) if own else limit,
        await ctx.t.previews.confirmed_since(ctx.chat, _day_start(ctx.now_ms)),
        ctx.settings.trade_daily_orders,
    )
    if refusal is not None and not intent.reduce_only:  # closing is never held back
        await ctx.reply(refusal)
        return
    text = preview_text(shown, agent.wallet, ctx.settings.confirm_seconds)
    expires = ctx.now_ms + ctx.settings.confirm_seconds * 1000
    preview_id = await ctx.t.previews.add(
        ctx.chat, agent.wallet, intent.to_json(), text, str(shown.notional), ctx.now_ms, expires
    )
    buttons = [[("Confirm", f"ok:{preview_id}"), ("Cancel", f"no:{preview_id}")]]
    await ctx.t.previews.set_message(preview_id, await ctx.send(text, buttons=buttons))
    ctx.later(trading.poke)
    ctx.answer()


@router.command(c.ConfirmPreview)
async def confirm(ctx: Context, cmd: c.ConfirmPreview) -> None:
    trading = _trading(ctx)
    row = await ctx.t.previews.get(cmd.preview_id)
    if row is None or row.chat_id != ctx.chat:
        ctx.answer("Unknown order.")
        return
    if row.state != "pending":
        ctx.answer(ALREADY.get(row.state, f"Already {row.state}."))
        return
    cloid = cloid_for(ctx.chat, row.id, row.created_ms)
    # The confirmation's time is also its order's nonce, unique for the agent key across
    # every chat that holds it; stored with the confirmation, so a placement after a
    # kill sends the very same nonce (the exchange takes it once).
    agent = await ctx.t.agents.get(ctx.chat)
    stamp = ctx.now_ms if agent is None else await ctx.t.nonces.next(agent.agent, ctx.now_ms)
    if not await ctx.t.previews.confirm(row.id, cloid, ctx.now_ms, stamp):
        ctx.answer("Expired: nothing was placed.")  # the expiry loop edits the message
        return
    await ctx.t.outbox.add_message(
        ctx.chat, f"✅ {row.summary}\nConfirmed: placing it.", ctx.now_ms, edit_of=row.message_row
    )
    ctx.answer("Placing…")
    ctx.later(lambda: trading.schedule(row.id))


ALREADY = {
    "confirmed": "Already confirmed: it is placed once.",
    "placed": "Already placed.",
    "rejected": "Already tried: the exchange refused it.",
    "failed": "Already tried: it was not placed.",
    "abandoned": "Not placed (too late); send the command again.",
    "expired": "Expired: nothing was placed.",
    "cancelled": "Cancelled: nothing was placed.",
}


@router.command(c.DropPreview)
async def drop(ctx: Context, cmd: c.DropPreview) -> None:
    row = await ctx.t.previews.get(cmd.preview_id)
    if row is None or row.chat_id != ctx.chat:
        ctx.answer("Unknown order.")
    elif await ctx.t.previews.finish(row.id, "cancelled", "", from_state="pending"):
        await ctx.t.outbox.add_message(
            ctx.chat,
            f"<s>{row.summary}</s>\nCancelled: nothing was placed.",
            ctx.now_ms,
            edit_of=row.message_row,
        )
        ctx.answer("Cancelled.")
    else:
        ctx.answer(ALREADY.get(row.state, f"Already {row.state}."))


@router.command(c.Cancel, c.CancelPressed)
async def cancel(ctx: Context, cmd: c.Cancel | c.CancelPressed) -> None:
    trading = _trading(ctx)
    if (agent := await _agent(ctx)) is None:
        return
    oid = cmd.oid if isinstance(cmd, c.CancelPressed) else None
    ctx.answer("Cancelling…")
    ctx.later(lambda: trading.desk.cancel(ctx.chat, agent, cmd.coin, oid))


@router.command(c.OpenOrders)
async def open_orders(ctx: Context, cmd: c.OpenOrders) -> None:
    trading = _trading(ctx)
    if (agent := await _agent(ctx)) is not None:
        ctx.later(lambda: trading.desk.list_orders(ctx.chat, agent))


@router.command(c.Leverage)
async def leverage(ctx: Context, cmd: c.Leverage) -> None:
    trading = _trading(ctx)
    if (agent := await _agent(ctx)) is not None:
        ctx.later(lambda: trading.desk.leverage(ctx.chat, agent, cmd.coin, cmd.leverage))


@router.command(c.Limit)
async def limit(ctx: Context, cmd: c.Limit) -> None:
    operator = plain(Decimal(str(ctx.settings.trade_max_notional)))
    if cmd.max_notional is not None:
        value = None if cmd.max_notional == 0 else min(cmd.max_notional, operator)
        await ctx.t.chats.set_max_notional(ctx.chat, None if value is None else str(value))
    own = _decimal(await ctx.t.chats.max_notional(ctx.chat))
    await ctx.reply(
        f"Largest order: {own or operator} USDC"
        + ("" if own else " (this bot's limit)")
        + f"; at most {ctx.settings.trade_daily_orders} orders a day. "
        "/limit <usdc> lowers it, /limit off goes back."
    )


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _day_start(now_ms: int) -> int:
    day = datetime.fromtimestamp(now_ms / 1000, UTC).replace(hour=0, minute=0, second=0)
    return int(day.replace(microsecond=0).timestamp() * 1000)

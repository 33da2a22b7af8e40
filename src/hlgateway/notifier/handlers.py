"""The commands, one short function each (`commands.py` parses what a chat typed).

Every handler runs inside the transaction of its Telegram update: what it writes
(`ctx.t`) and its replies commit with the update offset, or not at all. What must
follow the commit (subscribing a wallet, the alerts held in memory) goes through
`ctx.later`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from hlgateway.notifier import commands as c
from hlgateway.notifier.alerts import PriceAlert
from hlgateway.notifier.format import esc, number, positions_text
from hlgateway.notifier.router import Context, Router

router = Router()


@router.command(c.BadCommand)
async def bad(ctx: Context, cmd: c.BadCommand) -> None:
    await ctx.reply(cmd.reply)


@router.command(c.Start, c.Help)
async def help_(ctx: Context, cmd: c.Start | c.Help) -> None:
    intro = "I notify the fills of Hyperliquid wallets.\n\n" if isinstance(cmd, c.Start) else ""
    await ctx.reply(intro + c.HELP)


@router.command(c.Watch)
async def watch(ctx: Context, cmd: c.Watch) -> None:
    limit = ctx.settings.max_watches
    existing = {w.wallet for w in await ctx.t.watches.of_chat(ctx.chat)}
    if cmd.wallet not in existing and len(existing) >= limit:
        await ctx.reply(f"Too many watches (at most {limit}). /unwatch one first.")
        return
    name = f" ({cmd.label})" if cmd.label else ""
    if await ctx.t.watches.add(ctx.chat, cmd.wallet, cmd.label, ctx.now_ms):
        await ctx.reply(f"Watching {cmd.wallet}{name}. Every fill from now on comes here.")
    else:
        await ctx.reply(f"Already watching {cmd.wallet}; label set{name}.")
    if cmd.wallet not in ctx.feed.watching():
        ctx.later(lambda: ctx.feed.watch(cmd.wallet))
    if await ctx.t.chats.ledger(ctx.chat):
        ctx.later(lambda: ctx.feed.want_ledger(cmd.wallet, True))


@router.command(c.Unwatch)
async def unwatch(ctx: Context, cmd: c.Unwatch) -> None:
    if not await ctx.t.watches.remove(ctx.chat, cmd.wallet):
        await ctx.reply(f"Not watching {cmd.wallet}.")
        return
    await ctx.reply(f"Stopped watching {cmd.wallet}.")
    if not await ctx.t.watches.watched(cmd.wallet):
        ctx.later(lambda: ctx.feed.unwatch(cmd.wallet))
    elif not await ctx.t.watches.ledger_wanted(cmd.wallet):
        ctx.later(lambda: ctx.feed.want_ledger(cmd.wallet, False))
    ctx.later(lambda: ctx.state.forget_watch(ctx.chat, cmd.wallet))


@router.command(c.Wallets)
async def wallets(ctx: Context, cmd: c.Wallets) -> None:
    rows = await ctx.t.watches.of_chat(ctx.chat)
    if not rows:
        await ctx.reply("No wallets watched. /watch <0x wallet> [label]")
        return
    lines = [f"{r.wallet}" + (f" ({r.label})" if r.label else "") for r in rows]
    await ctx.reply("Watching:\n" + "\n".join(lines))


@router.command(c.Positions)
async def positions(ctx: Context, cmd: c.Positions) -> None:
    rows = await ctx.t.watches.of_chat(ctx.chat)
    if not rows:
        await ctx.reply("No wallets watched.")
        return
    text = positions_text([(r.wallet, r.label) for r in rows], ctx.state.accounts)
    agent = await ctx.t.agents.get(ctx.chat) if ctx.chat_type == "private" else None
    account = ctx.state.accounts.get(agent.wallet) if agent is not None else None
    await ctx.send(text, buttons=position_buttons(account) if account else None)


def position_buttons(account: dict[str, object]) -> list[list[tuple[str, str]]] | None:
    """A Close button for each open position of the chat's connected wallet."""
    positions = account.get("positions")
    rows = [
        [(f"Close {p['symbol']}", f"close:{p['symbol']}")]
        for p in (positions if isinstance(positions, list) else [])
        if isinstance(p, dict) and p.get("size") and c.COIN_RE.match(str(p.get("symbol")))
    ]
    return rows[:20] or None


@router.command(c.Alert)
async def alert(ctx: Context, cmd: c.Alert) -> None:
    prices, limit = ctx.state.prices, ctx.settings.max_alerts
    # The command's symbol is upper-cased; the market's own spelling is kept
    # (kPEPE, xyz:XYZ100, HYPE/USDC).
    symbol = _market_symbol(cmd.symbol, prices)
    if not prices:
        await ctx.reply("Prices are not in yet; try again in a moment.")
    elif symbol is None:
        await ctx.reply(f"Unknown symbol: {cmd.symbol}")
    elif len(await ctx.t.alerts.of_chat(ctx.chat)) >= limit:
        await ctx.reply(f"Too many alerts (at most {limit}).")
    else:
        alert_id = await ctx.t.alerts.add(ctx.chat, symbol, cmd.direction.value, str(cmd.price))
        new = PriceAlert(alert_id, ctx.chat, symbol, cmd.direction, cmd.price)
        ctx.later(lambda: ctx.state.alerts.__setitem__(alert_id, new))
        await ctx.reply(
            f"Alert set: {symbol} {cmd.direction.value} {cmd.price}"
            f" (now {number(str(prices[symbol]))})."
        )


def _market_symbol(typed: str, prices: Mapping[str, object]) -> str | None:
    """The market `typed` names, matched as typed or else ignoring case."""
    if typed in prices:
        return typed
    folded = typed.casefold()
    return next((s for s in prices if s.casefold() == folded), None)


@router.command(c.Alerts)
async def alerts(ctx: Context, cmd: c.Alerts) -> None:
    rows = await ctx.t.alerts.of_chat(ctx.chat)
    if not rows:
        await ctx.reply("No alerts. /alert <SYMBOL> above|below <price>")
        return
    lines = [
        f"{n}. {r.symbol} {r.direction} {r.level}" + ("" if r.armed else " (fired)")
        for n, r in enumerate(rows, start=1)
    ]
    await ctx.reply("\n".join(lines))


@router.command(c.DelAlert)
async def delalert(ctx: Context, cmd: c.DelAlert) -> None:
    rows = await ctx.t.alerts.of_chat(ctx.chat)
    if cmd.number > len(rows):
        await ctx.reply(f"No alert {cmd.number}; /alerts lists {len(rows)}.")
        return
    row = rows[cmd.number - 1]
    await ctx.t.alerts.delete(row.id)
    ctx.later(lambda: ctx.state.alerts.pop(row.id, None))
    await ctx.reply(f"Deleted alert {cmd.number}: {row.symbol} {row.direction} {row.level}")


@router.command(c.Mute)
async def mute(ctx: Context, cmd: c.Mute) -> None:
    await ctx.t.chats.set_muted(ctx.chat, ctx.now_ms + cmd.minutes * 60_000)
    await ctx.reply(f"Muted for {cmd.minutes} min. Fills are kept and come when it ends.")


@router.command(c.Unmute)
async def unmute(ctx: Context, cmd: c.Unmute) -> None:
    await ctx.t.chats.set_muted(ctx.chat, 0)
    await ctx.reply("Unmuted.")


@router.command(c.Orders)
async def orders(ctx: Context, cmd: c.Orders) -> None:
    await ctx.t.chats.set_orders(ctx.chat, cmd.on)
    await ctx.reply("Order events on." if cmd.on else "Order events off (fills only).")


@router.command(c.Ledger)
async def ledger(ctx: Context, cmd: c.Ledger) -> None:
    """Deposits, withdrawals and liquidations of the watched wallets: the gateway's
    `user_ledger`, read only for wallets that some chat wants it of."""
    await ctx.t.chats.set_ledger(ctx.chat, cmd.on, ctx.now_ms)
    for row in await ctx.t.watches.of_chat(ctx.chat):
        wanted = await ctx.t.watches.ledger_wanted(row.wallet)
        ctx.later(functools.partial(ctx.feed.want_ledger, row.wallet, wanted))
    await ctx.reply(
        "Ledger events on: deposits, withdrawals and liquidations from now on."
        if cmd.on
        else "Ledger events off."
    )


@router.command(c.Dashboard)
async def dashboard(ctx: Context, cmd: c.Dashboard) -> None:
    """A web-app button: the dashboard opens inside Telegram, logged in as this chat
    (the gateway checks Telegram's initData and reads this chat's watches)."""
    if ctx.chat_type != "private":
        # Telegram allows web-app buttons in private chats only.
        await ctx.reply("Open /dashboard in a private chat with me.")
    elif not await ctx.t.watches.of_chat(ctx.chat):
        await ctx.reply("Watch a wallet first: /watch <0x wallet> [label]")
    else:
        url = ctx.settings.dashboard_url or dashboard_of(ctx.settings.gateway)
        await ctx.send(esc("Your watched wallets, live: orders, fills, positions."), url)


def dashboard_of(gateway: str) -> str:
    """The dashboard of the gateway at WebSocket URL `gateway`: ws://h:p/ws -> http://h:p/."""
    parts = urlsplit(gateway)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/", "", ""))

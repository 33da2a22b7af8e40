"""`hlgateway watch`: a live terminal view of one channel, through `GatewayClient`.

```
hlgateway watch prices BTC ETH HYPE/USDC
hlgateway watch orderbook BTC --depth 10
hlgateway watch trades SOL
hlgateway watch candles HYPE/USDC --interval 1h
hlgateway watch context BTC            (asset context: mark, oracle, funding, OI)
hlgateway watch bbo xyz:XYZ100
hlgateway watch orders|fills|account|ledger --user ID [--wallet 0x..]
```

The header shows the link (connected, reconnecting, ...), how many times it came
back, whether a lossless stream (orders, fills, trades) came back whole after a
break (`recovered`: the gateway replayed what was missed) or not (`resynced`:
messages were lost for this client), the round trip of an application ping
every few seconds, and the latest link events as they happen. State and
rendering are separate: `WatchView` takes data messages and link events,
`render()` turns it into rich renderables.

When stdout is not a terminal (a pipe, a file), there is no live view: every
link event and every update is printed as one plain line, as it happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hlgateway.client import (
    AuthenticationFailed,
    Backoff,
    ClientClosed,
    DataMessage,
    Disconnected,
    GatewayClient,
    GatewayError,
    Item,
    Reconnecting,
    Recovered,
    Resync,
    Subscription,
    SubscriptionRefused,
)
from hlgateway.client.registry import latest_candles
from hlgateway.client.tokens import TokenSource

# watch's names for the channels
CHANNELS = {
    "prices": "prices",
    "orderbook": "orderbook",
    "trades": "trades",
    "candles": "candles",
    "context": "asset_context",
    "bbo": "bbo",
    "orders": "user_orders",
    "fills": "user_fills",
    "account": "account_updates",
    "ledger": "user_ledger",
}
USER_VIEWS = ("orders", "fills", "account", "ledger")
SYMBOL_VIEWS = ("orderbook", "trades", "candles", "context", "bbo")
CANDLES_SHOWN = 20
DEFAULT_URL = "ws://127.0.0.1:8080/ws"
KEEP = 20  # rows of trades, orders, fills


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("view", choices=list(CHANNELS), help="what to watch")
    parser.add_argument("symbols", nargs="*", help="symbols (prices: any number, else one)")
    parser.add_argument("--depth", type=int, help="orderbook levels (default 10)")
    parser.add_argument(
        "--interval", default="1m", help="candles: 1m 3m 5m 15m 30m 1h 2h 4h 8h 12h 1d 3d 1w 1M"
    )
    parser.add_argument("--user", help="user id for orders, fills, account, ledger")
    parser.add_argument("--wallet", help="one of the user's wallets (default: all of them)")
    parser.add_argument(
        "--url", default=os.environ.get("HLGATEWAY_URL", DEFAULT_URL), help="gateway WebSocket"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("HLGATEWAY_TOKEN"),
        help="JWT (HLGATEWAY_TOKEN); default: minted with JWT_SECRET or the local dev secret",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")


def subscription_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(channel, params) for the command line; raises ValueError for a bad one."""
    view: str = args.view
    symbols: list[str] = list(args.symbols)
    if view == "prices":
        return "prices", {"symbols": symbols} if symbols else {}
    if view in SYMBOL_VIEWS:
        if len(symbols) != 1:
            raise ValueError(f"watch {view} takes one symbol")
        params: dict[str, Any] = {"symbol": symbols[0]}
        if view == "orderbook" and args.depth is not None:
            params["depth"] = args.depth
        if view == "candles":
            params["interval"] = getattr(args, "interval", None) or "1m"
        return CHANNELS[view], params
    if not args.user:
        raise ValueError(f"watch {view} needs --user ID")
    if symbols:
        raise ValueError(f"watch {view} takes no symbols")
    params = {"userId": args.user}
    if args.wallet:
        params["wallet"] = args.wallet
    return CHANNELS[view], params


# -- state ----------------------------------------------------------------------------


@dataclass
class WatchView:
    channel: str
    params: dict[str, Any]
    url: str
    link: str = "connecting"
    reconnects: int = 0
    rtt_ms: float | None = None
    error: str | None = None
    updates: int = 0
    last_update: float | None = None
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    book: dict[str, Any] | None = None
    account: dict[str, Any] | None = None
    latest: dict[str, Any] | None = None  # candles (the folded series), context, bbo
    rows: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP))
    log: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=6))
    recovered: int = 0  # breaks the gateway replayed in full
    resynced: int = 0  # breaks it could not: messages lost for this client
    recovery: str | None = None  # the last of them, for the status line
    echo: Callable[[str], None] | None = None  # plain mode: one line per event and update

    def event(self, text: str) -> None:
        at = time.time()
        self.log.append((at, text))
        if self.echo is not None:
            self.echo(f"{_clock(at)}  {text}")

    def fail(self, text: str) -> None:
        self.error = text
        if self.echo is not None:
            self.event(text)

    def on_recovered(self, event: Recovered) -> None:
        self.recovered += 1
        missed = event.head.offset - event.since.offset
        self.recovery = f"recovered after a break ({missed} replayed)"
        self.event(f"{self.recovery}: since offset {event.since.offset}")

    def on_resync(self, event: Resync) -> None:
        self.resynced += 1
        self.recovery = f"resynced after a break ({event.reason})"
        self.event(f"{self.recovery}: messages may be missing")

    def on_item(self, item: Item) -> None:
        if isinstance(item, Resync):
            return  # shown by the `resync` event (once for the stream, not per handle)
        self.on_data(item)

    def on_data(self, msg: DataMessage) -> None:
        if self.echo is not None:
            for line in lines_of(msg):
                self.echo(f"{_clock(msg.timestamp or time.time())}  {line}")
        self.updates += 1
        self.last_update = time.time()
        data = msg.data
        if self.channel == "prices":
            self.prices.update(data)
        elif self.channel == "orderbook":
            self.book = data
        elif self.channel == "account_updates":
            self.account = data
        elif self.channel == "candles":
            self.latest = latest_candles(self.latest, data) if self.latest else data
        elif self.channel in ("asset_context", "bbo"):
            self.latest = data
        elif self.channel == "user_ledger":
            for event in data.get("events", []):
                self.rows.appendleft(event)
        elif self.channel == "trades":
            for trade in data.get("trades", []):
                self.rows.appendleft(trade)
        elif self.channel == "user_fills":
            for fill in data.get("fills", []):
                self.rows.appendleft(fill)
        elif self.channel == "user_orders":
            self.rows.appendleft({"action": data.get("action"), **data.get("order", {})})


# -- rendering ------------------------------------------------------------------------

LINK_STYLE = {"connected": "bold green", "closed": "bold red"}


def _clock(ms_or_s: float | None) -> str:
    if ms_or_s is None:
        return "-"
    seconds = ms_or_s / 1000 if ms_or_s > 1e11 else ms_or_s
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]  # local time


def _num(value: Any, places: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{places}f}".rstrip("0").rstrip(".") if places else f"{value:,.0f}"
    return str(value)


def _side(side: Any) -> Text:
    word = str(side)
    buy = word.lower() in ("buy", "b", "bid", "long")
    return Text(word, style="green" if buy else "red")


def render(view: WatchView) -> RenderableType:
    return Group(_header(view), _body(view), _log(view))


def _header(view: WatchView) -> RenderableType:
    status = Text()
    status.append(f" {view.link} ", style=LINK_STYLE.get(view.link, "bold yellow"))
    status.append(f"  {view.url}  ")
    status.append(f"reconnects {view.reconnects}  ")
    status.append(f"rtt {view.rtt_ms:.1f} ms  " if view.rtt_ms is not None else "rtt -  ")
    status.append(f"updates {view.updates}  last {_clock(view.last_update)}")
    if view.recovery is not None:
        status.append(f"\nrecovered {view.recovered}  resynced {view.resynced}  ")
        style = "yellow" if view.recovery.startswith("resynced") else "green"
        status.append(f"last break: {view.recovery}", style=style)
    if view.error:
        status.append(f"\n{view.error}", style="bold red")
    title = f"{view.channel} {view.params}" if view.params else view.channel
    return Panel(status, title=title, title_align="left")


def _log(view: WatchView) -> RenderableType:
    text = Text()
    for at, line in view.log:
        text.append(f"{_clock(at)}  {line}\n", style="dim")
    return text


def _body(view: WatchView) -> RenderableType:
    if view.channel == "prices":
        table = Table("symbol", "price", "24h %", "24h volume (USD)", "time", expand=False)
        for symbol in sorted(view.prices):
            quote = view.prices[symbol]
            change = quote.get("change24h", 0.0)
            table.add_row(
                symbol,
                _num(quote.get("price"), 6),
                Text(f"{change:+.2f}", style="green" if change >= 0 else "red"),
                _num(quote.get("volume24h"), 0),
                _clock(quote.get("timestamp")),
            )
        return table
    if view.channel == "orderbook":
        table = Table("bid size", "bid", "ask", "ask size", title=_book_title(view.book))
        if view.book is not None:
            bids, asks = view.book.get("bids", []), view.book.get("asks", [])
            for level in range(max(len(bids), len(asks))):
                bid = bids[level] if level < len(bids) else (None, None)
                ask = asks[level] if level < len(asks) else (None, None)
                table.add_row(
                    _num(bid[1]),
                    Text(_num(bid[0], 6), style="green"),
                    Text(_num(ask[0], 6), style="red"),
                    _num(ask[1]),
                )
        return table
    if view.channel == "trades":
        table = Table("time", "side", "price", "size", "id")
        for t in view.rows:
            table.add_row(
                _clock(t.get("timestamp")),
                _side(t.get("side")),
                _num(t.get("price"), 6),
                _num(t.get("size")),
                str(t.get("id")),
            )
        return table
    if view.channel == "user_orders":
        table = Table("time", "action", "symbol", "side", "price", "amount", "left", "status")
        for o in view.rows:
            table.add_row(
                _clock(o.get("timestamp")),
                str(o.get("action")),
                str(o.get("symbol")),
                _side(o.get("side")),
                _num(o.get("price"), 6),
                _num(o.get("amount")),
                _num(o.get("remaining")),
                str(o.get("status")),
            )
        return table
    if view.channel == "candles":
        return _candles(view.latest)
    if view.channel == "asset_context":
        return _context(view.latest)
    if view.channel == "bbo":
        table = Table("symbol", "bid size", "bid", "ask", "ask size", "time")
        b = view.latest
        if b is not None:
            bid, ask = b.get("bid") or (None, None), b.get("ask") or (None, None)
            table.add_row(
                str(b.get("symbol")),
                _num(bid[1]),
                Text(_num(bid[0], 6), style="green"),
                Text(_num(ask[0], 6), style="red"),
                _num(ask[1]),
                _clock(b.get("timestamp")),
            )
        return table
    if view.channel == "user_ledger":
        table = Table("time", "kind", "amount", "token", "detail", "wallet")
        for e in view.rows:
            amount = e.get("amount") or 0.0
            table.add_row(
                _clock(e.get("time")),
                str(e.get("kind")),
                Text(_num(amount, 2), style="green" if amount >= 0 else "red"),
                str(e.get("token")),
                str(e.get("symbol") or (e.get("raw") or {}).get("type", "")),
                str(e.get("wallet", ""))[:10] + "..",
            )
        return table
    if view.channel == "user_fills":
        table = Table("time", "symbol", "side", "price", "size", "fee", "pnl", "wallet")
        for f in view.rows:
            table.add_row(
                _clock(f.get("timestamp")),
                str(f.get("symbol")),
                _side(f.get("side")),
                _num(f.get("price"), 6),
                _num(f.get("size")),
                _num(f.get("fee")),
                _num(f.get("closedPnl")),
                str(f.get("wallet", ""))[:10] + "..",
            )
        return table
    return _account(view.account)


def _candles(series: dict[str, Any] | None) -> RenderableType:
    if not series:
        return Text("waiting for the candles", style="dim")
    candles = series.get("candles", [])
    table = Table(
        "open time", "open", "high", "low", "close", "volume", "trades",
        title=f"{series.get('symbol')} {series.get('interval')}  ({len(candles)} candles)",
    )  # fmt: skip
    for c in candles[-CANDLES_SHOWN:]:
        up = (c.get("close") or 0) >= (c.get("open") or 0)
        table.add_row(
            _clock(c.get("t")),
            _num(c.get("open"), 6),
            _num(c.get("high"), 6),
            _num(c.get("low"), 6),
            Text(_num(c.get("close"), 6), style="green" if up else "red"),
            _num(c.get("volume")),
            str(c.get("trades")),
        )
    return table


def _context(ctx: dict[str, Any] | None) -> RenderableType:
    if ctx is None:
        return Text("waiting for the context", style="dim")
    table = Table("field", "value", title=str(ctx.get("symbol")))
    for key in (
        "markPrice", "midPrice", "oraclePrice", "funding", "premium", "openInterest",
        "dayVolume", "prevDayPrice", "circulatingSupply",
    ):  # fmt: skip
        if key in ctx:
            places = 8 if key in ("funding", "premium") else 6
            table.add_row(key, _num(ctx[key], places))
    table.add_row("time", _clock(ctx.get("timestamp")))
    return table


def _book_title(book: dict[str, Any] | None) -> str:
    if not book:
        return "waiting for the book"
    bids, asks = book.get("bids") or [], book.get("asks") or []
    if bids and asks:
        return f"{book.get('symbol')}  spread {_num(asks[0][0] - bids[0][0], 6)}"
    return str(book.get("symbol"))


def _account(account: dict[str, Any] | None) -> RenderableType:
    if account is None:
        return Text("waiting for the account", style="dim")
    summary = Text(
        f"wallet {account.get('wallet')}   value {_num(account.get('accountValue'), 2)}   "
        f"margin used {_num(account.get('marginUsed'), 2)}   "
        f"withdrawable {_num(account.get('withdrawable'), 2)}"
    )
    table = Table("symbol", "size", "entry", "value", "uPnL", "lev", "liq")
    for p in account.get("positions", []):
        table.add_row(
            str(p.get("symbol")),
            Text(_num(p.get("size")), style="green" if (p.get("size") or 0) >= 0 else "red"),
            _num(p.get("entryPrice"), 6),
            _num(p.get("positionValue"), 2),
            _num(p.get("unrealizedPnl"), 2),
            _num(p.get("leverage"), 1),
            _num(p.get("liquidationPrice"), 6),
        )
    return Group(summary, table)


# -- plain lines (stdout not a terminal) ----------------------------------------------


def lines_of(msg: DataMessage) -> list[str]:
    """One data message as plain lines (one per trade, fill, ...)."""
    data, channel = msg.data, msg.channel
    at = f"  (offset {msg.offset})" if msg.offset is not None else ""
    if channel == "prices" and isinstance(data, dict):
        quotes = "  ".join(f"{s} {_num(q.get('price'), 6)}" for s, q in sorted(data.items()))
        return [f"prices {quotes}"]
    if channel == "orderbook" and isinstance(data, dict):
        bids, asks = data.get("bids") or [], data.get("asks") or []
        best = ""
        if bids and asks:
            best = (
                f" bid {_num(bids[0][0], 6)} x {_num(bids[0][1])}"
                f"  ask {_num(asks[0][0], 6)} x {_num(asks[0][1])}"
                f"  spread {_num(asks[0][0] - bids[0][0], 6)}"
            )
        return [f"orderbook {data.get('symbol')}{best}"]
    if channel == "trades" and isinstance(data, dict):
        return [
            f"trade {data.get('symbol')} {t.get('side')} {_num(t.get('size'))} "
            f"@ {_num(t.get('price'), 6)} id {t.get('id')}{at}"
            for t in data.get("trades", [])
        ]
    if channel == "user_fills" and isinstance(data, dict):
        return [
            f"fill {f.get('symbol')} {f.get('side')} {_num(f.get('size'))} "
            f"@ {_num(f.get('price'), 6)} fee {_num(f.get('fee'))} "
            f"pnl {_num(f.get('closedPnl'))} id {f.get('id')} {f.get('wallet', '')}{at}"
            for f in data.get("fills", [])
        ]
    if channel == "user_orders" and isinstance(data, dict):
        o = data.get("order", {})
        return [
            f"order {data.get('action')} {o.get('symbol')} {o.get('side')} "
            f"{_num(o.get('amount'))} @ {_num(o.get('price'), 6)} left {_num(o.get('remaining'))} "
            f"{o.get('status')} id {o.get('id')}{at}"
        ]
    if channel == "candles" and isinstance(data, dict):
        return [
            f"candle {data.get('symbol')} {data.get('interval')} {_clock(c.get('t'))} "
            f"o {_num(c.get('open'), 6)} h {_num(c.get('high'), 6)} l {_num(c.get('low'), 6)} "
            f"c {_num(c.get('close'), 6)} v {_num(c.get('volume'))} n {c.get('trades')}"
            for c in data.get("candles", [])[-CANDLES_SHOWN:]
        ]
    if channel == "asset_context" and isinstance(data, dict):
        fields = "  ".join(
            f"{k} {_num(v, 8)}" for k, v in data.items() if k not in ("symbol", "timestamp")
        )
        return [f"context {data.get('symbol')} {fields}"]
    if channel == "bbo" and isinstance(data, dict):
        bid, ask = data.get("bid") or (None, None), data.get("ask") or (None, None)
        return [
            f"bbo {data.get('symbol')} bid {_num(bid[0], 6)} x {_num(bid[1])}"
            f"  ask {_num(ask[0], 6)} x {_num(ask[1])}"
        ]
    if channel == "user_ledger" and isinstance(data, dict):
        return [
            f"ledger {e.get('kind')} {_num(e.get('amount'), 6)} {e.get('token')} "
            f"{e.get('symbol') or ''} id {e.get('id')} {e.get('wallet', '')}{at}".replace("  ", " ")
            for e in data.get("events", [])
        ]
    if channel == "account_updates" and isinstance(data, dict):
        return [
            f"account {data.get('wallet')} value {_num(data.get('accountValue'), 2)} "
            f"margin used {_num(data.get('marginUsed'), 2)} "
            f"withdrawable {_num(data.get('withdrawable'), 2)} "
            f"positions {len(data.get('positions', []))}"
        ]
    return [f"{channel} {msgspec.json.encode(data).decode()}{at}"]


# -- running ----------------------------------------------------------------------------


def wire(client: GatewayClient, view: WatchView, refresh: Callable[[], None]) -> None:
    """Reflect the client's link events in the view as they happen."""

    def connected(_: Any) -> None:
        view.link = "connected"
        view.reconnects = client.reconnects
        view.error = None
        view.event(f"connected to {client.url}" + (" (resubscribed)" if client.reconnects else ""))
        refresh()

    def disconnected(event: Disconnected) -> None:
        view.link = "disconnected"
        why = f"{event.code} {event.reason}".strip() if event.code else event.reason
        view.event(f"disconnected: {why or 'connection lost'}")
        refresh()

    def reconnecting(event: Reconnecting) -> None:
        view.link = f"reconnecting (attempt {event.attempt})"
        view.event(f"reconnecting in {event.delay:.1f} s (attempt {event.attempt})")
        refresh()

    def shutdown(_: Any) -> None:
        view.event("gateway shutting down")

    def error(err: Any) -> None:
        view.error = f"{getattr(err, 'code', '')} {getattr(err, 'message', err)}".strip()
        view.event(f"error: {view.error}")
        refresh()

    def closed(exc: ClientClosed) -> None:
        view.link = "closed"
        refresh()

    def recovered(event: Recovered) -> None:
        view.on_recovered(event)
        refresh()

    def resync(event: Resync) -> None:
        view.on_resync(event)
        refresh()

    client.on("connected", connected)
    client.on("recovered", recovered)
    client.on("resync", resync)
    client.on("disconnected", disconnected)
    client.on("reconnecting", reconnecting)
    client.on("shutdown", shutdown)
    client.on("error", error)
    client.on("closed", closed)


async def watch(
    url: str,
    token: TokenSource,
    channel: str,
    params: dict[str, Any],
    *,
    console: Console | None = None,
    duration: float | None = None,
    backoff: Backoff | None = None,
    ping_every: float = 5.0,
) -> int:
    """Show `channel` live until Ctrl-C or `duration`. Returns the exit status.

    On a terminal: a live view. Otherwise (a pipe, a file): plain lines."""
    console = console or Console()
    view = WatchView(channel, params, url)
    client = GatewayClient(url, token, backoff=backoff or Backoff(max_delay=10.0))
    if not console.is_terminal:
        view.echo = lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)
        return await _follow(client, view, duration, ping_every, lambda: None)
    with Live(render(view), console=console, refresh_per_second=8, transient=False) as live:
        return await _follow(client, view, duration, ping_every, lambda: live.update(render(view)))


async def _follow(
    client: GatewayClient,
    view: WatchView,
    duration: float | None,
    ping_every: float,
    refresh: Callable[[], None],
) -> int:
    status = 0
    wire(client, view, refresh)
    client.start()
    sub: Subscription[Item] = client.subscribe(view.channel, view.params)
    pinger = asyncio.get_running_loop().create_task(_pings(client, view, ping_every))
    try:
        async with asyncio.timeout(duration):
            async for item in sub:
                view.on_item(item)
                refresh()
    except TimeoutError:
        pass
    except SubscriptionRefused as exc:
        view.fail(f"refused: {exc.code} {exc.message}")
        status = 1
    except AuthenticationFailed as exc:
        view.fail(f"authentication failed: {exc}")
        status = 1
    except ClientClosed as exc:
        view.fail(str(exc))
        status = 1
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
        await client.close()
        view.link = "closed"
        refresh()
    return status


async def _pings(client: GatewayClient, view: WatchView, every: float) -> None:
    """An application ping every `every` seconds while the link is up: the header's rtt."""
    while True:
        await client.wait_connected()
        with contextlib.suppress(asyncio.TimeoutError, GatewayError):
            view.rtt_ms = await client.ping(timeout=every) * 1000
        await asyncio.sleep(every)


def run(
    args: argparse.Namespace,
    mint: Callable[[str, list[str]], str] | None,
) -> int:
    """`hlgateway watch ...`. `mint(user, wallets)` signs a token when none is given."""
    try:
        channel, params = subscription_of(args)
    except ValueError as exc:
        print(f"hlgateway watch: {exc}", file=sys.stderr)
        return 2
    token: TokenSource
    if args.token:
        token = args.token
    elif mint is not None:
        user = args.user or "demo"
        wallets = [args.wallet] if args.wallet else []
        token = lambda: mint(user, wallets)  # noqa: E731 - a provider: fresh on refresh
    else:
        print(
            "hlgateway watch: pass --token (or HLGATEWAY_TOKEN), set JWT_SECRET, or run "
            "`hlgateway serve` once (it makes the local dev secret)",
            file=sys.stderr,
        )
        return 2
    # The view shows every link event itself; the client's warnings would repeat them.
    logging.getLogger("hlgateway.client").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(watch(args.url, token, channel, params, duration=args.duration))
    return 0

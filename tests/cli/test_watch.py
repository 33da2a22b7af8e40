"""`hlgateway watch`: arguments, rendering, and a short live run against a gateway."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys

import pytest
from rich.console import Console

from hlgateway.cli import build_parser, main
from hlgateway.cli.watch import WatchView, render, subscription_of, watch, wire
from hlgateway.client import (
    Backoff,
    DataMessage,
    Disconnected,
    GatewayClient,
    Position,
    Reconnecting,
    Recovered,
    Resync,
)
from tests.client.support import PortGateway
from tests.helpers import SECRET, alice_token, free_port


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["watch", *argv])


def text_of(view: WatchView) -> str:
    console = Console(file=io.StringIO(), width=140, record=True)
    console.print(render(view))
    return console.export_text()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("prices", "BTC", "ETH"), ("prices", {"symbols": ["BTC", "ETH"]})),
        (("prices",), ("prices", {})),
        (("orderbook", "BTC", "--depth", "10"), ("orderbook", {"symbol": "BTC", "depth": 10})),
        (("trades", "SOL"), ("trades", {"symbol": "SOL"})),
        (("orders", "--user", "7"), ("user_orders", {"userId": "7"})),
        (
            ("fills", "--user", "a", "--wallet", "0xab"),
            ("user_fills", {"userId": "a", "wallet": "0xab"}),
        ),
        (("account", "--user", "a"), ("account_updates", {"userId": "a"})),
        (("ledger", "--user", "a"), ("user_ledger", {"userId": "a"})),
        (("candles", "HYPE/USDC"), ("candles", {"symbol": "HYPE/USDC", "interval": "1m"})),
        (
            ("candles", "@107", "--interval", "1h"),
            ("candles", {"symbol": "@107", "interval": "1h"}),
        ),
        (("context", "BTC"), ("asset_context", {"symbol": "BTC"})),
        (("bbo", "xyz:XYZ100"), ("bbo", {"symbol": "xyz:XYZ100"})),
    ],
)
def test_command_lines(argv: tuple[str, ...], expected: tuple[str, dict[str, object]]) -> None:
    assert subscription_of(parse(*argv)) == expected


@pytest.mark.parametrize(
    "argv", [("orderbook",), ("trades", "BTC", "ETH"), ("orders",), ("fills", "BTC", "--user", "x")]
)
def test_bad_command_lines_exit_2(argv: tuple[str, ...]) -> None:
    assert main(["watch", *argv, "--token", "t"]) == 2


def data(channel: str, payload: object) -> DataMessage:
    return DataMessage(channel=channel, params={}, data=payload, timestamp=1)


def test_rendering_every_view() -> None:
    prices = WatchView("prices", {"symbols": ["BTC"]}, "ws://x/ws")
    prices.on_data(
        data(
            "prices",
            {
                "BTC": {
                    "price": 97000.5,
                    "change24h": -1.5,
                    "volume24h": 2e9,
                    "timestamp": 1764100000000,
                }
            },
        )
    )
    assert "97,000.5" in text_of(prices) and "-1.50" in text_of(prices)

    book = WatchView("orderbook", {"symbol": "BTC"}, "ws://x/ws")
    book.on_data(
        data(
            "orderbook",
            {"symbol": "BTC", "bids": [[99.0, 1.0]], "asks": [[101.0, 2.0]], "timestamp": 1},
        )
    )
    assert "spread 2" in text_of(book)

    trades = WatchView("trades", {"symbol": "SOL"}, "ws://x/ws")
    trades.on_data(
        data(
            "trades",
            {
                "symbol": "SOL",
                "trades": [{"id": 42, "price": 150.25, "size": 3, "side": "sell", "timestamp": 1}],
            },
        )
    )
    assert "150.25" in text_of(trades) and "42" in text_of(trades)

    orders = WatchView("user_orders", {"userId": "a"}, "ws://x/ws")
    orders.on_data(
        data(
            "user_orders",
            {
                "action": "created",
                "order": {
                    "id": 1,
                    "symbol": "ETH",
                    "side": "buy",
                    "amount": 2,
                    "remaining": 2,
                    "price": 3400,
                    "status": "open",
                    "timestamp": 1,
                },
            },
        )
    )
    assert "created" in text_of(orders) and "ETH" in text_of(orders)

    fills = WatchView("user_fills", {"userId": "a"}, "ws://x/ws")
    fills.on_data(
        data(
            "user_fills",
            {
                "fills": [
                    {
                        "id": 9,
                        "symbol": "XRP",
                        "side": "sell",
                        "price": 2.3,
                        "size": 10,
                        "fee": 0.01,
                        "closedPnl": 1.5,
                        "timestamp": 1,
                        "wallet": "0x" + "ab" * 20,
                    }
                ]
            },
        )
    )
    assert "XRP" in text_of(fills)

    account = WatchView("account_updates", {"userId": "a"}, "ws://x/ws")
    assert "waiting" in text_of(account)
    account.on_data(
        data(
            "account_updates",
            {
                "wallet": "0xab",
                "accountValue": 1000.0,
                "marginUsed": 10.0,
                "withdrawable": 990.0,
                "positions": [
                    {
                        "symbol": "BTC",
                        "size": -0.5,
                        "entryPrice": 97000.0,
                        "positionValue": 48500.0,
                        "unrealizedPnl": 12.0,
                        "leverage": 5.0,
                        "liquidationPrice": None,
                        "marginUsed": 10.0,
                    }
                ],
            },
        )
    )
    assert "1,000" in text_of(account) and "-0.5" in text_of(account)


async def test_link_events_show_as_they_happen() -> None:
    client = GatewayClient("ws://127.0.0.1:1/ws", "t")
    view = WatchView("prices", {}, "ws://127.0.0.1:1/ws")
    refreshed: list[int] = []
    wire(client, view, lambda: refreshed.append(1))
    client._events.emit("disconnected", Disconnected("ws://x", 1001, "Server shutting down", True))
    client._events.emit("reconnecting", Reconnecting(2, 0.75, "closed 1001"))
    shown = text_of(view)
    assert "reconnecting (attempt 2)" in shown
    assert "disconnected: 1001 Server shutting down" in shown and "reconnecting in 0.8 s" in shown
    assert len(refreshed) == 2


async def test_watch_runs_live(gateway: PortGateway) -> None:
    out = io.StringIO()
    status = await watch(
        gateway.ws,
        alice_token(),
        "orderbook",
        {"symbol": "BTC", "depth": 3},
        console=Console(file=out, width=120, force_terminal=True),  # the live view
        duration=1.0,
        backoff=Backoff(initial=0.05),
        ping_every=0.2,
    )
    shown = out.getvalue()
    assert status == 0
    assert "BTC" in shown and "spread" in shown and "connected to" in shown


async def test_watch_reports_a_refusal(gateway: PortGateway) -> None:
    out = io.StringIO()
    status = await watch(
        gateway.ws,
        alice_token(),
        "user_fills",
        {"userId": "bob"},
        console=Console(file=out, width=120),
        duration=5,
    )
    assert status == 1 and "FORBIDDEN" in out.getvalue()


def test_status_line_shows_recovery() -> None:
    view = WatchView("user_fills", {"userId": "a"}, "ws://x/ws")
    assert "recovered" not in text_of(view)
    view.on_recovered(Recovered("user_fills", {"userId": "a"}, Position(4, "E"), Position(9, "E")))
    shown = text_of(view)
    assert "recovered 1  resynced 0" in shown
    assert "last break: recovered after a break (5 replayed)" in shown
    view.on_resync(Resync("user_fills", {}, "not recovered", Position(9, "E"), Position(2, "F")))
    shown = text_of(view)
    assert "recovered 1  resynced 1" in shown
    assert "last break: resynced after a break (not recovered)" in shown


def test_plain_lines_for_data_and_events() -> None:
    lines: list[str] = []
    view = WatchView("user_fills", {"userId": "a"}, "ws://x/ws", echo=lines.append)
    view.on_data(
        DataMessage(
            channel="user_fills",
            params={},
            data={"fills": [{"id": 9, "symbol": "XRP", "side": "sell", "price": 2.3,
                             "size": 10, "fee": 0.01, "closedPnl": 1.5, "wallet": "0xab"}]},
            timestamp=1764100000000,
            offset=12,
            epoch="E",
        )
    )  # fmt: skip
    view.on_resync(Resync("user_fills", {}, "not recovered", Position(12, "E"), Position(2, "F")))
    assert len(lines) == 2
    assert lines[0].endswith("fill XRP sell 10 @ 2.3 fee 0.01 pnl 1.5 id 9 0xab  (offset 12)")
    assert lines[1].endswith("resynced after a break (not recovered): messages may be missing")


async def test_watch_in_a_pipe_prints_plain_lines(gateway: PortGateway) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hlgateway", "watch", "orderbook", "BTC", "--depth", "3",
        "--url", gateway.ws, "--duration", "1.5",
        env={**os.environ, "JWT_SECRET": SECRET, "HLGATEWAY_TOKEN": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err.decode()
    assert any(line.endswith(f"connected to {gateway.ws}") for line in lines)
    books = [line for line in lines if "  orderbook BTC bid " in line]
    assert books and all("spread" in line for line in books)
    assert "\x1b[" not in out.decode()  # no terminal control sequences in a pipe


async def test_watch_on_a_wrong_port_says_why_once() -> None:
    """A wrong --url is named with the system's reason on the view's own lines, and the
    client's log warning about it is not printed beside them a second time."""
    port = free_port()  # nothing listens there
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hlgateway", "watch", "prices", "BTC",
        "--url", f"ws://127.0.0.1:{port}/ws", "--duration", "1",
        env={**os.environ, "JWT_SECRET": SECRET, "HLGATEWAY_TOKEN": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    reason = f"disconnected: connect failed: 127.0.0.1:{port}: Connection refused"
    assert any(line.endswith(reason) for line in out.decode().splitlines()), out.decode()
    assert err.decode() == ""


def test_candles_context_and_ledger_views() -> None:
    candles = WatchView("candles", {"symbol": "HYPE/USDC", "interval": "1m"}, "ws://x/ws")
    assert "waiting for the candles" in text_of(candles)

    def candle(t: int, close: float) -> dict[str, object]:
        return {"t": t, "T": t + 59_999, "open": 41.0, "high": 42.0, "low": 40.5,
                "close": close, "volume": 12.5, "trades": 3}  # fmt: skip

    whole = {
        "symbol": "HYPE/USDC",
        "interval": "1m",
        "candles": [candle(0, 41.2), candle(60_000, 41.3)],
    }
    candles.on_data(DataMessage(channel="candles", params={}, data=whole, timestamp=1))
    update = {"symbol": "HYPE/USDC", "interval": "1m", "candles": [candle(60_000, 41.33)]}
    candles.on_data(DataMessage(channel="candles", params={}, data=update, timestamp=2))
    shown = text_of(candles)
    assert "HYPE/USDC 1m  (2 candles)" in shown and "41.33" in shown and "41.3 " not in shown

    context = WatchView("asset_context", {"symbol": "BTC"}, "ws://x/ws")
    ctx = {"symbol": "BTC", "markPrice": 97000.5, "midPrice": 97000.0, "oraclePrice": 96990.0,
           "funding": 0.0000125, "premium": 0.0001, "openInterest": 1234.5, "dayVolume": 2e9,
           "prevDayPrice": 95000.0, "timestamp": 1}  # fmt: skip
    context.on_data(DataMessage(channel="asset_context", params={}, data=ctx, timestamp=1))
    shown = text_of(context)
    assert "oraclePrice" in shown and "0.0000125" in shown and "circulatingSupply" not in shown

    lines: list[str] = []
    ledger = WatchView("user_ledger", {"userId": "a"}, "ws://x/ws", echo=lines.append)
    event = {"id": "0xab:withdraw", "kind": "withdraw", "time": 1, "amount": -250.0,
             "token": "USDC", "wallet": "0xab", "raw": {"type": "withdraw"}}  # fmt: skip
    ledger.on_data(
        DataMessage(channel="user_ledger", params={}, data={"events": [event]}, timestamp=1,
                    offset=3, epoch="E")
    )  # fmt: skip
    assert lines[0].endswith("ledger withdraw -250 USDC id 0xab:withdraw 0xab (offset 3)")
    assert "withdraw" in text_of(ledger) and "-250" in text_of(ledger)

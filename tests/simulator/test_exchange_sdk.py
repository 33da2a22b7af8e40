"""Oracle test: the official SDK's ``Exchange``, unchanged, trades on ``hlgateway simulate``.

The simulator runs as the command a user runs; the test reads the funded local
account's key from what it prints, as a user would, and drives every call the
issue names: ``order``, ``market_open``, ``market_close``, ``cancel``,
``cancel_by_cloid``, ``modify_order``, ``update_leverage``, ``approve_agent``,
then trading with the approved agent. The SDK's own WebSocket (``Info``) sees
each resulting order transition and fill.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import eth_account
import pytest
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.types import Cloid

Answer = dict[str, Any]


class Simulate:
    """`hlgateway simulate` on a free port, and what it printed."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hlgateway", "simulate", "--port", "0", "--seed", "11"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline() for _ in range(4)]
        banner = "".join(lines)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner)
        account = re.search(r"funded local account (0x[0-9a-f]{40})", banner)
        key = re.search(r"key (0x[0-9a-f]{64})", banner)
        assert url and account and key, banner
        assert "simulator only" in banner, banner
        self.url, self.address, self.key = url.group(1), account.group(1), key.group(1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(timeout=60) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def simulate() -> Iterator[Simulate]:
    sim = Simulate()
    try:
        yield sim
    finally:
        sim.stop()


class Seen:
    """What the SDK's WebSocket delivered for one user (callbacks run on its thread)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.orders: list[Answer] = []
        self.fills: list[Answer] = []
        self.subscribed = False  # the userFills snapshot came

    def on_orders(self, msg: Answer) -> None:
        with self._lock:
            self.orders.extend(msg["data"])

    def on_fills(self, msg: Answer) -> None:
        if msg["data"].get("isSnapshot"):
            # Subscribed after orderUpdates on the same socket: both are active now
            # (orderUpdates has no snapshot, and misses what came before).
            with self._lock:
                self.subscribed = True
            return
        with self._lock:
            self.fills.extend(msg["data"]["fills"])

    def wait(self, what: Callable[[Seen], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if what(self):
                    return
            assert time.monotonic() < deadline, f"not seen in time: {self.orders[-4:]}"
            time.sleep(0.02)

    def statuses(self, oid: int) -> list[str]:
        with self._lock:
            return [u["status"] for u in self.orders if u["order"]["oid"] == oid]


def statuses_of(answer: Answer) -> list[Any]:
    assert answer["status"] == "ok", answer
    result: list[Any] = answer["response"]["data"]["statuses"]
    return result


def test_sdk_exchange_trades_unchanged(simulate: Simulate) -> None:
    account = eth_account.Account.from_key(simulate.key)
    assert account.address.lower() == simulate.address
    info = Info(simulate.url)  # with its WebSocket: the SDK's own streams
    seen = Seen()
    info.subscribe({"type": "orderUpdates", "user": account.address}, seen.on_orders)
    info.subscribe({"type": "userFills", "user": account.address}, seen.on_fills)
    exchange = Exchange(account, simulate.url)
    try:
        seen.wait(lambda s: s.subscribed)
        mid = float(info.all_mids()["ETH"])
        low = round(mid * 0.9, 1)

        # order: a resting limit order, in openOrders. Far from the mid: the simulated
        # book moves ~14 ticks a second, so an order near it may fill before the test
        # looks. (How a resting order joins the book is test_matching's: the book is
        # redrawn every 100 ms model tick, so two snapshots a few requests apart are
        # of different books, and a loaded machine makes that the rule.)
        (status,) = statuses_of(exchange.order("ETH", True, 0.2, low, {"limit": {"tif": "Gtc"}}))
        oid = status["resting"]["oid"]
        (resting,) = info.open_orders(account.address)
        assert (resting["oid"], float(resting["limitPx"]), resting["sz"]) == (oid, low, "0.2")
        assert statuses_of(exchange.cancel("ETH", oid)) == ["success"]
        seen.wait(lambda s: s.statuses(oid) == ["open", "canceled"])

        # Far from the mid from here on too: it rests until the test moves it.
        (status,) = statuses_of(exchange.order("ETH", True, 0.2, low, {"limit": {"tif": "Gtc"}}))
        oid = status["resting"]["oid"]
        assert [o["oid"] for o in info.open_orders(account.address)] == [oid]
        seen.wait(lambda s: s.statuses(oid) == ["open"])

        # modify_order: Hyperliquid replaces it (the old oid is canceled).
        (status,) = statuses_of(
            exchange.modify_order(oid, "ETH", True, 0.3, low, {"limit": {"tif": "Gtc"}})
        )
        new_oid = status["resting"]["oid"]
        assert new_oid != oid
        assert info.query_order_by_oid(account.address, oid)["order"]["status"] == "canceled"
        assert info.query_order_by_oid(account.address, new_oid)["order"]["order"]["sz"] == "0.3"

        # cancel
        (status,) = statuses_of(exchange.cancel("ETH", new_oid))
        assert status == "success"
        (status,) = statuses_of(exchange.cancel("ETH", new_oid))
        assert "error" in status
        seen.wait(lambda s: s.statuses(new_oid) == ["open", "canceled"])

        # cancel_by_cloid, and the order found by its cloid
        cloid = Cloid.from_str("0x000000000000000000000000000000a1")
        (status,) = statuses_of(
            exchange.order("ETH", True, 0.2, low, {"limit": {"tif": "Gtc"}}, cloid=cloid)
        )
        assert status["resting"]["cloid"] == cloid.to_raw()
        by_cloid = info.query_order_by_cloid(account.address, cloid)
        assert by_cloid["order"]["order"]["cloid"] == cloid.to_raw()
        (status,) = statuses_of(exchange.cancel_by_cloid("ETH", cloid))
        assert status == "success"

        # update_leverage, then market_open / market_close through the book
        assert exchange.update_leverage(5, "ETH") == {
            "status": "ok",
            "response": {"type": "default"},
        }
        (status,) = statuses_of(exchange.market_open("ETH", True, 0.5))
        opened = status["filled"]
        assert opened["totalSz"] == "0.5"
        (position,) = info.user_state(account.address)["assetPositions"]
        assert position["position"]["szi"] == "0.5"
        assert position["position"]["leverage"]["value"] == 5
        (status,) = statuses_of(exchange.market_close("ETH"))
        assert status["filled"]["totalSz"] == "0.5"
        assert info.user_state(account.address)["assetPositions"] == []
        seen.wait(lambda s: len(s.fills) >= 2)
        assert {f["oid"] for f in seen.fills} >= {opened["oid"], status["filled"]["oid"]}

        # approve_agent, then the agent trades for the account
        approved, agent_key = exchange.approve_agent()
        assert approved == {"status": "ok", "response": {"type": "default"}}
        agent = eth_account.Account.from_key(agent_key)
        agent_exchange = Exchange(agent, simulate.url, account_address=account.address)
        high = round(mid * 1.1, 1)
        (status,) = statuses_of(
            agent_exchange.order("ETH", False, 0.2, high, {"limit": {"tif": "Gtc"}})
        )
        agent_oid = status["resting"]["oid"]
        assert [o["oid"] for o in info.open_orders(account.address)] == [agent_oid]
        assert info.open_orders(agent.address) == []  # it signs; the account trades
        (status,) = statuses_of(agent_exchange.cancel("ETH", agent_oid))
        assert status == "success"
        (status,) = statuses_of(agent_exchange.market_open("ETH", False, 0.1))
        assert status["filled"]["totalSz"] == "0.1"
        (status,) = statuses_of(agent_exchange.market_close("ETH"))
        assert status["filled"]["totalSz"] == "0.1"

        # Every fill the account got reached the SDK's stream, once.
        seen.wait(lambda s: len(s.fills) >= 4)
        rest_fills = info.user_fills(account.address)
        assert sorted(f["tid"] for f in seen.fills) == sorted(f["tid"] for f in rest_fills)
    finally:
        info.disconnect_websocket()


def test_sdk_exchange_trades_a_spot_pair(simulate: Simulate) -> None:
    account = eth_account.Account.from_key(simulate.key)
    info = Info(simulate.url)
    seen = Seen()
    info.subscribe({"type": "orderUpdates", "user": account.address}, seen.on_orders)
    info.subscribe({"type": "userFills", "user": account.address}, seen.on_fills)
    exchange = Exchange(account, simulate.url)

    def balances() -> dict[str, Answer]:
        state = info.spot_user_state(account.address)
        return {b["coin"]: b for b in state["balances"]}

    try:
        seen.wait(lambda s: s.subscribed)
        pair = "HYPE/USDC"
        coin = info.name_to_coin[pair]  # the SDK resolves it to "@107", asset 10107
        assert (coin, info.name_to_asset(pair)) == ("@107", 10_107)
        mid = float(info.all_mids()[coin])
        usdc = float(balances()["USDC"]["total"])

        # A resting buy far below the market holds the USDC it would pay.
        low = round(mid * 0.8, 2)
        (status,) = statuses_of(exchange.order(pair, True, 1.5, low, {"limit": {"tif": "Gtc"}}))
        oid = status["resting"]["oid"]
        assert [o["coin"] for o in info.open_orders(account.address)] == [coin]
        assert float(balances()["USDC"]["hold"]) == pytest.approx(1.5 * low)
        seen.wait(lambda s: s.statuses(oid) == ["open"])
        assert statuses_of(exchange.cancel(pair, oid)) == ["success"]
        assert balances()["USDC"]["hold"] == "0.0"
        seen.wait(lambda s: s.statuses(oid) == ["open", "canceled"])

        # market_open through the book: tokens in (less the fee, taken in HYPE), USDC out.
        (status,) = statuses_of(exchange.market_open(pair, True, 2.0))
        bought = status["filled"]
        assert bought["totalSz"] == "2.0"
        hype = balances()["HYPE"]
        assert float(hype["total"]) == pytest.approx(2.0 * (1 - 0.00045))
        assert float(balances()["USDC"]["total"]) == pytest.approx(
            usdc - 2.0 * float(bought["avgPx"])
        )
        assert info.user_state(account.address)["assetPositions"] == []  # no perp position

        # A sell cannot spend more than the balance; a market sell of part of it can.
        (status,) = statuses_of(
            exchange.order(pair, False, 5.0, round(mid * 1.2, 2), {"limit": {"tif": "Gtc"}})
        )
        assert status == {"error": "Insufficient spot balance asset=10107"}
        (status,) = statuses_of(exchange.market_open(pair, False, 1.5))
        sold = status["filled"]
        assert sold["totalSz"] == "1.5"
        assert float(balances()["HYPE"]["total"]) == pytest.approx(float(hype["total"]) - 1.5)
        assert exchange.update_leverage(3, pair)["status"] == "err"  # leverage is for perps

        # Every spot fill reached the SDK's stream, named as Hyperliquid names the pair.
        seen.wait(lambda s: {bought["oid"], sold["oid"]} <= {f["oid"] for f in s.fills})
        rest_fills = info.user_fills(account.address)
        assert sorted(f["tid"] for f in seen.fills) == sorted(f["tid"] for f in rest_fills)
        assert {f["coin"] for f in seen.fills} == {coin}
        assert {f["dir"] for f in seen.fills} == {"Buy", "Sell"}
        assert {f["feeToken"] for f in rest_fills} == {"HYPE", "USDC"}
        seen.wait(lambda s: s.statuses(sold["oid"])[-1] == "filled")
    finally:
        info.disconnect_websocket()


def test_sdk_signature_from_a_stranger_is_refused(simulate: Simulate) -> None:
    stranger = eth_account.Account.create()
    exchange = Exchange(stranger, simulate.url)
    answer = exchange.order("ETH", True, 0.2, 1000, {"limit": {"tif": "Gtc"}})
    assert answer == {
        "status": "err",
        "response": f"User or API Wallet {stranger.address.lower()} does not exist.",
    }


def test_sdk_isolated_margin_and_noop(simulate: Simulate) -> None:
    """``update_leverage(is_cross=False)``, ``update_isolated_margin`` and ``noop``, as the
    SDK sends them (ntli in micro-USDC, isBuy always true)."""
    account = eth_account.Account.from_key(simulate.key)
    info = Info(simulate.url, skip_ws=True)
    exchange = Exchange(account, simulate.url)

    def eth_position() -> Answer:
        state = info.user_state(account.address)
        rows: list[Answer] = [p["position"] for p in state["assetPositions"]]
        (row,) = [r for r in rows if r["coin"] == "ETH"]
        return row

    refused = exchange.update_isolated_margin(10, "ETH")
    assert refused == {
        "status": "err",
        "response": "Cannot update margin: no isolated position in ETH.",
    }
    assert exchange.update_leverage(4, "ETH", is_cross=False)["status"] == "ok"
    (status,) = statuses_of(exchange.market_open("ETH", True, 0.5))
    assert "filled" in status
    before = eth_position()
    assert before["leverage"]["type"] == "isolated" and before["leverage"]["value"] == 4
    assert exchange.update_isolated_margin(25.5, "ETH") == {
        "status": "ok",
        "response": {"type": "default"},
    }
    after = eth_position()
    moved = float(after["leverage"]["rawUsd"]) - float(before["leverage"]["rawUsd"])
    assert moved == pytest.approx(25.5)
    assert float(after["liquidationPx"]) < float(before["liquidationPx"])
    # Back out most of it: what stays must cover the initial margin at the mark with the
    # unrealized pnl counted, and a market buy starts a little under water (taker price).
    assert exchange.update_isolated_margin(-20, "ETH")["status"] == "ok"
    assert float(eth_position()["leverage"]["rawUsd"]) == pytest.approx(
        float(before["leverage"]["rawUsd"]) + 5.5
    )
    switch = exchange.update_leverage(4, "ETH", is_cross=True)
    assert switch == {
        "status": "err",
        "response": "Cannot switch leverage type with open position.",
    }

    nonce = int(time.time() * 1000) + 10_000
    assert exchange.noop(nonce) == {"status": "ok", "response": {"type": "default"}}
    again = exchange.noop(nonce)
    assert again == {"status": "err", "response": f"Invalid nonce: duplicate nonce {nonce}"}
    (status,) = statuses_of(exchange.market_close("ETH"))
    assert "filled" in status

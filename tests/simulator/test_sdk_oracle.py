"""Oracle test: Hyperliquid's official python SDK against the simulator.

The SDK is synchronous and threaded (requests + websocket-client), so the
simulator runs on its own event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError

from hlgateway.simulator import SimConfig, Simulator

from .conftest import FAST, USER, USER_LOWER

WS_FILL_KEYS = {
    "coin", "px", "sz", "side", "time", "startPosition", "dir", "closedPnl",
    "hash", "oid", "crossed", "fee", "tid", "feeToken", "twapId",
}  # fmt: skip
OPTIONAL_FILL_KEYS = {"builderFee", "liquidation"}  # only when they apply


class SimThread:
    """A Simulator serving from a background thread's event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.sim = Simulator(config)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sim-thread", daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "simulator thread did not start"
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test thread by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self.sim.start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.sim.stop()


@pytest.fixture
def sim_thread() -> Iterator[SimThread]:
    runner = SimThread(FAST)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def is_number_string(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"-?\d+\.\d+", value) is not None


def test_sdk_rest_calls(sim_thread: SimThread) -> None:
    info = Info(sim_thread.sim.http_url, skip_ws=True)  # calls spotMeta and meta
    assert info.name_to_asset("BTC") == 0
    assert info.name_to_asset("kPEPE") == 7
    assert info.name_to_asset("PURR/USDC") == 10_000
    mids = info.all_mids()
    assert is_number_string(mids["kPEPE"])
    book = info.l2_snapshot("kPEPE")
    assert book["coin"] == "kPEPE" and len(book["levels"][0]) == 20
    universe, ctxs = info.meta_and_asset_ctxs()
    assert len(universe["universe"]) == len(ctxs)
    state = info.user_state(USER)
    assert state["assetPositions"] == [] and "withdrawable" in state
    assert info.open_orders(USER) == [] and info.frontend_open_orders(USER) == []
    assert info.user_fills(USER) == [] and info.historical_orders(USER) == []
    assert info.user_fills_by_time(USER, 0) == []
    assert info.query_order_by_oid(USER, 123) == {"status": "unknownOid"}
    with pytest.raises(ClientError) as excinfo:
        info.post("/info", {"type": "bogus"})
    assert excinfo.value.status_code == 422


def test_sdk_subscriptions_receive_well_formed_data(sim_thread: SimThread) -> None:
    received: dict[str, list[Any]] = defaultdict(list)
    cond = threading.Condition()

    def collect(name: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            with cond:
                received[name].append(msg)
                cond.notify_all()

        return callback

    info = Info(sim_thread.sim.http_url)
    try:
        info.subscribe({"type": "allMids"}, collect("allMids"))
        info.subscribe({"type": "l2Book", "coin": "kPEPE"}, collect("l2Book"))
        info.subscribe({"type": "trades", "coin": "BTC"}, collect("trades"))
        info.subscribe({"type": "userFills", "user": USER}, collect("userFills"))
        info.subscribe({"type": "orderUpdates", "user": USER}, collect("orderUpdates"))
        wanted = {"allMids": 2, "l2Book": 2, "trades": 1, "userFills": 3, "orderUpdates": 2}
        with cond:
            done = cond.wait_for(
                lambda: all(len(received[k]) >= n for k, n in wanted.items()), timeout=8
            )
            snapshot = {k: list(v) for k, v in received.items()}
        assert done, {k: len(v) for k, v in snapshot.items()}
    finally:
        info.disconnect_websocket()
        assert info.ws_manager is not None
        info.ws_manager.join(5)

    for msg in snapshot["allMids"]:
        assert msg["channel"] == "allMids"
        mids = msg["data"]["mids"]
        assert "BTC" in mids and "kPEPE" in mids
        assert all(is_number_string(v) for v in mids.values())

    for msg in snapshot["l2Book"]:
        data = msg["data"]
        assert data["coin"] == "kPEPE" and isinstance(data["time"], int)
        bids, asks = data["levels"]
        assert len(bids) == 20 and len(asks) == 20
        for lvl in bids + asks:
            assert set(lvl) == {"px", "sz", "n"} and is_number_string(lvl["px"])
        assert float(bids[0]["px"]) < float(asks[0]["px"])

    for msg in snapshot["trades"]:
        for trade in msg["data"]:
            assert trade["coin"] == "BTC" and trade["side"] in ("B", "A")
            assert is_number_string(trade["px"]) and is_number_string(trade["sz"])
            assert isinstance(trade["tid"], int) and isinstance(trade["time"], int)
            assert len(trade["users"]) == 2

    fills_msgs = snapshot["userFills"]
    assert fills_msgs[0]["data"]["isSnapshot"] is True
    assert all("isSnapshot" not in m["data"] for m in fills_msgs[1:])
    for msg in fills_msgs:
        assert msg["data"]["user"] == USER_LOWER
        for fill in msg["data"]["fills"]:
            assert WS_FILL_KEYS <= set(fill) <= WS_FILL_KEYS | OPTIONAL_FILL_KEYS
            assert is_number_string(fill["px"]) and is_number_string(fill["fee"])

    for msg in snapshot["orderUpdates"]:
        for update in msg["data"]:
            order = update["order"]
            assert update["status"] in ("open", "filled", "canceled")
            assert isinstance(update["statusTimestamp"], int)
            assert {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "cloid"} == set(
                order
            )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_module_entry_point_serves_until_interrupted(stop: signal.Signals) -> None:
    # Started as a shell starts a background job (`&`, nohup, CI runners): with
    # SIGINT ignored, so that no KeyboardInterrupt can be what stops it.
    ignoring_sigint = ["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable]
    proc = subprocess.Popen(
        [*ignoring_sigint, "-m", "hlgateway.simulator", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+) \(ws: (ws://127\.0\.0\.1:\d+/ws)\)", line)
        assert match, line
        request = urllib.request.Request(
            match.group(1) + "/info",
            data=b'{"type":"allMids"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert b'"BTC"' in resp.read()
        proc.send_signal(stop)
        # Generous: on a loaded machine the interpreter alone can take seconds to wind down.
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sdk_reads_spot_and_builder_dex_markets(sim_thread: SimThread) -> None:
    # perp_dexs makes the SDK call perpDexs and meta(dex=...) and number the assets.
    info = Info(sim_thread.sim.http_url, skip_ws=True, perp_dexs=["", "xyz"])
    assert info.name_to_asset("HYPE/USDC") == info.name_to_asset("@107") == 10_107
    assert info.name_to_asset("PURR/USDC") == 10_000
    assert info.name_to_asset("xyz:XYZ100") == 110_000
    assert info.name_to_asset("xyz:TSLA") == 110_001
    assert set(info.all_mids(dex="xyz")) == {"xyz:XYZ100", "xyz:TSLA"}
    spot_meta, ctxs = info.spot_meta_and_asset_ctxs()
    assert {c["coin"] for c in ctxs} == {u["name"] for u in spot_meta["universe"]}
    hype = info.spot_asset_ctx("HYPE", "USDC") if hasattr(info, "spot_asset_ctx") else None
    assert hype is None or hype["coin"] == "@107"
    book = info.l2_snapshot("HYPE/USDC")
    assert book["coin"] == "@107" and float(book["levels"][0][0]["px"]) > 0
    now = int(time.time() * 1000)
    candles = info.candles_snapshot("HYPE/USDC", "1h", now - 10 * 3_600_000, now)
    assert len(candles) >= 9 and all(c["s"] == "@107" and c["i"] == "1h" for c in candles)
    assert all(is_number_string(c[k]) for c in candles for k in ("o", "h", "l", "c", "v"))
    dex_state = info.user_state(USER, dex="xyz")
    assert dex_state["assetPositions"] == []
    assert info.user_funding_history(USER, 0) == []
    assert info.user_non_funding_ledger_updates(USER, 0) == []
    assert info.spot_user_state(USER) == {"balances": []}


def test_sdk_subscribes_to_candles_contexts_and_cashflows(sim_thread: SimThread) -> None:
    received: dict[str, list[Any]] = defaultdict(list)
    cond = threading.Condition()

    def collect(name: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            with cond:
                received[name].append(msg)
                cond.notify_all()

        return callback

    info = Info(sim_thread.sim.http_url)
    try:
        # Names are the SDK's: it maps HYPE/USDC to @107 itself.
        info.subscribe({"type": "candle", "coin": "HYPE/USDC", "interval": "1m"}, collect("candle"))
        info.subscribe({"type": "bbo", "coin": "BTC"}, collect("bbo"))
        info.subscribe({"type": "activeAssetCtx", "coin": "HYPE/USDC"}, collect("spotCtx"))
        info.subscribe({"type": "activeAssetCtx", "coin": "ETH"}, collect("perpCtx"))
        info.subscribe({"type": "userFundings", "user": USER}, collect("userFundings"))
        info.subscribe({"type": "userNonFundingLedgerUpdates", "user": USER}, collect("userLedger"))
        wanted = {
            "candle": 2,
            "bbo": 1,
            "spotCtx": 2,
            "perpCtx": 2,
            "userFundings": 1,
            "userLedger": 1,
        }
        with cond:
            done = cond.wait_for(
                lambda: all(len(received[k]) >= n for k, n in wanted.items()), timeout=8
            )
            snapshot = {k: list(v) for k, v in received.items()}
        assert done, {k: len(v) for k, v in snapshot.items()}
    finally:
        info.disconnect_websocket()
        assert info.ws_manager is not None
        info.ws_manager.join(5)

    for msg in snapshot["candle"]:
        assert msg["channel"] == "candle" and msg["data"]["s"] == "@107"
        assert is_number_string(msg["data"]["c"]) and isinstance(msg["data"]["n"], int)
    bbo = snapshot["bbo"][0]["data"]
    assert bbo["coin"] == "BTC" and float(bbo["bbo"][0]["px"]) < float(bbo["bbo"][1]["px"])
    assert all(m["channel"] == "activeSpotAssetCtx" for m in snapshot["spotCtx"])
    assert all(m["channel"] == "activeAssetCtx" for m in snapshot["perpCtx"])
    assert snapshot["userFundings"][0]["data"]["isSnapshot"] is True
    assert snapshot["userLedger"][0]["data"]["user"] == USER_LOWER

"""A gateway process restarted under its clients, durable by default: killed with
-9 or stopped with SIGTERM on the simulator, started again on the same state
directory. The clients come back with `since` and get every fill and order
transition of the downtime, once, in order, in the same epoch."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.ledger import Deliveries, Expected, LedgerCheck
from hlgateway.simulator import Simulator
from tests.helpers import ALICE_WALLET, GatewayProcess, alice_token, eventually, free_port
from tests.scaleout.support import Listener, health

CHANNELS = ("user_fills", "user_orders")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _subscribe(channel: str) -> dict[str, object]:
    return {
        "type": "subscribe",
        "channel": channel,
        "params": {"userId": "alice", "wallet": ALICE_WALLET},
    }


def _traded_since(sim: Simulator, since_ms: int) -> bool:
    """The simulator's wallet filled an order and moved another after `since_ms`."""
    ledger = sim.ledger(ALICE_WALLET)
    return any(f["time"] > since_ms for f in ledger["fills"]) and any(
        o["statusTimestamp"] > since_ms for o in ledger["orders"]
    )


@pytest.fixture
async def gateway(simulator: Simulator, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    proc = GatewayProcess(
        free_port(),
        "--upstream",
        simulator.ws_url,
        state_dir=tmp_path / "state",
        log_file=tmp_path / "gateway.log",
        HLGATEWAY_LOG_LEVEL="INFO",
    )
    await proc.start()
    yield proc
    await proc.kill()


@pytest.mark.parametrize("stop", ["kill", "sigterm"])
async def test_a_restart_loses_nothing_of_the_downtime(
    gateway: GatewayProcess, simulator: Simulator, stop: str
) -> None:
    listeners = {c: Listener([gateway], alice_token(), _subscribe(c)) for c in CHANNELS}
    for listener in listeners.values():
        listener.start()
    try:
        await asyncio.gather(
            *(asyncio.wait_for(x.subscribed.wait(), 15) for x in listeners.values())
        )
        start = now_ms() + 500  # the feeds deliver from their first subscriber on
        await eventually(lambda: _traded_since(simulator, start), 15)
        epochs = {c: listeners[c].position for c in CHANNELS}
        if stop == "kill":
            await gateway.kill()
        else:
            assert await gateway.terminate() == 0
        down = now_ms()
        # The wallet trades while no gateway runs.
        await eventually(lambda: _traded_since(simulator, down), 15)
        await gateway.start()
        await eventually(lambda: all(x.connects >= 2 for x in listeners.values()), 15)
        again = now_ms()
        await eventually(lambda: _traded_since(simulator, again), 15)
        cutoff = now_ms() - 500
        expected = Expected(simulator, [ALICE_WALLET], start, cutoff)
        got = Deliveries()

        def received() -> bool:
            got.fills.clear()
            got.orders.clear()
            for channel, listener in listeners.items():
                for message in list(listener.data):
                    got.add(channel, message["data"])
            return expected.received_by(got)

        with contextlib.suppress(TimeoutError):
            await eventually(received, 30)
        check = LedgerCheck.of(expected, got)
        assert check.ok(), check
        assert any(down <= t for _, _, t in got.fills if t <= cutoff)  # the downtime had fills
        for channel, listener in listeners.items():
            replies = [r for r in listener.replies if r["type"] == "subscribed"]
            assert len(replies) == 2 and replies[1]["recovered"] is True, replies
            # One epoch across the restart, and offsets that run without a gap.
            assert {m["epoch"] for m in listener.data} == {epochs[channel]["epoch"]}  # type: ignore[index]
            offsets = [m["offset"] for m in listener.data]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        state = await health(gateway)
        assert state["broker"]["engine"] == "durable"
        assert state["broker"]["found"] == "restored"
    finally:
        for listener in listeners.values():
            await listener.stop()


async def test_a_second_gateway_on_the_same_directory_is_refused_naming_the_first(
    gateway: GatewayProcess, simulator: Simulator, tmp_path: Path
) -> None:
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hlgateway",
        "serve",
        "--port",
        str(free_port()),
        "--upstream",
        simulator.ws_url,
        "--state-dir",
        str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"JWT_SECRET": "x" * 40, "PATH": "/usr/bin:/bin"},
    )
    _, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 2
    assert gateway.proc is not None
    message = err.decode()
    assert f"{tmp_path / 'state'} is in use by process {gateway.proc.pid}" in message
    assert f"listening on 127.0.0.1:{gateway.port}" in message
    assert "Traceback" not in message


async def test_by_default_each_listening_address_has_its_own_directory(
    simulator: Simulator, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    procs = [
        GatewayProcess(
            free_port(),
            "--upstream",
            simulator.ws_url,
            state_dir="",
            log_file=tmp_path / f"gateway{n}.log",
            XDG_STATE_HOME=str(home),
            HLGATEWAY_LOG_LEVEL="INFO",
        )
        for n in range(2)
    ]
    try:
        for proc in procs:
            await proc.start()
        for proc in procs:
            state = await health(proc)
            directory = home / "hlgateway" / f"gateway-127.0.0.1-{proc.port}"
            assert state["broker"]["stateDir"] == str(directory)
            # The default directory outlives the process: the start says where it is.
            assert f"state in {directory}" in proc.logs()
    finally:
        for proc in procs:
            await proc.kill()


async def test_a_corrupt_state_file_is_moved_aside_and_the_gateway_starts(
    simulator: Simulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"\x00garbage" * 1000)
    proc = GatewayProcess(
        free_port(),
        "--upstream",
        simulator.ws_url,
        state_dir=state_dir,
        log_file=tmp_path / "gateway.log",
    )
    try:
        await proc.start()
        state = await health(proc)
        assert state["broker"]["found"] == "unusable"
        assert "unusable" in proc.logs() and "moved aside" in proc.logs()
    finally:
        await proc.kill()


async def test_serve_again_on_a_new_embedded_simulator_delivers_its_fills(tmp_path: Path) -> None:
    """`make serve`, Ctrl-C, `make serve`: the embedded simulator is another exchange
    (the same seed), the state directory the same. The new exchange's fills from the
    stop on (its invented history of the wallet covers the downtime) all reach the
    client: none of their ids is one the state remembers as delivered."""
    proc = GatewayProcess(free_port(), state_dir=tmp_path / "state")
    await proc.start()
    listener = Listener([proc], alice_token(), _subscribe("user_fills"))
    listener.start()

    def delivered() -> set[tuple[int, int]]:
        return {(f["id"], f["timestamp"]) for m in list(listener.data) for f in m["data"]["fills"]}

    try:
        await asyncio.wait_for(listener.subscribed.wait(), 15)
        await eventually(lambda: len(delivered()) >= 2, 40)
        down = now_ms()
        assert await proc.terminate() == 0
        await proc.start()
        info = f"http://{(await health(proc))['upstream']['host']}/info"
        made: set[tuple[int, int]] = set()  # (tid, time): a tid alone may be the last run's

        async def the_new_exchange_filled_twice() -> bool:
            body = {"type": "userFills", "user": ALICE_WALLET}
            async with aiohttp.ClientSession() as session, session.post(info, json=body) as resp:
                resp.raise_for_status()  # 429 when asked too often: the gateway reads it too
                made.update((f["tid"], f["time"]) for f in await resp.json() if f["time"] >= down)
            return len(made) >= 2

        await eventually(
            the_new_exchange_filled_twice, 40, every=2, ignoring=(aiohttp.ClientResponseError,)
        )
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: made <= delivered(), 20)
        assert made <= delivered(), sorted(made - delivered())
    finally:
        await listener.stop()
        await proc.kill()

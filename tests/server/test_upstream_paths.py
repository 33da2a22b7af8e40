"""Two upstream paths that the chaos run does not cover: an outage longer than the
userFills snapshot (recovered from REST), and `--upstream mainnet` itself,
pointed at the simulator over TLS so that only the host differs."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

from hlgateway.simulator import SimConfig, Simulator
from tests.conftest import sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    Client,
    GatewayProcess,
    GatewayServer,
    alice_token,
    eventually,
    free_port,
    make_settings,
)
from tests.tls import self_signed


async def test_an_outage_longer_than_the_snapshot_loses_no_fill() -> None:
    # The snapshot holds only the 3 latest fills; the outage sees many more.
    sim = Simulator(
        SimConfig(seed=5, control=True, order_interval=0.2, max_fill_gap=0.4, snapshot_fills=3)
    )
    await sim.start("127.0.0.1", 0)
    srv = GatewayServer(
        sim_endpoint(sim),
        # A 0.3 s backoff cap retries ~30 times in the 4 s outage: lift the gateway's
        # own 30-new-links-a-minute budget, or it (rightly) waits out the minute.
        make_settings(
            upstream_backoff_max=0.3, upstream_ping_interval=0.5, upstream_max_new_links=10_000
        ),
    )
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    try:
        await client.recv()
        reply = await client.request(
            {"type": "subscribe", "channel": "user_fills", "params": {"userId": "alice"}}
        )
        assert reply["type"] == "subscribed"
        await client.data("user_fills")
        start = int(time.time() * 1000) + 500
        sim.refuse(4.0)
        sim.drop()

        def ledger_during() -> list[dict[str, Any]]:
            return [f for f in sim.ledger(ALICE_WALLET)["fills"] if f["time"] >= start]

        await eventually(lambda: len(ledger_during()) > 6, 10)  # more than the snapshot holds
        (link,) = srv.gateway.upstream.links
        await eventually(lambda: link.reconnects >= 1 and link.state.value == "connected", 15)
        cutoff = int(time.time() * 1000) - 300
        expected = [
            f["tid"] for f in sim.ledger(ALICE_WALLET)["fills"] if start <= f["time"] <= cutoff
        ]
        got: list[int] = []

        def received() -> list[int]:
            return [
                f["id"]
                for m in client.seen
                if m["type"] == "data" and m["channel"] == "user_fills"
                for f in m["data"]["fills"]
                if f["wallet"] == ALICE_WALLET and start <= f["timestamp"] <= cutoff
            ]

        while not set(expected) <= set(got := received()):
            await client.recv(timeout=10)
        assert sorted(got) == sorted(expected)  # every one, once
        assert srv.gateway.feeds.wallets.recoveries >= 1
    finally:
        await client.close()
        await srv.stop()
        await sim.stop()


async def test_upstream_mainnet_against_the_simulator_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sim = Simulator(SimConfig(seed=9, book_interval=0.2, order_interval=0.3, max_fill_gap=1.0))
    await sim.start("127.0.0.1", 0, ssl_context=context)
    host = sim.http_url.removeprefix("https://")
    gateway = GatewayProcess(
        free_port(),
        HLGATEWAY_UPSTREAM="mainnet",
        HLGATEWAY_UPSTREAM_HOST=host,
        HLGATEWAY_UPSTREAM_CA_FILE=str(cert),
    )
    try:
        await gateway.start()
        client = await Client.connect(f"ws://127.0.0.1:{gateway.port}/ws", alice_token())
        await client.recv()
        for channel, params in (
            ("prices", {"symbols": ["BTC"]}),
            ("user_fills", {"userId": "alice"}),
        ):
            reply = await client.request(
                {"type": "subscribe", "channel": channel, "params": params}
            )
            assert reply["type"] == "subscribed"
        assert "BTC" in (await client.data("prices"))["data"]
        assert (await client.data("user_fills", timeout=15))["data"]["fills"]
        async with client.session.get(f"http://127.0.0.1:{gateway.port}/health") as resp:
            upstream = (await resp.json())["upstream"]
        assert (upstream["network"], upstream["host"], upstream["status"]) == (
            "mainnet",
            host,
            "connected",
        )
        await client.close()
        assert await gateway.terminate() == 0
    finally:
        await gateway.kill()
        await sim.stop()

"""The issue's check, on `hlgateway serve` itself (a process, its embedded simulator):
one raw client subscribed to prices of a spot pair by both its names, a perp and a
builder-dex perp, to candles and the asset context of BTC and HYPE/USDC, and to the
demo wallet's fills and ledger. The gateway runs as `serve` runs by default: on the
durable engine, in a state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hlgateway.auth import issue_token
from hlgateway.cli import DEMO_USER, DEMO_WALLET
from tests.helpers import SECRET, Client, GatewayProcess, free_port


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    proc = GatewayProcess(free_port(), state_dir=tmp_path / "state")
    await proc.start()
    yield proc
    await proc.terminate()


async def test_a_raw_client_gets_every_kind_of_market_and_the_demo_wallet(
    serve: GatewayProcess,
) -> None:
    token = issue_token(SECRET, DEMO_USER, wallets=[DEMO_WALLET], ttl_seconds=600)
    client = await Client.connect(serve.ws, token)
    try:
        await client.recv_type("welcome", timeout=20)
        subscriptions: list[tuple[str, dict[str, Any]]] = [
            ("prices", {"symbols": ["HYPE/USDC", "@107", "BTC", "xyz:XYZ100"]}),
            ("candles", {"symbol": "BTC", "interval": "1m"}),
            ("candles", {"symbol": "HYPE/USDC", "interval": "1m"}),
            ("asset_context", {"symbol": "BTC"}),
            ("asset_context", {"symbol": "HYPE/USDC"}),
            ("user_fills", {"userId": DEMO_USER}),
            ("user_ledger", {"userId": DEMO_USER}),
        ]
        for channel, params in subscriptions:
            request: dict[str, Any] = {"type": "subscribe", "channel": channel, "params": params}
            reply = await client.request(request, timeout=20)
            assert reply["type"] == "subscribed", reply
        wanted = {
            ("prices", "BTC,HYPE/USDC,xyz:XYZ100"),
            ("candles", "BTC"),
            ("candles", "HYPE/USDC"),
            ("candle update", "BTC"),
            ("asset_context", "BTC"),
            ("asset_context", "HYPE/USDC"),
            ("user_fills", DEMO_WALLET),
        }
        seen: set[tuple[str, str]] = set()
        while not wanted <= seen:
            msg = await client.recv_until(lambda m: m.get("type") == "data", timeout=30)
            data, channel = msg["data"], msg["channel"]
            if channel == "prices":
                seen.add((channel, ",".join(sorted(data))))
                for quote in data.values():
                    assert quote["price"] > 0
            elif channel == "candles":
                assert len(data["candles"]) in (1, 500)
                seen.add((channel, data["symbol"]))
                if len(data["candles"]) == 1:  # an update after the 500
                    assert (channel, data["symbol"]) in seen
                    seen.add(("candle update", data["symbol"]))
            elif channel == "asset_context":
                assert data["markPrice"] > 0
                assert ("funding" in data) == (data["symbol"] == "BTC")
                seen.add((channel, data["symbol"]))
            elif channel == "user_fills":
                for fill in data["fills"]:
                    assert fill["wallet"] == DEMO_WALLET and not fill["symbol"].startswith("@")
                    seen.add((channel, fill["wallet"]))
    finally:
        await client.close()

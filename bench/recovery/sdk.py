"""The project's SDKs as client kinds of the recovery run: positions, `since`,
duplicates and gaps are theirs to handle, the run only records what they deliver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from bench.recovery.harness import CHANNELS, USER, Received
from hlgateway.backoff import Backoff
from hlgateway.client import DataMessage, GatewayClient, Subscribed


class PythonClient:
    """`hlgateway.client.GatewayClient`, coming back after 0..`away` seconds (its backoff)."""

    def __init__(self, away: float = 2.0) -> None:
        self._backoff = Backoff(initial=away, decay=1.0, max_delay=away, jitter=1.0)

    async def run(self, url: str, token: str, received: Received) -> None:
        client = GatewayClient(url, token, backoff=self._backoff)

        def connected(_: Any) -> None:
            received.connections += 1

        def subscribed(msg: Subscribed) -> None:
            reply: dict[str, Any] = {"channel": msg.channel}
            if msg.recovered is not None:
                reply["recovered"] = msg.recovered
            received.subscribed(reply)

        def data(msg: DataMessage) -> None:
            received.data(
                {"channel": msg.channel, "offset": msg.offset, "epoch": msg.epoch, "data": msg.data}
            )

        client.on("connected", connected)
        client.on("subscribed", subscribed)
        client.on("data", data)
        try:
            client.start()
            for channel in CHANNELS:
                client.subscribe(channel, {"userId": USER})
            await asyncio.Event().wait()  # until cancelled
        finally:
            await client.close()


class JsClient:
    """The gateway's `/client.js` under Node (tests/js/client_driver.mjs, npm `ws`), coming
    back after 0..`away` seconds (its backoff)."""

    DRIVER = Path(__file__).parents[2] / "tests" / "js" / "client_driver.mjs"

    def __init__(self, away: float = 2.0) -> None:
        self._away_ms = int(away * 1000)

    async def run(self, url: str, token: str, received: Received) -> None:
        http = url.replace("ws://", "http://", 1).removesuffix("/ws")
        options = {
            "token": token,
            "client": {
                "reconnectInterval": self._away_ms,
                "maxReconnectInterval": self._away_ms,
                "reconnectDecay": 1,
                "jitter": 1,
            },
        }
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(self.DRIVER),
            http,
            url,
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for channel in CHANNELS:
                command = {"op": "subscribe", "channel": channel, "params": {"userId": USER}}
                proc.stdin.write(json.dumps(command).encode() + b"\n")
            async for line in proc.stdout:
                if not line.startswith(b"EVENT "):
                    continue
                event = json.loads(line[len(b"EVENT ") :])
                name = event.pop("event")
                if name == "connected":
                    received.connections += 1
                elif name == "subscribed":
                    received.subscribed(event)
                elif name == "data":
                    received.data(event)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

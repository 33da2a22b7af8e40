"""Secrets stay secret: logs, error replies, /health, and TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp

from hlgateway.server.redact import redact
from tests.helpers import (
    ALICE_WALLET,
    Client,
    GatewayProcess,
    GatewayServer,
    alice_token,
    free_port,
    token,
)
from tests.tls import self_signed


def test_redact() -> None:
    jwt_like = alice_token()
    assert jwt_like not in redact(f"GET /ws?token={jwt_like} HTTP/1.1")
    assert redact("/ws?x=1&token=abc&y=2") == "/ws?x=1&token=[redacted]&y=2"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert jwt_like not in redact(f"bytearray(b'{jwt_like}xxxx')")
    assert redact("nothing secret here") == "nothing secret here"


async def test_tokens_never_reach_the_logs(tmp_path: Path) -> None:
    """A real process logging at DEBUG: good, bad and malformed requests all carry tokens."""
    proc = GatewayProcess(
        free_port(), log_file=tmp_path / "gateway.log", HLGATEWAY_LOG_LEVEL="DEBUG"
    )
    await proc.start()
    secrets = {
        "good": alice_token(),
        "expired": alice_token(ttl_seconds=-5),
        "forged": "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6ImV2ZSJ9.FORGEDSIGNATUREforged",
        "opaque": "opaque-SECRET-token-value",
        "refresh": alice_token(ttl_seconds=900),
        "bearer": token("bob"),
    }
    try:
        for name in ("good", "expired", "forged", "opaque"):
            client = await Client.connect(f"{proc.ws}", secrets[name])
            if name == "good":
                await client.recv()
                await client.request({"type": "auth", "token": secrets["refresh"]})
                await client.request({"type": "auth", "token": secrets["forged"]})
                await client.request({"type": "auth", "token": secrets["opaque"]})
            else:
                await client.closed()
            await client.close()
        headers = {"Authorization": f"Bearer {secrets['bearer']}"}
        client = await Client.connect(proc.ws, headers=headers)
        await client.recv()
        await client.close()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{proc.http}/api/rooms/desk/publish", json={"data": 1}, headers=headers
            ) as resp,
        ):
            assert resp.status == 403
        # Malformed requests: the handshake's (/ws) and aiohttp's, which logs them as
        # errors with the request line.
        for path in ("/ws", "/health"):
            for raw in (
                f"GET {path}?token={secrets['good']}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET {path}?token={secrets['opaque']}{'x' * 9000} HTTP/1.1\r\n\r\n",
                f"GET {path}?token={secrets['good']} HTTP/9.9\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
                writer.write(raw.encode("latin-1"))
                await writer.drain()
                await asyncio.wait_for(reader.read(), 5)
                writer.close()
    finally:
        assert await proc.terminate() == 0
    logs = proc.logs()
    assert "Error handling request" in logs  # the malformed requests were logged ...
    assert "[redacted]" in logs
    for name, secret in secrets.items():
        assert secret not in logs, f"{name} token leaked into the logs"
        assert secret.split(".")[-1] not in logs, f"{name} token signature leaked"


async def test_health_leaks_nothing_private(server: GatewayServer) -> None:
    client = await Client.connect(server.ws, alice_token())
    await client.recv()
    await client.request(
        {"type": "subscribe", "channel": "user_fills", "params": {"userId": "alice"}}
    )
    await client.request({"type": "join_room", "room": "secret-desk"})
    async with client.session.get(f"{server.http}/health") as resp:
        text = await resp.text()
    body = json.loads(text)
    assert body["websocket"]["clients"] == 1
    for private in ("alice", ALICE_WALLET[2:], "secret-desk", "eyJ", "token"):
        assert private not in text.lower(), private
    await client.close()


async def test_tls_serves_wss_and_cuts_stalled_handshakes(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert_file))
    proc = GatewayProcess(
        free_port(),
        "--tls-cert",
        str(cert_file),
        "--tls-key",
        str(key_file),
        log_file=tmp_path / "gateway.log",
        ssl_context=trust,
        HLGATEWAY_HANDSHAKE_TIMEOUT="0.5",
    )
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{proc.ws}?token={alice_token()}", ssl=trust) as ws:
                welcome = await ws.receive_json(timeout=5)
                assert welcome["type"] == "welcome"
            # Plain text to the TLS port gets nowhere.
            reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
            writer.write(f"GET /ws?token={alice_token()} HTTP/1.1\r\n\r\n".encode())
            await asyncio.wait_for(reader.read(), 5)
            writer.close()
        # A TCP connection that never starts its TLS handshake is cut at the deadline.
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        start = loop.time()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.3 < loop.time() - start < 5
        writer.close()
    finally:
        assert await proc.terminate() == 0

"""Connecting: tokens (query and header), refusals with 1008 and the spec's reasons, origins."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hlgateway.config import AuthSettings
from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import SECRET, Client, GatewayServer, alice_token, make_settings


async def test_welcome_with_query_token(server: GatewayServer) -> None:
    client = await Client.connect(server.ws, alice_token())
    welcome = await client.recv()
    assert welcome["type"] == "welcome"
    assert welcome["user"] == {"id": "alice", "username": "alice"}
    assert isinstance(welcome["clientId"], str) and isinstance(welcome["timestamp"], int)
    await client.close()


async def test_welcome_with_bearer_header(server: GatewayServer) -> None:
    headers = {"Authorization": f"Bearer {alice_token()}"}
    client = await Client.connect(server.ws, headers=headers)
    assert (await client.recv())["type"] == "welcome"
    await client.close()


def _now() -> int:
    return int(time.time())


BAD_TOKENS = [
    (None, "Token required"),
    ("", "Token required"),
    ("not-a-jwt", "Invalid token"),
    (jwt.encode({"id": "alice"}, "wrong-secret-wrong-secret-wrong-secret"), "Invalid token"),
    (jwt.encode({"id": "alice"}, "", algorithm="none"), "Invalid token"),
    (jwt.encode({"id": "alice"}, SECRET, algorithm="HS512"), "Invalid token"),  # not configured
    (jwt.encode({"id": "alice", "exp": _now() - 10}, SECRET), "Token expired"),
    (jwt.encode({"id": "alice", "nbf": _now() + 3600}, SECRET), "Invalid token"),
    (jwt.encode({"username": "no id"}, SECRET), "Invalid token"),
    (jwt.encode({"id": "alice", "wallets": ["0x12"]}, SECRET), "Invalid token"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_TOKENS)
async def test_bad_tokens_are_closed_with_1008(
    server: GatewayServer, bad: str | None, reason: str
) -> None:
    client = await Client.connect(server.ws, bad)
    code, text = await client.closed()
    assert (code, text) == (1008, reason)
    assert client.seen == []  # never a welcome, never data
    await client.close()
    assert server.gateway.connections == {}


@pytest.mark.parametrize("family", ["RS256", "ES256"])
async def test_public_key_algorithms(simulator: Simulator, family: str) -> None:
    if family == "RS256":
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    auth = AuthSettings(algorithms=(family,), public_key=public_pem)
    srv = GatewayServer(sim_endpoint(simulator), make_settings(auth=auth))
    await srv.start()
    try:
        good = jwt.encode({"id": "pk-user"}, key, algorithm=family)
        client = await Client.connect(srv.ws, good)
        assert (await client.recv())["user"]["id"] == "pk-user"
        await client.close()
        # An HMAC token signed with the public key as secret: the algorithm-confusion attack.
        forged = jwt.encode({"id": "x"}, SECRET, algorithm="HS256")
        client = await Client.connect(srv.ws, forged)
        assert await client.closed() == (1008, "Invalid token")
        await client.close()
    finally:
        await srv.stop()


async def test_cross_site_origin_is_refused_before_upgrade(server: GatewayServer) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await Client.connect(server.ws, alice_token(), headers={"Origin": "https://evil.example"})
    assert info.value.status == 403
    # Same host as the gateway: allowed. No Origin (bots): allowed.
    same = await Client.connect(
        server.ws, alice_token(), headers={"Origin": f"http://127.0.0.1:{server.port}"}
    )
    assert (await same.recv())["type"] == "welcome"
    await same.close()


async def test_allow_listed_origin(simulator: Simulator) -> None:
    settings = make_settings(allowed_origins=("https://app.example",))
    srv = GatewayServer(sim_endpoint(simulator), settings)
    await srv.start()
    try:
        client = await Client.connect(
            srv.ws, alice_token(), headers={"Origin": "https://app.example"}
        )
        assert (await client.recv())["type"] == "welcome"
        await client.close()
    finally:
        await srv.stop()

"""The verifier answers any PyJWT error as `Invalid token`: a client, an `auth`
refresh or an admin request with a token PyJWT cannot check (InvalidKeyError, not an
InvalidTokenError, when the token's algorithm cannot use the key) gets the coded
refusal, and the gateway goes on serving the others.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from hlgateway.auth import INVALID_TOKEN, Principal, TokenError, TokenVerifier
from hlgateway.config import AuthSettings
from tests.helpers import Client
from tests.security.conftest import MakeServer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_PUBLIC = public_pem(RSA_KEY)


def assert_nothing_of(key: str, text: str) -> None:
    """No line of `key` (a PEM's base64 body, an SSH key's, a JWK's members) in `text`."""
    for line in key.replace(" ", "\n").splitlines():
        part = line.strip('"{},:')
        if len(part) >= 8 and not part.startswith("-----"):
            assert part not in text


def with_a_misfit(verifier: TokenVerifier) -> None:
    """Let a verifier of RS256 with an RSA key take ES256 too, as JWT_ALGORITHMS=RS256,ES256
    would: PyJWT raises InvalidKeyError (not an InvalidTokenError) at an ES256 token,
    preparing the RSA key for it. Its decoder has PyJWT's own ES256, unprepared."""
    assert isinstance(verifier._decoder._jws.get_algorithm_by_name("ES256"), ECAlgorithm)
    verifier._algorithms.append("ES256")


ES256_TOKEN = jwt.encode({"id": "eve", "role": "admin"}, EC_KEY, algorithm="ES256")
RS256_AUTH = AuthSettings(public_key=RSA_PUBLIC, algorithms=("RS256",))


def rs256_token(user: str, **claims: Any) -> str:
    return jwt.encode({"id": user, **claims}, RSA_KEY, algorithm="RS256")


def test_a_key_pyjwt_will_not_use_for_a_token_is_an_invalid_token() -> None:
    verifier = TokenVerifier(RS256_AUTH)
    with_a_misfit(verifier)
    with pytest.raises(jwt.InvalidKeyError):  # what the verifier meets: not an InvalidTokenError
        jwt.decode(ES256_TOKEN, RSA_PUBLIC, algorithms=["RS256", "ES256"])
    for _ in range(2):  # refusals are not remembered
        with pytest.raises(TokenError) as caught:
            verifier.verify(ES256_TOKEN)
        assert caught.value.reason == INVALID_TOKEN
    assert verifier.cached == 0
    assert isinstance(verifier.verify(rs256_token("alice")), Principal)


@pytest.mark.parametrize(
    "error",
    [
        jwt.InvalidKeyError("a key of another family"),
        jwt.PyJWKError("no such key"),
        jwt.PyJWTError("any other of PyJWT's errors"),
    ],
)
def test_any_pyjwt_error_is_an_invalid_token(
    error: jwt.PyJWTError, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(RS256_AUTH)

    def decode(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise error

    monkeypatch.setattr(verifier._decoder, "decode", decode)
    with pytest.raises(TokenError) as caught:
        verifier.verify(rs256_token("alice"))
    assert caught.value.reason == INVALID_TOKEN and verifier.cached == 0


async def test_through_the_socket_such_a_token_is_refused_and_others_are_served(
    edge_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: HTTP 500 at the handshake, 1011 for an `auth` refresh (of a client
    connected with a good token), 500 from the admin API, each an ERROR with a traceback."""
    caplog.set_level(logging.DEBUG)
    srv = await edge_server(auth=RS256_AUTH)
    with_a_misfit(srv.gateway.verifier)
    alice = await Client.connect(srv.ws, rs256_token("alice"))
    assert (await alice.recv())["type"] == "welcome"

    refused = await Client.connect(srv.ws, ES256_TOKEN)
    assert await refused.closed() == (1008, INVALID_TOKEN)
    await refused.close()

    reply = await alice.request({"type": "auth", "token": ES256_TOKEN})
    assert reply["type"] == "error" and reply["code"] == "FORBIDDEN"
    assert reply["message"] == INVALID_TOKEN
    # Still connected, and still herself.
    reply = await alice.request({"type": "auth", "token": rs256_token("alice")})
    assert reply["type"] == "authenticated"

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{srv.http}/api/admin/overview", headers={"Authorization": f"Bearer {ES256_TOKEN}"}
        ) as resp,
    ):
        assert resp.status == 401 and await resp.text() == INVALID_TOKEN

    bob = await Client.connect(srv.ws, rs256_token("bob"))
    assert (await bob.recv())["type"] == "welcome"
    limits = (await srv.health())["limits"]
    assert limits["connectionsRefused"]["unauthenticated"] == 1
    assert limits["connectionsCut"]["internalErrors"] == 0
    await bob.close()
    await alice.close()

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert ES256_TOKEN not in caplog.text
    assert ES256_TOKEN.split(".")[-1] not in caplog.text
    assert_nothing_of(RSA_PUBLIC, caplog.text)

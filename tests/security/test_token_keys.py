"""A configured JWT algorithm that cannot use the configured key is a settings error,
found when the settings are made (so `serve` refuses to start and `check-config`
names it: tests/test_config.py), naming the algorithm and the key's kind, never the
key. Behind that, the verifier answers any PyJWT error as `Invalid token`: a client,
an `auth` refresh or an admin request with a token PyJWT cannot check gets the coded
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

from hlgateway.auth import INVALID_TOKEN, Principal, TokenError, TokenVerifier, token_decoder
from hlgateway.config import AuthSettings, SettingsError
from tests.helpers import Client
from tests.security.conftest import MakeServer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def openssh(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


RSA_PUBLIC = public_pem(RSA_KEY)
EC_PUBLIC = public_pem(EC_KEY)
JWK = '{"kty": "oct", "k": "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zdHJpbmc"}'

NEEDS_EC256 = "ES256 needs an EC public key on P-256 (secp256r1)"
NEEDS_RSA = "RS256 needs an RSA public key"
NEEDS_SECRET = "needs a shared secret, not a key in PEM, SSH, DER or JWK form"

# Settings whose key some configured algorithm cannot use: the problems they give.
MISFITS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "ES256 beside RS256, an RSA key": (
        {"public_key": RSA_PUBLIC, "algorithms": ("RS256", "ES256")},
        [f"JWT_ALGORITHMS: {NEEDS_EC256}; JWT_PUBLIC_KEY is an RSA public key (2048 bits)"],
    ),
    "RS256 and ES384 beside ES256, a P-256 key": (
        {"public_key": EC_PUBLIC, "algorithms": ("ES256", "RS256", "ES384")},
        [
            f"JWT_ALGORITHMS: {NEEDS_RSA}; JWT_PUBLIC_KEY is an EC public key on secp256r1",
            "JWT_ALGORITHMS: ES384 needs an EC public key on P-384 (secp384r1); "
            "JWT_PUBLIC_KEY is an EC public key on secp256r1",
        ],
    ),
    "ES256, a P-384 key": (
        {"public_key": public_pem(EC384_KEY), "algorithms": ("ES256",)},
        [f"{NEEDS_EC256}; JWT_PUBLIC_KEY is an EC public key on secp384r1"],
    ),
    # PyJWT takes an RSA private key, then fails at every token: it has no `verify`.
    "RS256, an RSA private key": (
        {"public_key": private_pem(RSA_KEY), "algorithms": ("RS256",)},
        [f"{NEEDS_RSA}; JWT_PUBLIC_KEY is an RSA private key (2048 bits)"],
    ),
    "ES256, an EC private key": (
        {"public_key": private_pem(EC_KEY), "algorithms": ("ES256",)},
        [f"{NEEDS_EC256}; JWT_PUBLIC_KEY is an EC private key on secp256r1"],
    ),
    "RS256 and ES256, not a key": (
        {"public_key": "not-a-key-at-all", "algorithms": ("RS256", "ES256")},
        [
            f"{NEEDS_RSA}; JWT_PUBLIC_KEY is not a key in PEM, DER or SSH form",
            f"{NEEDS_EC256}; JWT_PUBLIC_KEY is not a key in PEM, DER or SSH form",
        ],
    ),
    "HS256, a PEM public key as the secret": (
        {"secret": RSA_PUBLIC},
        [f"JWT_ALGORITHMS: HS256 {NEEDS_SECRET}; JWT_SECRET is an RSA public key (2048 bits)"],
    ),
    "HS256 and HS512, an SSH key as the secret": (
        {"secret": openssh(EC_KEY), "algorithms": ("HS256", "HS512")},
        [
            f"HS256 {NEEDS_SECRET}; JWT_SECRET is an EC public key on secp256r1",
            f"HS512 {NEEDS_SECRET}; JWT_SECRET is an EC public key on secp256r1",
        ],
    ),
    "HS384, a JWK as the secret": (
        {"secret": JWK, "algorithms": ("HS384",)},
        [f"HS384 {NEEDS_SECRET}; JWT_SECRET is JSON (a JWK?)"],
    ),
}


def key_of(settings: dict[str, Any]) -> str:
    key = settings.get("public_key") or settings["secret"]
    assert isinstance(key, str)
    return key


def assert_nothing_of(key: str, text: str) -> None:
    """No line of `key` (a PEM's base64 body, an SSH key's, a JWK's members) in `text`."""
    for line in key.replace(" ", "\n").splitlines():
        part = line.strip('"{},:')
        if len(part) >= 8 and not part.startswith("-----"):
            assert part not in text


@pytest.mark.parametrize("case", MISFITS)
def test_an_algorithm_that_cannot_use_the_key_is_a_settings_error(case: str) -> None:
    values, expected = MISFITS[case]
    with pytest.raises(SettingsError) as caught:
        AuthSettings(**values)
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for problem, wanted in zip(problems, expected, strict=True):
        assert wanted in problem
    assert_nothing_of(key_of(values), str(caught.value))
    # The verifier's own decoder refuses the same key the same way, for its direct users.
    with pytest.raises(SettingsError) as again:
        token_decoder(key_of(values), values.get("algorithms", ("HS256",)))
    assert again.value.problems == problems


@pytest.mark.parametrize(
    ("key", "algorithms", "signing"),
    [
        (RSA_PUBLIC, ("RS256", "RS384", "RS512"), RSA_KEY),
        (openssh(RSA_KEY), ("RS256",), RSA_KEY),
        (EC_PUBLIC, ("ES256",), EC_KEY),
        (openssh(EC_KEY), ("ES256",), EC_KEY),
        (public_pem(EC384_KEY), ("ES384",), EC384_KEY),
    ],
)
def test_keys_that_fit_their_algorithms_verify_as_before(
    key: str, algorithms: tuple[str, ...], signing: PrivateKey
) -> None:
    verifier = TokenVerifier(AuthSettings(public_key=key, algorithms=algorithms), cache_size=0)
    for algorithm in algorithms:
        principal = verifier.verify(jwt.encode({"id": "pk-user"}, signing, algorithm=algorithm))
        assert principal.user_id == "pk-user"


def with_a_misfit(verifier: TokenVerifier) -> None:
    """Let a verifier of RS256 with an RSA key take ES256 too, as JWT_ALGORITHMS=RS256,ES256
    did before settings refused it: at an ES256 token PyJWT prepares the RSA key for ES256
    and raises InvalidKeyError (not an InvalidTokenError). Its decoder has PyJWT's own
    ES256, unprepared."""
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

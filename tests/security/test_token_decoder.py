"""The verifier's PyJWT with the configured key prepared once (auth.py `token_decoder`)
accepts and refuses exactly what PyJWT's plain module-level `jwt.decode` does, with
the same exception and message, and the verifier maps each to the same close reason
as before: a differential test over hand-made tokens (valid, expired, not yet valid,
wrong secret, wrong algorithm, malformed, tampered) and over hypothesis-made ones.

Times are a day or more from the import's `now`: PyJWT checks `nbf` and `iat` on the
wall clock, and the verdicts below must not change while the suite runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

from hlgateway.auth import (
    INVALID_TOKEN,
    TOKEN_EXPIRED,
    PreparedKey,
    Principal,
    TokenError,
    TokenVerifier,
    principal_from_claims,
    token_decoder,
)
from hlgateway.config import AuthSettings

SECRET = "differential-secret-long-enough-for-every-hs-algorithm-" + "s" * 16  # 72 bytes
WRONG = "another-secret-also-long-enough-for-every-hs-algorithm--" + "w" * 16
NOW = int(time.time())
FAR = 86_400  # seconds: no boundary near the wall clock while the suite runs
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_PUBLIC = pem(RSA_KEY)

# The verifier's configurations: the default, several HS* algorithms, audience and
# issuer required, a leeway; an RSA key for one RS* algorithm and for all three, an EC
# key. (An algorithm its key does not fit is a settings error: test_token_keys.py.)
CONFIGS = {
    "hs256": AuthSettings(secret=SECRET),
    "hs-all": AuthSettings(secret=SECRET, algorithms=("HS256", "HS384", "HS512")),
    "aud-iss": AuthSettings(secret=SECRET, audience="gw", issuer="auth.example"),
    "leeway": AuthSettings(secret=SECRET, leeway_seconds=2 * FAR),
    "rs256": AuthSettings(public_key=RSA_PUBLIC, algorithms=("RS256",)),
    "rs-all": AuthSettings(public_key=RSA_PUBLIC, algorithms=("RS256", "RS384", "RS512")),
    "es256": AuthSettings(public_key=pem(EC_KEY), algorithms=("ES256",)),
}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HASHES = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}


def signed(header: dict[str, Any] | str, payload: dict[str, Any] | str, key: str = SECRET) -> str:
    """A token made by hand, HMAC signed: with the hash an HS* header names, else SHA-256."""
    alg = header.get("alg") if isinstance(header, dict) else None
    h = b64(header if isinstance(header, str) else json.dumps(header))
    p = b64(payload if isinstance(payload, str) else json.dumps(payload))
    digest = HASHES.get(alg, hashlib.sha256) if isinstance(alg, str) else hashlib.sha256
    sig = hmac.new(key.encode(), f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{b64(sig)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"id": "alice", "iat": NOW, "exp": NOW + FAR, **extra}


VALID = jwt.encode(claims(), SECRET, algorithm="HS256")
HEAD, BODY, SIG = VALID.split(".")

TOKENS: dict[str, str] = {
    "valid": VALID,
    "valid, no exp": jwt.encode({"id": "alice"}, SECRET, algorithm="HS256"),
    "valid, sub": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
    "HS384": jwt.encode(claims(), SECRET, algorithm="HS384"),
    "HS512": jwt.encode(claims(), SECRET, algorithm="HS512"),
    "expired": jwt.encode(claims(exp=NOW - FAR), SECRET, algorithm="HS256"),
    "exp unreadable": jwt.encode(claims(exp="soon"), SECRET, algorithm="HS256"),
    "exp float": jwt.encode(claims(exp=NOW + FAR + 0.5), SECRET, algorithm="HS256"),
    "nbf future": jwt.encode(claims(nbf=NOW + FAR), SECRET, algorithm="HS256"),
    "nbf past": jwt.encode(claims(nbf=NOW - FAR), SECRET, algorithm="HS256"),
    "nbf unreadable": jwt.encode(claims(nbf=[1]), SECRET, algorithm="HS256"),
    "iat future": jwt.encode(claims(iat=NOW + FAR), SECRET, algorithm="HS256"),
    "iat unreadable": jwt.encode(claims(iat="now"), SECRET, algorithm="HS256"),
    "aud": jwt.encode(claims(aud="gw"), SECRET, algorithm="HS256"),
    "aud other": jwt.encode(claims(aud=["other"]), SECRET, algorithm="HS256"),
    "aud and iss": jwt.encode(claims(aud="gw", iss="auth.example"), SECRET, algorithm="HS256"),
    "iss other": jwt.encode(claims(aud="gw", iss="elsewhere"), SECRET, algorithm="HS256"),
    "sub not a string": jwt.encode(claims(sub=7), SECRET, algorithm="HS256"),
    "jti not a string": jwt.encode(claims(jti=7), SECRET, algorithm="HS256"),
    "wallets not a list": jwt.encode(claims(wallets="0x1"), SECRET, algorithm="HS256"),
    "no user": jwt.encode({"exp": NOW + FAR}, SECRET, algorithm="HS256"),
    "wrong secret": jwt.encode(claims(), WRONG, algorithm="HS256"),
    "wrong secret HS512": jwt.encode(claims(), WRONG, algorithm="HS512"),
    "alg none": jwt.encode(claims(), "", algorithm="none"),
    "alg none, signed": signed({"alg": "none", "typ": "JWT"}, claims()),
    "alg None": signed({"alg": "None"}, claims()),
    "alg missing": signed({"typ": "JWT"}, claims()),
    "alg empty": signed({"alg": ""}, claims()),
    "alg not a string": signed({"alg": ["HS256"]}, claims()),
    "RS256 signed": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "RS384 signed": jwt.encode(claims(), RSA_KEY, algorithm="RS384"),
    "RS256 expired": jwt.encode(claims(exp=NOW - FAR), RSA_KEY, algorithm="RS256"),
    "RS256 nbf future": jwt.encode(claims(nbf=NOW + FAR), RSA_KEY, algorithm="RS256"),
    "RS256 other key": jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256"),
    "RS256 payload swapped": ".".join(
        [
            jwt.encode(claims(), RSA_KEY, algorithm="RS256").split(".")[0],
            b64(json.dumps(claims(role="admin"))),
            jwt.encode(claims(), RSA_KEY, algorithm="RS256").split(".")[2],
        ]
    ),
    "PS256 signed": jwt.encode(claims(), RSA_KEY, algorithm="PS256"),
    "ES256 signed": jwt.encode(claims(), EC_KEY, algorithm="ES256"),
    "ES256 expired": jwt.encode(claims(exp=NOW - FAR), EC_KEY, algorithm="ES256"),
    "HS256 signed with the public key": signed({"alg": "HS256"}, claims(), RSA_PUBLIC),
    "RS256 header, HMAC signed": signed({"alg": "RS256"}, claims()),
    "HS512 header, HS256 signature": signed({"alg": "HS512"}, claims()),
    "kid not a string": signed({"alg": "HS256", "kid": 1}, claims()),
    "kid": signed({"alg": "HS256", "kid": "k1"}, claims()),
    "crit unsupported": signed({"alg": "HS256", "crit": ["exp"], "exp": 1}, claims()),
    "crit empty": signed({"alg": "HS256", "crit": []}, claims()),
    "b64 false": signed({"alg": "HS256", "b64": False, "crit": ["b64"]}, ""),
    "header a list": signed("[1]", claims()),
    "header not json": signed("{alg", claims()),
    "payload a list": signed({"alg": "HS256"}, "[1]"),
    "payload not json": signed({"alg": "HS256"}, "{id"),
    "payload deep": signed({"alg": "HS256"}, "[" * 100_000),
    "empty": "",
    "one segment": "abc",
    "two segments": f"{HEAD}.{BODY}",
    "four segments": f"{VALID}.{SIG}",
    "dots": "..",
    "padded signature": f"{VALID}=",
    "padding wrong": f"{VALID}===",
    "not base64": f"{HEAD}.{BODY}.!!!!",
    "header not base64": f"**.{BODY}.{SIG}",
    "signature cut": VALID[:-2],
    "signature flipped": VALID[:-1] + ("A" if VALID[-1] != "A" else "B"),
    "payload swapped": f"{HEAD}.{b64(json.dumps(claims(role='admin')))}.{SIG}",
    "header swapped": f"{b64(json.dumps({'alg': 'HS256', 'kid': 'x'}))}.{BODY}.{SIG}",
    "whitespace": f" {VALID}",
    "unicode": VALID + "é",
}


def decoded(decode: Any, token: str, auth: AuthSettings) -> tuple[str, Any]:
    """What PyJWT says, the way the verifier asks it: the claims, or the exception."""
    try:
        return "ok", decode(
            token,
            auth.verification_key(),
            algorithms=list(auth.algorithms),
            leeway=auth.leeway_seconds,
            audience=auth.audience,
            issuer=auth.issuer,
            options={"require": [], "verify_aud": auth.audience is not None, "verify_exp": False},
        )
    except Exception as e:
        return type(e).__name__, str(e)


def verdict(token: str | None, auth: AuthSettings) -> Principal | str:
    """The verifier's answer on a fresh token: a principal, the close reason, or
    (not a refusal: a bug) an exception's name."""
    try:
        return TokenVerifier(auth, cache_size=0).verify(token)
    except TokenError as e:
        return e.reason
    except Exception as e:
        return type(e).__name__


def reference_verdict(token: str | None, auth: AuthSettings) -> Principal | str:
    """The verifier's check as it was before the prepared key, on `jwt.decode`."""
    if not token:
        return "Token required"
    outcome, value = decoded(jwt.decode, token, auth)
    if outcome != "ok":
        return INVALID_TOKEN
    exp = value.get("exp")
    if exp is not None:
        try:
            if int(exp) <= time.time() - auth.leeway_seconds:
                return TOKEN_EXPIRED
        except (ValueError, TypeError, OverflowError):
            return INVALID_TOKEN
    try:
        return principal_from_claims(value)
    except TokenError as e:
        return e.reason


def same(token: str, auth: AuthSettings) -> None:
    decoder = token_decoder(auth.verification_key(), auth.algorithms)
    assert decoded(decoder.decode, token, auth) == decoded(jwt.decode, token, auth)
    assert verdict(token, auth) == reference_verdict(token, auth)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", TOKENS)
def test_the_prepared_key_decides_as_plain_jwt_decode(name: str, config: str) -> None:
    same(TOKENS[name], CONFIGS[config])


def test_the_cases_cover_acceptance_and_each_refusal() -> None:
    """The table above is not all refusals (or all acceptances) by a slip."""
    auth = CONFIGS["hs256"]
    answers = {name: verdict(token, auth) for name, token in TOKENS.items()}
    assert isinstance(answers["valid"], Principal) and answers["valid"].user_id == "alice"
    assert isinstance(answers["nbf past"], Principal)
    assert isinstance(answers["aud"], Principal)  # no JWT_AUDIENCE: `aud` is not checked
    assert answers["expired"] == TOKEN_EXPIRED
    assert answers["empty"] == "Token required"
    for refused in ("nbf future", "iat future", "wrong secret", "alg none", "HS512",
                    "RS256 signed", "RS256 header, HMAC signed", "signature flipped",
                    "payload swapped", "four segments"):  # fmt: skip
        assert answers[refused] == INVALID_TOKEN, refused
    assert isinstance(verdict(TOKENS["HS512"], CONFIGS["hs-all"]), Principal)
    assert isinstance(verdict(TOKENS["aud and iss"], CONFIGS["aud-iss"]), Principal)
    for refused in ("valid", "aud other", "iss other"):
        assert verdict(TOKENS[refused], CONFIGS["aud-iss"]) == INVALID_TOKEN, refused
    assert isinstance(verdict(TOKENS["expired"], CONFIGS["leeway"]), Principal)
    rs = {name: verdict(token, CONFIGS["rs256"]) for name, token in TOKENS.items()}
    assert isinstance(rs["RS256 signed"], Principal)
    assert rs["RS256 expired"] == TOKEN_EXPIRED
    for refused in ("RS384 signed", "RS256 nbf future", "RS256 other key", "PS256 signed",
                    "RS256 payload swapped", "ES256 signed", "valid",
                    "HS256 signed with the public key"):  # fmt: skip
        assert rs[refused] == INVALID_TOKEN, refused
    assert isinstance(verdict(TOKENS["ES256 signed"], CONFIGS["es256"]), Principal)
    assert isinstance(verdict(TOKENS["RS384 signed"], CONFIGS["rs-all"]), Principal)
    assert verdict(TOKENS["ES256 signed"], CONFIGS["rs-all"]) == INVALID_TOKEN


times = st.one_of(
    st.integers(NOW - 10 * FAR, NOW + 10 * FAR).filter(lambda t: abs(t - NOW) > FAR // 2),
    st.sampled_from(["soon", None, 1e300, True, [1], {"t": 1}]),
)
claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["alice", 7, "", True, None]),
        "sub": st.sampled_from(["alice", 7]),
        "exp": times,
        "nbf": times,
        "iat": times,
        "aud": st.sampled_from(["gw", ["gw", "x"], "x", [], 1]),
        "iss": st.sampled_from(["auth.example", "x", 1]),
        "wallets": st.sampled_from([[], ["0x" + "ab" * 20], "x"]),
    },
)
headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "RS256", "ES256", "hs256"])},
    optional={"typ": st.sampled_from(["JWT", 1]), "kid": st.sampled_from(["k", 1])},
)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    headers,
    claim_sets,
    st.sampled_from([SECRET, WRONG]),
    st.sampled_from(list(CONFIGS)),
)
def test_made_tokens_are_decided_alike(
    header: dict[str, Any], payload: dict[str, Any], key: str, config: str
) -> None:
    same(signed(header, payload, key), CONFIGS[config])


@PROPERTY
@given(
    st.sampled_from([TOKENS[n] for n in ("valid", "HS512", "aud and iss", "RS256 signed")]),
    st.integers(0, 400),
    st.text(alphabet="AQgw-_.=+/ !é{}", max_size=3),
    st.integers(0, 3),
    st.sampled_from(list(CONFIGS)),
)
def test_tampered_tokens_are_decided_alike(
    token: str, at: int, insert: str, cut: int, config: str
) -> None:
    at %= len(token) + 1
    same(token[:at] + insert + token[at + cut :], CONFIGS[config])


def test_the_key_is_prepared_once_and_other_keys_as_pyjwt_does() -> None:
    hs = PreparedKey(HMACAlgorithm(HMACAlgorithm.SHA256), SECRET)
    first = hs.prepare_key(SECRET)
    assert first == HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(SECRET)
    assert hs.prepare_key(SECRET) is first
    assert hs.prepare_key(WRONG) == WRONG.encode()
    rs = PreparedKey(RSAAlgorithm(RSAAlgorithm.SHA256), RSA_PUBLIC)
    assert rs.prepare_key(RSA_PUBLIC) is rs.prepare_key(RSA_PUBLIC)
    assert rs.prepare_key(pem(OTHER_RSA_KEY)) != rs.prepare_key(RSA_PUBLIC)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_verifier_s_decoder_prepares_its_algorithms_and_keeps_pyjwt_s_others(
    config: str,
) -> None:
    auth = CONFIGS[config]
    decoder = token_decoder(auth.verification_key(), auth.algorithms)
    for name in auth.algorithms:
        assert isinstance(decoder._jws.get_algorithm_by_name(name), PreparedKey)
    assert sorted(decoder._jws.get_algorithms()) == sorted(jwt.PyJWS().get_algorithms())

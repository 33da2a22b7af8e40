"""JWT verification: who a connection is and what it may read.

Algorithms are pinned by configuration: a token is checked only against the
configured algorithm family, so `alg: none` and HS/RS confusion are refused.

Verified tokens are remembered by their exact string until they expire (a bounded,
least recently used cache): a token seen again - many connections of one user, a
reconnect storm - is not decoded and its signature not checked again (~40 us of
a ~300 us handshake with HS256, more with RS/ES keys). Only successes are kept,
and a hit is checked against its expiry on the verifier's clock like a fresh token.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_der_public_key,
    load_pem_private_key,
    load_pem_public_key,
    load_ssh_public_key,
)
from jwt.algorithms import Algorithm
from jwt.types import JWKDict

from hlgateway.config import HMAC_ALGORITHMS, AuthSettings, SettingsError

WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class TokenError(Exception):
    """A token that is refused; `reason` is the close reason the spec names."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


TOKEN_REQUIRED = "Token required"
INVALID_TOKEN = "Invalid token"
TOKEN_EXPIRED = "Token expired"


NO_WALLETS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str | None = None
    role: str | None = None
    wallets: frozenset[str] = field(default_factory=frozenset)  # lower-cased
    expires_at: int | None = None  # Unix ms
    trade: bool = False  # the `trade` claim: may relay signed actions (`post`)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_trade(self) -> bool:
        """Order entry's permission: the `trade` claim, or the admin role."""
        return self.trade or self.is_admin

    def owns_wallet(self, wallet: str) -> bool:
        return wallet.lower() in self.wallets


class PreparedKey(Algorithm):
    """One of PyJWT's algorithms, with the configured key prepared once.

    PyJWT prepares the key at every verification: it screens an HMAC secret (not
    empty, not a PEM, SSH, DER or JWK key) and parses a PEM public key again. The
    key does not change, so neither does the outcome: it is prepared here, once,
    and a key the algorithm cannot use raises here (`key_problems` says why),
    not at some client's token. Everything else is the wrapped algorithm's. A
    check of a token not seen before costs ~40% less with HS256, ~15-30% with
    RS/ES keys (`python -m bench.tokens`, docs/scaling.md).
    """

    def __init__(self, algorithm: Algorithm, key: str) -> None:
        self._algorithm = algorithm
        self._key = key
        self._prepared = algorithm.prepare_key(key)

    def prepare_key(self, key: Any) -> Any:
        if key != self._key:
            return self._algorithm.prepare_key(key)
        return self._prepared

    @property
    def prepared(self) -> Any:
        """The configured key as the algorithm uses it (a key object, or bytes)."""
        return self._prepared

    def check_key_length(self, key: Any) -> str | None:
        return self._algorithm.check_key_length(key)

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        return self._algorithm.verify(msg, key, sig)

    def sign(self, msg: bytes, key: Any) -> bytes:
        return self._algorithm.sign(msg, key)

    def compute_hash_digest(self, bytestr: bytes) -> bytes:
        return self._algorithm.compute_hash_digest(bytestr)

    # JWK conversion is not on the verification path; PyJWT's classes have it.
    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> NoReturn:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: str | JWKDict) -> NoReturn:
        raise NotImplementedError


# What each algorithm verifies with: said when the configured key is not that.
KEY_NEEDED = {
    **dict.fromkeys(HMAC_ALGORITHMS, "a shared secret, not a key in PEM, SSH, DER or JWK form"),
    **dict.fromkeys(("RS256", "RS384", "RS512"), "an RSA public key"),
    "ES256": "an EC public key on P-256 (secp256r1)",
    "ES384": "an EC public key on P-384 (secp384r1)",
    "ES512": "an EC public key on P-521 (secp521r1)",
}
# What PyJWT and `cryptography` raise for a key an algorithm cannot take.
_KEY_REFUSED = (jwt.PyJWTError, ValueError, TypeError, UnsupportedAlgorithm)
_PUBLIC_KEYS = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)


def prepared_keys(key: str, algorithms: Iterable[str]) -> tuple[dict[str, PreparedKey], list[str]]:
    """`key` prepared for each of `algorithms` PyJWT has (RS/ES only with
    `cryptography`), and a problem for each that cannot use it: the algorithm and
    the key's kind, never the key.

    RS*/ES* need a public key: PyJWT takes a private one too, but RS* then fails at
    every token (a private key has no `verify`), and a verifier has no use for a
    signing key.
    """
    jws = jwt.PyJWS()
    available = set(jws.get_algorithms())
    prepared: dict[str, PreparedKey] = {}
    problems: list[str] = []
    for name in dict.fromkeys(algorithms):  # in the configured order, once each
        if name not in available:
            continue
        algorithm: PreparedKey | None
        try:
            algorithm = PreparedKey(jws.get_algorithm_by_name(name), key)
        except _KEY_REFUSED:
            algorithm = None
        if algorithm is not None and (
            name in HMAC_ALGORITHMS or isinstance(algorithm.prepared, _PUBLIC_KEYS)
        ):
            prepared[name] = algorithm
            continue
        source = "JWT_SECRET" if name in HMAC_ALGORITHMS else "JWT_PUBLIC_KEY"
        problems.append(
            f"JWT_ALGORITHMS: {name} needs {KEY_NEEDED.get(name, 'another key')}; "
            f"{source} is {key_kind(key)}"
        )
    return prepared, problems


def key_problems(settings: AuthSettings) -> list[str]:
    """Each configured algorithm that cannot verify with the configured key, and why."""
    return prepared_keys(settings.verification_key(), settings.algorithms)[1]


def key_kind(key: str) -> str:
    """What `key` is, for a message about it: its kind and size or curve, never its bytes."""
    data = key.strip().encode()
    for load_public in (load_pem_public_key, load_der_public_key, load_ssh_public_key):
        try:
            return _described(load_public(data), "public")
        except (ValueError, TypeError, UnsupportedAlgorithm):
            pass
    try:
        return _described(load_pem_private_key(data, password=None), "private")
    except TypeError:
        return "an encrypted private key"
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        x509.load_pem_x509_certificate(data)
        return "an X.509 certificate, not its public key"
    except ValueError:
        pass
    if data.startswith(b"-----BEGIN"):
        return "a PEM block of another kind"
    if data[:1] in (b"{", b"["):
        return "JSON (a JWK?)"
    return "not a key in PEM, DER or SSH form"


def _described(key: object, which: str) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"an RSA {which} key ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"an EC {which} key on {key.curve.name}"
    return f"a {which} key of another kind ({type(key).__name__})"


def token_decoder(key: str, algorithms: Iterable[str]) -> jwt.PyJWT:
    """A PyJWT of the verifier's own, like the module-level one `jwt.decode` uses
    (the same default options and algorithms), with `key` prepared once for each
    of `algorithms`. SettingsError if one of them cannot use `key`."""
    prepared, problems = prepared_keys(key, algorithms)
    if problems:
        raise SettingsError(problems)
    decoder = jwt.PyJWT()
    jws = decoder._jws  # no public way to give PyJWT its PyJWS; pinned in requirements.lock
    for name, algorithm in prepared.items():
        jws.unregister_algorithm(name)
        jws.register_algorithm(name, algorithm)
    return decoder


class TokenVerifier:
    def __init__(
        self,
        settings: AuthSettings,
        *,
        cache_size: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._algorithms = list(settings.algorithms)
        self._key = settings.verification_key()
        self._decoder = token_decoder(self._key, self._algorithms)
        self._leeway = settings.leeway_seconds
        self._audience = settings.audience
        self._issuer = settings.issuer
        self._clock = clock  # wall time, Unix seconds: what `exp` is compared with
        # Each entry is the token string and a Principal shared with its connections.
        self._cache_size = settings.cache_size if cache_size is None else cache_size
        # token -> (its principal, its `exp` in whole seconds or None); oldest use first.
        self._cache: OrderedDict[str, tuple[Principal, int | None]] = OrderedDict()
        self.cache_hits = 0

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise TokenError(TOKEN_REQUIRED)
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            principal, exp = cached
            if exp is not None and exp <= now - self._leeway:
                del self._cache[token]
                raise TokenError(TOKEN_EXPIRED)
            self._cache.move_to_end(token)
            self.cache_hits += 1
            return principal
        try:
            claims: dict[str, Any] = self._decoder.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
                # `exp` is checked below, on this verifier's clock, as PyJWT would.
                options={
                    "require": [],
                    "verify_aud": self._audience is not None,
                    "verify_exp": False,
                },
            )
        # Any PyJWTError, not only InvalidTokenError: a key PyJWT will not use for the
        # token's algorithm (InvalidKeyError) is a refusal too, never an exception out
        # of here. Settings refuse such keys; this is the depth behind that check.
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenError(INVALID_TOKEN) from None
        exp = _expiry(claims)
        if exp is not None and exp <= now - self._leeway:
            raise TokenError(TOKEN_EXPIRED)
        principal = principal_from_claims(claims)
        if self._cache_size > 0:
            self._cache[token] = (principal, exp)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    @property
    def cached(self) -> int:
        """Verified tokens remembered now."""
        return len(self._cache)


def _expiry(claims: dict[str, Any]) -> int | None:
    """`exp` in whole seconds, as PyJWT reads it (a present but unreadable one is invalid)."""
    if "exp" not in claims:
        return None
    try:
        return int(claims["exp"])
    except (ValueError, TypeError, OverflowError):
        raise TokenError(INVALID_TOKEN) from None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    user_id = claims.get("id", claims.get("sub"))
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        raise TokenError(INVALID_TOKEN)
    username = claims.get("username")
    role = claims.get("role")
    wallets_claim = claims.get("wallets", [])
    if not isinstance(wallets_claim, list) or not all(
        isinstance(w, str) and WALLET_RE.match(w) for w in wallets_claim
    ):
        raise TokenError(INVALID_TOKEN)
    exp = claims.get("exp")
    return Principal(
        user_id=str(user_id),
        username=username if isinstance(username, str) else None,
        role=role if isinstance(role, str) else None,
        # One shared empty set: most tokens name no wallet, and each set costs 216 bytes.
        wallets=frozenset(w.lower() for w in wallets_claim) if wallets_claim else NO_WALLETS,
        expires_at=int(exp * 1000) if isinstance(exp, int | float) else None,
        trade=claims.get("trade") is True,
    )


def issue_token(
    secret: str,
    user_id: str,
    *,
    username: str | None = None,
    role: str | None = None,
    wallets: list[str] | None = None,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
    trade: bool = False,
) -> str:
    """Sign a token for local use (`hlgateway token`, the demo token, tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "id": user_id,
        "username": username or user_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if role:
        claims["role"] = role
    if trade:
        claims["trade"] = True
    if wallets:
        for wallet in wallets:
            if not WALLET_RE.match(wallet):
                raise ValueError(f"not a wallet address (0x + 40 hex): {wallet}")
        claims["wallets"] = wallets
    return jwt.encode(claims, secret, algorithm=algorithm)

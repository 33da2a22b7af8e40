"""`python -m bench.tokens [--tokens 20000] [--rounds 7] [--algorithm HS256|RS256|ES256]`

What one uncached JWT check costs (auth.py): distinct tokens, as after a deploy
when every client comes back with its own, verified with the cache off. Beside
it, PyJWT's plain module-level `jwt.decode` with the verifier's arguments, which
prepares the key again at every call (screens the HMAC secret, parses the PEM).
Rounds alternate between the two; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hlgateway.auth import TokenVerifier, principal_from_claims
from hlgateway.config import AuthSettings

SECRET = "bench-secret-that-is-long-enough-for-hs512-" + "x" * 24


def per_check_us(check: Callable[[str], object], tokens: list[str]) -> float:
    start = time.perf_counter()
    for t in tokens:
        check(t)
    return (time.perf_counter() - start) / len(tokens) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tokens")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--algorithm", default="HS256", choices=["HS256", "HS384", "HS512", "RS256", "ES256"]
    )
    args = parser.parse_args()
    signing: str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = SECRET
    key = SECRET
    if args.algorithm.startswith("HS"):
        settings = AuthSettings(secret=SECRET, algorithms=(args.algorithm,))
    else:
        private = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if args.algorithm == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        signing = private
        key = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        settings = AuthSettings(public_key=key, algorithms=(args.algorithm,))
    now = int(time.time())
    tokens = [
        jwt.encode(
            {"id": f"user{n}", "username": f"user{n}", "iat": now, "exp": now + 3600},
            signing,
            algorithm=args.algorithm,
        )
        for n in range(args.tokens)
    ]
    verifier = TokenVerifier(settings, cache_size=0)

    def plain(token: str) -> object:
        # The verifier's call before the key was prepared once (auth.py).
        claims = jwt.decode(
            token,
            key,
            algorithms=[args.algorithm],
            options={"require": [], "verify_aud": False, "verify_exp": False},
        )
        return principal_from_claims(claims)

    checks: dict[str, Callable[[str], object]] = {
        "TokenVerifier.verify, cache off": verifier.verify,
        "plain jwt.decode + principal_from_claims": plain,
    }
    for check in checks.values():  # warm up
        for t in tokens[:1000]:
            check(t)
    best = dict.fromkeys(checks, float("inf"))
    for _ in range(args.rounds):
        for name, check in checks.items():
            best[name] = min(best[name], per_check_us(check, tokens))
    machine = f"{os.cpu_count()} cores, {platform.machine()}"
    print(f"machine: {machine}, Python {platform.python_version()}, PyJWT {jwt.__version__}")
    print(
        f"command: python -m bench.tokens --tokens {args.tokens} --rounds {args.rounds}"
        f" --algorithm {args.algorithm}"
    )
    print()
    print("| check (distinct tokens) | us per check, best round |")
    print("|---|---|")
    for name, us in best.items():
        print(f"| {name} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

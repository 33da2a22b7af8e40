"""A JWT's claims read without verifying it: what the holder of a token may know of it.

Its expiry (the Python client refreshes before it), whose it is (the notifier's
service user, and check-config's look at HLGATEWAY_NOTIFIER_TOKEN). Never for
deciding whom to trust: the gateway verifies every token it is given (auth.py).
PyJWT with the signature unchecked checks no claim either, so an expired token,
or one for another audience, is still read.
"""

from __future__ import annotations

from typing import Any

import jwt


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of `token`, unverified; None if it is not a JWT."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None


def token_user(claims: dict[str, Any]) -> str | None:
    """The user id a token names: `id`, else `sub` (as auth.py reads it)."""
    user = claims.get("id", claims.get("sub"))
    return None if user is None else str(user)

"""Whose token the notifier was given, read without verifying it (the gateway verifies)."""

from __future__ import annotations

import jwt
import pytest

from hlgateway.claims import token_user, unverified_claims
from hlgateway.config import NotifierSettings, SettingsError
from hlgateway.notifier.runner import SERVICE_USER, gateway_credentials

KEY = "k" * 40


def sign(claims: dict[str, object]) -> str:
    return jwt.encode(claims, KEY, algorithm="HS256")


def test_the_user_is_the_id_claim_else_sub() -> None:
    both = sign({"id": "notifier", "sub": "x"})
    assert gateway_credentials(NotifierSettings(token=both)) == (both, "notifier")
    only_sub = sign({"sub": "svc"})
    assert gateway_credentials(NotifierSettings(token=only_sub)) == (only_sub, "svc")


def test_without_a_token_it_signs_its_own() -> None:
    mint, user = gateway_credentials(NotifierSettings(jwt_secret=KEY))
    assert user == SERVICE_USER and callable(mint)
    token = mint()
    assert isinstance(token, str)
    claims = unverified_claims(token)
    assert claims is not None and token_user(claims) == SERVICE_USER


@pytest.mark.parametrize("token", ["plain", "not.a.jwt", sign({"role": "admin"})])
def test_a_token_without_a_user_is_refused(token: str) -> None:
    with pytest.raises(SettingsError, match="HLGATEWAY_NOTIFIER_TOKEN"):
        gateway_credentials(NotifierSettings(token=token))

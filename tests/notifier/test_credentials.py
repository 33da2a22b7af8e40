"""The notifier's own user id, read from the token it was given (not verified: the gateway does)."""

from __future__ import annotations

import jwt
import pytest

from hlgateway.notifier.runner import ConfigError, token_user

KEY = "k" * 40


def test_the_user_is_the_id_claim_else_sub() -> None:
    assert (
        token_user(jwt.encode({"id": "notifier", "sub": "x"}, KEY, algorithm="HS256")) == "notifier"
    )
    assert token_user(jwt.encode({"sub": "svc"}, KEY, algorithm="HS256")) == "svc"


NO_USER = jwt.encode({"role": "admin"}, KEY, algorithm="HS256")


@pytest.mark.parametrize("token", ["plain", "not.a.jwt", NO_USER])
def test_a_token_without_a_user_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="HLGATEWAY_NOTIFIER_TOKEN"):
        token_user(token)

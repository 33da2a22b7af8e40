"""Telegram Mini App initData: signatures, age, and what a forger can try."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from hlgateway.telegram.webapp import InitDataError, sign, validate

BOT = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
NOW = 1_764_100_000.0


def init_data(bot: str = BOT, auth_date: float = NOW - 10, **extra: str) -> str:
    fields = {
        "auth_date": str(int(auth_date)),
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps({"id": 279058397, "first_name": "Vlad", "username": "vlad"}),
        **extra,
    }
    return urlencode({**fields, "hash": sign(fields, bot)})


def test_a_signed_fresh_init_data_names_its_user() -> None:
    user = validate(init_data(), BOT, max_age=3600, now=NOW)
    assert (user.id, user.username) == (279058397, "vlad")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (init_data(bot="654321:another-bot"), "not signed"),
        (init_data().replace("279058397", "279058398"), "not signed"),  # another user
        (init_data(auth_date=NOW - 7200), "too old"),
        (init_data(auth_date=NOW + 600), "too old"),  # from the future
        (init_data() + "&user=x", "repeats"),
        ("", "missing"),
        ("hash", "not a query string"),
        (urlencode({"auth_date": "1", "hash": sign({"auth_date": "1"}, BOT)}), "lacks"),
    ],
)
def test_forged_stale_or_malformed_init_data_is_refused(data: str, reason: str) -> None:
    with pytest.raises(InitDataError, match=reason):
        validate(data, BOT, max_age=3600, now=NOW)

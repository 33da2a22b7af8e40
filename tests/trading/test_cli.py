"""`hlgateway token --trade`, and the trading lines of `serve`'s banner on the simulator."""

from __future__ import annotations

import pytest

from hlgateway.auth import TokenVerifier
from hlgateway.cli import main
from hlgateway.cli.commands import _trading_lines
from hlgateway.config import AuthSettings
from hlgateway.simulator.local_account import local_account
from tests.helpers import SECRET


def verify(token: str) -> tuple[bool, bool]:
    principal = TokenVerifier(AuthSettings(secret=SECRET)).verify(token)
    return principal.trade, principal.may_trade


@pytest.mark.parametrize(("flags", "trades"), [([], False), (["--trade"], True)])
def test_token_trade_flag(
    flags: list[str],
    trades: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    assert main(["token", "--user", "bot", *flags]) == 0
    assert verify(capsys.readouterr().out.strip()) == (trades, trades)


def test_serve_banner_names_the_simulator_account_and_a_trading_token() -> None:
    lines = _trading_lines(SECRET, seed=3)
    account = local_account(3)
    assert account.address in lines[0] and account.key in lines[0]
    assert "simulator only" in lines[1]
    token = lines[2].rsplit(" ", 1)[1]
    principal = TokenVerifier(AuthSettings(secret=SECRET)).verify(token)
    assert principal.may_trade and principal.owns_wallet(account.address)

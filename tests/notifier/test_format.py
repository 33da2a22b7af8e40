"""HTML lines with every dynamic field escaped; numbers as reported; packing under 4,096."""

from __future__ import annotations

import pytest

from hlgateway.notifier.format import (
    MAX_MESSAGE,
    esc,
    fill_line,
    ledger_line,
    number,
    pack,
    take_first,
)
from tests.notifier.fakebot import BadHtml, visible_text

FILL = {
    "id": 7,
    "symbol": "BTC",
    "side": "buy",
    "price": 43250.5,
    "size": 0.00001,
    "fee": 0.0123,
    "closedPnl": -1.5,
    "timestamp": 1,
    "wallet": "0x" + "ab" * 20,
    "feeToken": "USDC",
}


def test_esc_escapes_what_telegram_html_needs() -> None:
    assert esc("<b>_*[x] & co") == "&lt;b&gt;_*[x] &amp; co"


@pytest.mark.parametrize(
    ("value", "text"),
    [("0.00010", "0.00010"), (0.00001, "0.00001"), (43250.5, "43250.5"), (1.0, "1.0"), (3, "3")],
)
def test_numbers_are_printed_as_reported(value: object, text: str) -> None:
    assert number(value) == text


def test_fill_line_reads_as_the_exchange_reports_it() -> None:
    line = fill_line(FILL, "<b>_*[x]")
    shown = visible_text(line)
    assert shown == "Bought 0.00001 BTC @ 43250.5 · fee 0.0123 USDC · PnL -1.5 · <b>_*[x]"


def test_a_spot_fill_names_its_pair_and_the_fee_token() -> None:
    spot = {**FILL, "symbol": "HYPE/USDC", "market": "spot", "price": 41.33, "size": 12.5,
            "fee": 0.005625, "feeToken": "HYPE", "closedPnl": 0.0}  # fmt: skip
    shown = visible_text(fill_line(spot, "desk"))
    assert shown == "Bought 12.5 HYPE/USDC @ 41.33 · fee 0.005625 HYPE · desk"


def test_ledger_lines_for_deposits_withdrawals_and_liquidations() -> None:
    wallet = "0x" + "ab" * 20
    deposit = {"id": "0x1:deposit", "kind": "deposit", "time": 1, "amount": 2500.0,
               "token": "USDC", "wallet": wallet, "raw": {"type": "deposit"}}  # fmt: skip
    assert visible_text(ledger_line(deposit, "<b>me") or "") == "Deposit 2500.0 USDC · <b>me"
    withdraw = {**deposit, "kind": "withdraw", "amount": -199999.0, "fee": 1.0}
    shown = visible_text(ledger_line(withdraw, None) or "")
    assert shown == "Withdrawal 199999.0 USDC (fee 1.0) · 0xabab…abab"
    liquidation = {**deposit, "kind": "liquidation", "amount": 713779.9733,
                   "raw": {"type": "liquidation", "liquidatedPositions": [
                       {"coin": "TRUMP", "szi": "-12511.7"}]}}  # fmt: skip
    shown = visible_text(ledger_line(liquidation, "x") or "")
    assert shown == "⚠️ Liquidated: TRUMP -12511.7 · notional 713779.9733 USDC · x"
    assert ledger_line({**deposit, "kind": "funding"}, None) is None
    assert ledger_line({**deposit, "kind": "transfer"}, None) is None


def test_fill_line_sold_without_label_shows_the_short_wallet_and_no_zero_pnl() -> None:
    shown = visible_text(fill_line({**FILL, "side": "sell", "closedPnl": 0}, None))
    assert shown.startswith("Sold 0.00001 BTC @ 43250.5 · fee")
    assert "PnL" not in shown and shown.endswith("0xabab…abab")


@pytest.mark.parametrize("label", ["</b>", "<i>", "&amp;", "a & b", "<script>x</script>", "*_`["])
def test_hostile_labels_still_make_valid_html(label: str) -> None:
    assert visible_text(fill_line(FILL, label)).endswith(label)


def test_the_fake_refuses_what_telegram_refuses() -> None:
    for bad in ("<b>x", "a < b", "x & y", "<script>", "</b>"):
        with pytest.raises(BadHtml):
            visible_text(bad)


def test_pack_keeps_order_and_stays_under_the_limit() -> None:
    lines = [f"line {n} " + "x" * 90 for n in range(200)]
    messages = pack(lines)
    assert all(len(m) <= MAX_MESSAGE for m in messages)
    assert "\n".join(messages).split("\n") == lines
    assert len(messages) == 5  # 200 lines of ~100 chars: 40 a message


def test_take_first_is_what_fits_one_message() -> None:
    lines = ["a" * 2000, "b" * 2000, "c" * 100]
    assert take_first(lines) == 2  # 2000 + 1 + 2000 fits, + 101 does not
    assert take_first(["x" * 5000]) == 1  # never zero: an overlong line goes alone
    assert take_first([]) == 0

"""What a chat typed -> a command, or a clear reason why not."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hlgateway.notifier import commands as c
from hlgateway.notifier.alerts import Direction

W = "0x" + "Ab" * 20


def test_watch_with_label_keeps_the_label_as_typed() -> None:
    assert c.parse(f"/watch {W} <b>_*[x]  two") == c.Watch(W.lower(), "<b>_*[x]  two")
    assert c.parse(f"/watch {W}") == c.Watch(W.lower(), None)


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/watch", "Usage: /watch"),
        ("/watch 0x123", "Not a wallet address: 0x123"),
        ("/watch " + W + " " + "x" * 65, "Label too long"),
        ("/unwatch nope", "Not a wallet address"),
        ("/alert BTC sideways 5", "Usage: /alert"),
        ("/alert BTC above -5", "Not a price"),
        ("/alert BTC above nan", "Not a price"),
        ("/alert BTC above abc", "Not a price"),
        ("/alert <b> above 5", "Unknown symbol"),
        ("/delalert 0", "Usage: /delalert"),
        ("/mute 0", "Usage: /mute"),
        ("/mute 99999999", "Usage: /mute"),
        ("/orders maybe", "Usage: /orders"),
        ("/ledger", "Usage: /ledger"),
        ("/ledger yes", "Usage: /ledger"),
        ("/frobnicate", "Unknown command /frobnicate"),
    ],
)
def test_bad_input_gets_a_clear_reply(text: str, reply: str) -> None:
    parsed = c.parse(text)
    assert isinstance(parsed, c.BadCommand)
    assert parsed.reply.startswith(reply)


def test_the_rest() -> None:
    assert c.parse("/alert btc ABOVE 65000.5") == c.Alert(
        "BTC", Direction.ABOVE, Decimal("65000.5")
    )
    assert c.parse("/delalert 2") == c.DelAlert(2)
    assert c.parse("/mute 30") == c.Mute(30)
    assert c.parse("/orders ON") == c.Orders(True)
    assert c.parse("/ledger on") == c.Ledger(True) and c.parse("/ledger Off") == c.Ledger(False)
    assert "/ledger on|off" in c.HELP
    assert c.parse("hello") == c.NotACommand()
    assert c.parse("/help@hl_test_bot", "hl_test_bot") == c.Help()
    assert c.parse("/help@other_bot", "hl_test_bot") == c.NotACommand()

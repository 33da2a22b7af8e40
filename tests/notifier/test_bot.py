"""The notifier against the fake Bot API, a real gateway process and the simulator."""

from __future__ import annotations

from typing import Any

from hlgateway.notifier.service import Notifier
from hlgateway.simulator import Simulator
from tests.helpers import eventually
from tests.notifier.conftest import NotifierFactory
from tests.notifier.fakebot import FakeBotApi

WALLET = "0x" + "d1" * 20
CHAT = 1001


def fill_prefix(f: dict[str, Any]) -> str:
    verb = "Bought" if f["side"] == "B" else "Sold"
    return f"{verb} {f['sz']} {f['coin']} @ {f['px']}"


def fill_lines(bot: FakeBotApi, chat: int) -> list[str]:
    return [
        line
        for text in bot.texts(chat)
        for line in text.split("\n")
        if line.startswith(("Bought ", "Sold "))
    ]


async def watch_since(notifier: Notifier, chat: int, wallet: str) -> int:
    async with notifier.store.db.transaction() as tx:
        value = await tx.scalar(
            "SELECT since_ms FROM watches WHERE chat_id = ? AND wallet = ?", (chat, wallet)
        )
    assert value is not None
    return int(value)


async def test_watch_delivers_every_ledger_fill_once_in_order(
    make_notifier: NotifierFactory, fakebot: FakeBotApi, sim: Simulator, database_url: str
) -> None:
    notifier = make_notifier(database_url)
    await notifier.start()
    fakebot.say(CHAT, "/start")
    fakebot.say(CHAT, f"/watch {WALLET} <b>_*[x]")
    await eventually(lambda: any("Watching" in t for t in fakebot.texts(CHAT)), 10)
    since = await watch_since(notifier, CHAT, WALLET)
    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= 8, 30)
    # Everything the simulator made up to a cut-off, after the watch, came exactly once.
    cutoff = sim.ledger(WALLET)["fills"][-1]["time"]
    expected = [f for f in sim.ledger(WALLET)["fills"] if since <= f["time"] <= cutoff]
    expected.sort(key=lambda f: (f["time"], f["tid"]))

    def got() -> list[str]:
        return fill_lines(fakebot, CHAT)[: len(expected)]

    await eventually(lambda: len(fill_lines(fakebot, CHAT)) >= len(expected), 20)
    lines = got()
    assert [line.split(" · ")[0] for line in lines] == [fill_prefix(f) for f in expected]
    assert all(line.endswith("<b>_*[x]") for line in lines)  # the label, shown as typed
    # And nothing after the cut-off came twice or out of order either.
    await notifier.stop()
    everything = sorted(
        (f for f in sim.ledger(WALLET)["fills"] if f["time"] >= since),
        key=lambda f: (f["time"], f["tid"]),
    )
    delivered = [line.split(" · ")[0] for line in fill_lines(fakebot, CHAT)]
    assert delivered == [fill_prefix(f) for f in everything[: len(delivered)]]
    assert len(expected) >= 8
    assert not fakebot.violations
    assert all(s.status == 200 for s in fakebot.sent)  # the HTML always parsed
    print(len(delivered), "fills in", len(fakebot.delivered(CHAT)), "messages")

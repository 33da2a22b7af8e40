"""What the feed makes of the client's events (no socket: the handlers are fed directly)."""

from __future__ import annotations

from hlgateway.client import Position, Resync
from hlgateway.client.messages import DataMessage, Subscribed, Welcome
from hlgateway.notifier.events import Fills, Gap, OrderEvent
from hlgateway.notifier.feed import GatewayFeed

W = "0x" + "ab" * 20
PARAMS = {"userId": "root", "wallet": W}


def drain(feed: GatewayFeed) -> list[object]:
    out: list[object] = []
    while (event := feed.inbox.take()) is not None:
        out.append(event)
    return out


async def test_a_fresh_subscribe_is_a_gap_a_recovered_one_is_not() -> None:
    feed = GatewayFeed("ws://127.0.0.1:9/ws", "t", "root")
    feed.watch(W)
    feed._on_subscribed(Subscribed(channel="user_fills", params=PARAMS, offset=3, epoch="e"))
    feed._on_subscribed(
        Subscribed(channel="user_fills", params=PARAMS, offset=3, epoch="e", recovered=True)
    )
    feed._on_subscribed(Subscribed(channel="account_updates", params=PARAMS))
    feed._on_resync(Resync("user_orders", PARAMS, "not recovered", None, None))
    other = {"userId": "root", "wallet": "0x" + "cd" * 20}  # not watched: nothing
    feed._on_resync(Resync("user_fills", other, "not recovered", None, None))
    assert drain(feed) == [Gap(W, "user_fills"), Gap(W, "user_orders")]
    await feed.close()


async def test_data_carries_its_position() -> None:
    feed = GatewayFeed("ws://127.0.0.1:9/ws", "t", "root")
    feed.watch(W)
    fill = {"id": 1, "timestamp": 5}
    feed._on_data(
        DataMessage(
            channel="user_fills", params=PARAMS, data={"fills": [fill]}, offset=7, epoch="e"
        )
    )
    feed._on_data(
        DataMessage(
            channel="user_orders", params=PARAMS, data={"action": "created"}, offset=2, epoch="e"
        )
    )
    assert drain(feed) == [
        Fills(W, [fill], Position(7, "e")),
        OrderEvent(W, {"action": "created"}, Position(2, "e")),
    ]
    await feed.close()


async def test_watch_resumes_lossless_streams_from_stored_positions() -> None:
    feed = GatewayFeed("ws://127.0.0.1:9/ws", "t", "root")
    feed.watch(W, {"user_fills": Position(7, "e"), "user_orders": None})
    client = feed.clients[0]
    entries = {e.channel: e for e in client._registry}
    assert entries["user_fills"].cursor.since() == Position(7, "e")
    assert entries["user_orders"].cursor.since() is None
    assert set(entries) == {"user_fills", "user_orders", "account_updates"}
    await feed.close()


async def test_the_info_api_is_learned_from_the_welcome() -> None:
    feed = GatewayFeed("ws://127.0.0.1:9/ws", "t", "root")
    feed._on_welcome(Welcome(clientId="c", user={"id": "root"}))
    assert feed.info_url is None  # an older gateway does not say
    feed._on_welcome(Welcome(clientId="c", user={}, infoUrl="https://api.example/info"))
    assert feed.info_url == "https://api.example/info"
    await feed.close()

"""Recovery on real sockets: a client that drops comes back with `since` and misses nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import (
    ALICE_WALLET,
    Client,
    GatewayServer,
    admin_token,
    alice_token,
    eventually,
    make_settings,
)

FILLS = {"type": "subscribe", "channel": "user_fills", "params": {"userId": "alice"}}
ORDERS = {"type": "subscribe", "channel": "user_orders", "params": {"userId": "alice"}}


def data(seen: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [m for m in seen if m["type"] == "data" and m["channel"] == channel]


def fill_ids(messages: list[dict[str, Any]]) -> list[int]:
    return [f["id"] for m in messages for f in m["data"]["fills"] if f["wallet"] == ALICE_WALLET]


def since(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"offset": messages[-1]["offset"], "epoch": messages[-1]["epoch"]}


async def test_client_away_20s_gets_every_fill_once_in_order(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    try:
        first = await Client.connect(srv.ws, alice_token())
        await first.recv()
        assert (await first.request(dict(FILLS)))["offset"] == 0
        await first.request(dict(ORDERS))
        # Two fills and an order transition (the first fills may come at once, from the
        # snapshot's events since the stream's start).
        await first.recv_until(
            lambda m: (
                len(fill_ids(data(first.seen, "user_fills"))) >= 2
                and bool(data(first.seen, "user_orders"))
            )
        )
        await first.close()
        before = data(first.seen, "user_fills")
        orders_before = data(first.seen, "user_orders")
        gone_at = fill_ids(before)[-1]

        # Away for 20 s while the wallet keeps trading.
        away_until = time.monotonic() + 20
        await eventually(lambda: time.monotonic() > away_until, 25)
        ledger = [f["tid"] for f in simulator.ledger(ALICE_WALLET)["fills"]]
        assert len(ledger) - ledger.index(gone_at) > 5  # fills happened meanwhile

        back = await Client.connect(srv.ws, alice_token())
        await back.recv()
        reply = await back.request({**FILLS, "since": since(before)})
        assert reply["recovered"] is True and reply["epoch"] == before[-1]["epoch"]
        head = reply["offset"]
        orders_reply = await back.request({**ORDERS, "since": since(orders_before)})
        assert orders_reply["recovered"] is True
        # The replay, then live data: wait for two live fills past the seam.
        await back.recv_until(
            lambda m: m.get("channel") == "user_fills" and m.get("offset", 0) >= head + 2, 20
        )
        after = data(back.seen, "user_fills")
        got = fill_ids(before) + fill_ids(after)
        start = ledger.index(got[0])
        ledger = [f["tid"] for f in simulator.ledger(ALICE_WALLET)["fills"]]
        assert got == ledger[start : start + len(got)]  # every fill, once, in order
        offsets = [m["offset"] for m in before + after]
        assert offsets == list(range(1, len(offsets) + 1))  # no gap at the seam, no duplicate
        order_offsets = [m["offset"] for m in orders_before + data(back.seen, "user_orders")]
        assert order_offsets == list(range(1, len(order_offsets) + 1))
        await back.close()
    finally:
        await srv.stop()


async def test_unrecoverable_positions_get_live_data_only(simulator: Simulator) -> None:
    # Two messages of history, kept for a tenth of a second.
    settings = make_settings(history_size=2, history_max=2, history_ttl=0.1)
    srv = GatewayServer(sim_endpoint(simulator), settings)
    await srv.start()
    try:
        client = await Client.connect(srv.ws, alice_token())
        await client.recv()
        await client.request(dict(FILLS))
        await client.recv_until(lambda m: len(data(client.seen, "user_fills")) >= 4, 20)
        fills = data(client.seen, "user_fills")
        old = {"offset": fills[0]["offset"], "epoch": fills[0]["epoch"]}
        other = await Client.connect(srv.ws, alice_token())
        await other.recv()
        for position in (old, {"offset": fills[-1]["offset"], "epoch": "another"}):
            reply = await other.request({**FILLS, "since": position})
            assert reply["recovered"] is False and reply["epoch"] == fills[0]["epoch"]
            await other.request({"type": "unsubscribe", "channel": "user_fills", "params": {}})
        replayed = [m for m in other.seen if m["type"] == "data"]
        assert all(m["offset"] > fills[-1]["offset"] - 1 for m in replayed)  # live only
        await client.close()
        await other.close()
    finally:
        await srv.stop()


async def test_a_restarted_memory_gateway_has_new_epochs(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    await client.recv()
    await client.request(dict(FILLS))
    await client.data("user_fills", timeout=15)
    position = since(data(client.seen, "user_fills"))
    await client.close()
    port = srv.port
    await srv.stop()
    again = GatewayServer(sim_endpoint(simulator), make_settings())
    again.port = port
    await again.start()
    try:
        client = await Client.connect(again.ws, alice_token())
        await client.recv()
        reply = await client.request({**FILLS, "since": position})
        assert reply["recovered"] is False and reply["epoch"] != position["epoch"]
        await client.close()
    finally:
        await again.stop()


async def test_a_client_closed_with_4008_recovers_everything(simulator: Simulator) -> None:
    settings = make_settings(outbox_max_bytes=256 * 1024, socket_buffer_bytes=64 * 1024)
    srv = GatewayServer(sim_endpoint(simulator), settings)
    await srv.start()
    try:
        client = await Client.connect(srv.ws, alice_token())
        await client.recv()
        joined = await client.request({"type": "join_room", "room": "flood"})
        assert joined["offset"] == 0
        blob = "x" * 20_000
        total = 900  # within the history's 1,000 messages; ~18 MB, far over every buffer
        # The client reads nothing while the room floods.
        for n in range(1, total + 1):
            srv.gateway.publish_to_room("flood", {"n": n, "blob": blob})
            if n % 50 == 0:
                await asyncio.sleep(0)
        code, _ = await client.closed(timeout=30)
        assert code == 4008
        assert srv.gateway.outbox_stats.slow_consumers >= 1
        received = [m for m in client.seen if m["type"] == "data"]
        await client.close()

        back = await Client.connect(srv.ws, alice_token())
        await back.recv()
        where = since(received) if received else {"offset": 0, "epoch": joined["epoch"]}
        reply = await back.request({"type": "join_room", "room": "flood", "since": where})
        assert reply["recovered"] is True and reply["offset"] == total
        # The ~17 MB replay comes at the client's pace, through the bounded outbox.
        await back.recv_until(lambda m: m.get("offset") == total, 60)
        replayed = [m for m in back.seen if m["type"] == "data"]
        numbers = [m["data"]["n"] for m in received + replayed]
        assert numbers == list(range(1, total + 1))
        await back.close()
    finally:
        await srv.stop()


async def test_admin_reads_a_user_by_id_alone(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    try:
        admin = await Client.connect(srv.ws, admin_token())
        await admin.recv()
        refused = await admin.request(dict(FILLS))
        assert refused["code"] == "INVALID_PARAMS" and "alice" in refused["message"]
        alice = await Client.connect(srv.ws, alice_token())  # now the gateway knows her wallets
        await alice.recv()
        reply = await admin.request(dict(FILLS))
        assert reply["type"] == "subscribed" and reply["params"] == {"userId": "alice"}
        fill = await admin.data("user_fills", timeout=15)
        assert fill["data"]["fills"][0]["wallet"] in srv.gateway.directory.wallets_of("alice")
        await alice.close()
        await admin.close()
    finally:
        await srv.stop()


async def test_a_stream_unsubscribed_and_recovered_later_misses_nothing_meanwhile(
    simulator: Simulator,
) -> None:
    """An unsubscribe ends the feed at once; the stream's history stays for the window.
    A client that comes back with `since` then gets `recovered: true` and the fills of
    the time no feed ran too: the feed starts again where the wallet's stream had been
    delivered to, not at the resubscribe."""
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    client = await Client.connect(srv.ws, alice_token())
    unsubscribe = {"type": "unsubscribe", "channel": "user_fills", "params": {"userId": "alice"}}
    try:
        await client.recv()
        await client.request(dict(FILLS))
        await client.recv_until(lambda m: len(fill_ids(data(client.seen, "user_fills"))) >= 1)
        await client.request(dict(unsubscribe))
        before = data(client.seen, "user_fills")
        first = before[0]["data"]["fills"][0]["timestamp"]
        stopped = time.time() * 1000

        def fills_since(ms: float) -> list[int]:
            fills = simulator.ledger(ALICE_WALLET)["fills"]
            return [f["tid"] for f in fills if f["time"] > ms]

        await eventually(lambda: bool(fills_since(stopped + 200)), 20)
        client.seen.clear()
        reply = await client.request({**FILLS, "since": since(before)})
        assert reply["recovered"] is True and reply["epoch"] == before[-1]["epoch"]
        expected = fills_since(first - 1)  # from the first delivered, through the gap
        got: list[int] = []

        def received() -> bool:
            got[:] = fill_ids(before) + fill_ids(data(client.seen, "user_fills"))
            return set(expected) <= set(got)

        await client.recv_until(lambda m: received())
        assert [tid for tid in got if tid in expected] == expected  # each once, in order
        assert len(got) == len(set(got))
    finally:
        await client.close()
        await srv.stop()

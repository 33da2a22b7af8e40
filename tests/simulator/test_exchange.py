"""The simulator's ``/exchange`` over HTTP and WebSocket ``post``: refusals and streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import eth_account
import pytest
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_agent,
    sign_l1_action,
    sign_usd_transfer_action,
    sign_withdraw_from_bridge_action,
)

from hlgateway.simulator import Simulator

from .conftest import FAST, channel, recv_until, subscribe

Body = dict[str, Any]
ETH = 1
NO_SIGNATURE = {"r": "0x1", "s": "0x1", "v": 27}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    # The wall clock (start_ms None): nonces are checked against it, as on Hyperliquid.
    simulator = Simulator(FAST)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def trader(sim: Simulator) -> LocalAccount:
    account: LocalAccount = eth_account.Account.from_key(sim.local_account.key)
    return account


class Nonce:
    """Milliseconds, never twice (the SDK's way, made unique)."""

    last = 0

    @classmethod
    def next(cls) -> int:
        cls.last = max(cls.last + 1, int(time.time() * 1000))
        return cls.last


def order_action(px: float, sz: float = 0.2, *, buy: bool = True, asset: int = ETH) -> Body:
    wire = order_request_to_order_wire(
        {
            "coin": "ETH",
            "is_buy": buy,
            "sz": sz,
            "limit_px": px,
            "order_type": {"limit": {"tif": "Gtc"}},
            "reduce_only": False,
        },
        asset,
    )
    action: Body = order_wires_to_order_action([wire])
    return action


def signed(account: LocalAccount, action: Body, nonce: int | None = None, **extra: Any) -> Body:
    nonce = Nonce.next() if nonce is None else nonce
    expires = extra.get("expiresAfter")
    signature = sign_l1_action(account, action, None, nonce, expires, False)
    return {"action": action, "nonce": nonce, "signature": signature, **extra}


async def post(session: aiohttp.ClientSession, sim: Simulator, body: Any) -> tuple[int, Any]:
    async with session.post(sim.http_url + "/exchange", json=body) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def ok(session: aiohttp.ClientSession, sim: Simulator, body: Any) -> Any:
    status, answer = await post(session, sim, body)
    assert status == 200 and answer["status"] == "ok", answer
    return answer


async def far_bid(session: aiohttp.ClientSession, sim: Simulator) -> float:
    async with session.post(sim.http_url + "/info", json={"type": "allMids"}) as resp:
        mids = await resp.json()
    return round(float(mids["ETH"]) * 0.9, 1)


async def open_orders(session: aiohttp.ClientSession, sim: Simulator, user: str) -> list[Any]:
    async with session.post(
        sim.http_url + "/info", json={"type": "openOrders", "user": user}
    ) as resp:
        result: list[Any] = await resp.json()
        return result


async def test_a_signed_order_rests_and_its_nonce_is_spent(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    px = await far_bid(session, sim)
    body = signed(trader, order_action(px))
    answer = await ok(session, sim, body)
    (status,) = answer["response"]["data"]["statuses"]
    assert set(status) == {"resting"}
    assert [o["oid"] for o in await open_orders(session, sim, trader.address)] == [
        status["resting"]["oid"]
    ]
    # The same request again: its nonce is spent, nothing else happens.
    status_code, replay = await post(session, sim, body)
    assert (status_code, replay) == (
        200,
        {"status": "err", "response": f"Invalid nonce: duplicate nonce {body['nonce']}"},
    )
    assert len(await open_orders(session, sim, trader.address)) == 1


async def test_refusals_change_nothing(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    px = await far_bid(session, sim)
    stranger = eth_account.Account.create()
    nonce = Nonce.next()
    # A wrong signature (another key) recovers a stranger.
    _, answer = await post(session, sim, signed(stranger, order_action(px), nonce))
    assert answer == {
        "status": "err",
        "response": f"User or API Wallet {stranger.address.lower()} does not exist.",
    }
    # An unknown asset is refused before the nonce counts as used ...
    _, answer = await post(session, sim, signed(trader, order_action(px, asset=999), nonce))
    assert answer == {"status": "err", "response": "Unknown asset: 999 is not listed"}
    # ... and a nonce too old for Hyperliquid's window likewise.
    stale = nonce - 3 * 86_400_000
    _, answer = await post(session, sim, signed(trader, order_action(px), stale))
    assert answer == {"status": "err", "response": "Invalid nonce: nonce too low"}
    # An expired action.
    expired = signed(trader, order_action(px), Nonce.next(), expiresAfter=nonce - 1000)
    _, answer = await post(session, sim, expired)
    assert answer == {"status": "err", "response": "Action already expired"}
    assert await open_orders(session, sim, trader.address) == []
    # The nonce of the refused requests is still good.
    await ok(session, sim, signed(trader, order_action(px), nonce))


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"action": {"type": "order"}, "nonce": 1}, "missing field `signature`"),
        (
            {"action": {"type": "noop"}, "nonce": -1, "signature": NO_SIGNATURE},
            "`nonce`",
        ),
        (
            {"action": {"type": "noop"}, "nonce": 1, "signature": {"r": "0x1", "s": "0x1"}},
            "signature",
        ),
        (
            {"action": {"type": "warp"}, "nonce": 1, "signature": NO_SIGNATURE},
            "unknown variant `warp`",
        ),
        ([1, 2], "expected an object"),
    ],
)
async def test_malformed_bodies_get_422(
    sim: Simulator, session: aiohttp.ClientSession, body: Any, detail: str
) -> None:
    status, text = await post(session, sim, body)
    assert status == 422
    assert text.startswith("Failed to deserialize the JSON body into the target type: ")
    assert detail in text


async def test_not_json_gets_400(sim: Simulator, session: aiohttp.ClientSession) -> None:
    async with session.post(sim.http_url + "/exchange", data=b"{nope") as resp:
        assert resp.status == 400


async def test_unsupported_actions_and_vaults_are_answered_clearly(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    referrer = {"type": "setReferrer", "code": "SIM"}
    _, answer = await post(session, sim, signed(trader, referrer))
    assert answer["response"] == "The simulator does not support setReferrer actions"
    nonce = Nonce.next()
    vault = "0x" + "77" * 20
    body = {
        "action": {"type": "noop"},
        "nonce": nonce,
        "signature": sign_l1_action(trader, {"type": "noop"}, vault, nonce, None, False),
        "vaultAddress": vault,
    }
    _, answer = await post(session, sim, body)
    assert answer["status"] == "err" and "Vault not registered" in answer["response"]


async def test_agents_act_for_the_account_that_approved_them(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    px = await far_bid(session, sim)

    async def approve(name: str) -> LocalAccount:
        agent: LocalAccount = eth_account.Account.create()
        nonce = Nonce.next()
        action: Body = {
            "type": "approveAgent",
            "agentAddress": agent.address,
            "agentName": name,
            "nonce": nonce,
        }
        signature = sign_agent(trader, action, False)
        if not name:
            del action["agentName"]
        await ok(session, sim, {"action": action, "nonce": nonce, "signature": signature})
        return agent

    first = await approve("")
    await ok(session, sim, signed(first, order_action(px)))
    (row,) = await open_orders(session, sim, trader.address)
    # A new unnamed agent retires the first; a named one lives beside it.
    second = await approve("")
    named = await approve("desk")
    _, answer = await post(session, sim, signed(first, order_action(px)))
    assert answer["response"] == f"User or API Wallet {first.address.lower()} does not exist."
    await ok(session, sim, signed(second, order_action(px)))
    await ok(session, sim, signed(named, order_action(px)))
    assert len(await open_orders(session, sim, trader.address)) == 3
    assert sim.world.exchange.agents_of(trader.address) == {
        second.address.lower(): "",
        named.address.lower(): "desk",
    }
    # Whose agent an address is, as the info API says it (userRole, extraAgents).
    role = await info(session, sim, {"type": "userRole", "user": second.address})
    assert role == {"role": "agent", "data": {"user": trader.address.lower()}}
    assert await info(session, sim, {"type": "userRole", "user": first.address}) == {
        "role": "missing"  # retired
    }
    assert await info(session, sim, {"type": "userRole", "user": trader.address}) == {
        "role": "user"
    }
    (extra,) = await info(session, sim, {"type": "extraAgents", "user": trader.address})
    assert (extra["name"], extra["address"]) == ("desk", named.address.lower())
    # An agent signs trading actions only: a transfer it signs is a stranger's.
    nonce = Nonce.next()
    send: Body = {"destination": trader.address, "amount": "1", "time": nonce, "type": "usdSend"}
    signature = sign_usd_transfer_action(second, send, False)
    _, answer = await post(session, sim, {"action": send, "nonce": nonce, "signature": signature})
    assert answer["response"] == f"User or API Wallet {second.address.lower()} does not exist."
    assert row["oid"]


async def info(session: aiohttp.ClientSession, sim: Simulator, body: Body) -> Any:
    async with session.post(sim.http_url + "/info", json=body) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_transfers_move_simulated_dollars(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    friend = "0x" + "f1" * 20

    async def withdrawable(user: str) -> float:
        async with session.post(
            sim.http_url + "/info", json={"type": "clearinghouseState", "user": user}
        ) as resp:
            return float((await resp.json())["withdrawable"])

    before = await withdrawable(trader.address)
    nonce = Nonce.next()
    send: Body = {"destination": friend, "amount": "250", "time": nonce, "type": "usdSend"}
    signature = sign_usd_transfer_action(trader, send, False)
    await ok(session, sim, {"action": send, "nonce": nonce, "signature": signature})
    nonce = Nonce.next()
    out: Body = {"destination": friend, "amount": "100", "time": nonce, "type": "withdraw3"}
    signature = sign_withdraw_from_bridge_action(trader, out, False)
    await ok(session, sim, {"action": out, "nonce": nonce, "signature": signature})
    assert await withdrawable(trader.address) == pytest.approx(before - 350)
    assert await withdrawable(friend) == pytest.approx(250)


async def test_ws_post_answers_then_streams_the_order(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    px = await far_bid(session, sim)
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "orderUpdates", "user": trader.address})
        body = signed(trader, order_action(px))
        request = {"type": "action", "payload": body}
        await ws.send_json({"method": "post", "id": 41, "request": request})
        answer, before = await recv_until(ws, channel("post"))
        assert before == []  # nothing of the order overtakes its answer
        assert answer["data"]["id"] == 41
        response = answer["data"]["response"]
        assert response["type"] == "action" and response["payload"]["status"] == "ok"
        oid = response["payload"]["response"]["data"]["statuses"][0]["resting"]["oid"]
        update, _ = await recv_until(ws, channel("orderUpdates"))
        assert [(u["order"]["oid"], u["status"]) for u in update["data"]] == [(oid, "open")]
        # A malformed action over WS: Hyperliquid's error text as the payload.
        await ws.send_json(
            {"method": "post", "id": 42, "request": {"type": "action", "payload": {"nonce": 1}}}
        )
        answer, _ = await recv_until(ws, channel("post"))
        assert answer["data"] == {
            "id": 42,
            "response": {
                "type": "error",
                "payload": "Failed to deserialize the JSON body into the target type: "
                "missing field `action`",
            },
        }
    stats = sim.stats()["actions"]
    assert stats == {"ok": 1, "err": 0, "malformed": 1}


async def test_modify_and_schedule_cancel_answer_as_hyperliquid_does(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    px = await far_bid(session, sim)
    placed = await ok(session, sim, signed(trader, order_action(px)))
    oid = placed["response"]["data"]["statuses"][0]["resting"]["oid"]
    wire = order_action(px - 1)["orders"][0]
    # `modify` (one order) answers "default"; an unknown oid is an error of the action.
    modified = await ok(session, sim, signed(trader, {"type": "modify", "oid": oid, "order": wire}))
    assert modified == {"status": "ok", "response": {"type": "default"}}
    _, answer = await post(
        session, sim, signed(trader, {"type": "modify", "oid": oid, "order": wire})
    )
    assert answer == {"status": "err", "response": "Cannot modify canceled or filled order"}
    (row,) = await open_orders(session, sim, trader.address)
    assert row["oid"] != oid and row["limitPx"] == f"{px - 1:.1f}"
    # The dead man's switch: at least 5 s ahead, or unset.
    now = Nonce.next()
    _, early = await post(
        session, sim, signed(trader, {"type": "scheduleCancel", "time": now + 1000})
    )
    assert early["status"] == "err" and "at least 5 seconds" in early["response"]
    scheduled = await ok(
        session, sim, signed(trader, {"type": "scheduleCancel", "time": now + 60_000})
    )
    assert scheduled == {"status": "ok", "response": {"type": "default"}}
    assert await ok(session, sim, signed(trader, {"type": "scheduleCancel"})) == scheduled


async def test_twap_streams_its_history_and_slice_fills(
    sim: Simulator, session: aiohttp.ClientSession, trader: LocalAccount
) -> None:
    user = trader.address.lower()
    async with session.ws_connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "userTwapSliceFills", "user": trader.address})
        snapshot, _ = await recv_until(ws, channel("userTwapSliceFills"))
        assert snapshot["data"] == {"isSnapshot": True, "user": user, "twapSliceFills": []}
        await subscribe(ws, {"type": "userTwapHistory", "user": trader.address})
        snapshot, _ = await recv_until(ws, channel("userTwapHistory"))
        assert snapshot["data"] == {"isSnapshot": True, "user": user, "history": []}
        twap = {
            "type": "twapOrder",
            "twap": {"a": ETH, "b": True, "s": "1", "r": False, "m": 30, "t": False},
        }
        answer = await ok(session, sim, signed(trader, twap))
        twap_id = answer["response"]["data"]["status"]["running"]["twapId"]
        started, _ = await recv_until(ws, channel("userTwapHistory"))
        (row,) = started["data"]["history"]
        assert (row["twapId"], row["status"], row["state"]["sz"]) == (
            twap_id,
            {"status": "activated"},
            "1.0",
        )
        # The first slice runs at the next tick: 1 ETH over 30 minutes, 60 slices.
        sliced, _ = await recv_until(ws, channel("userTwapSliceFills"))
        fills = sliced["data"]["twapSliceFills"]
        assert {f["twapId"] for f in fills} == {twap_id}
        assert sum(float(f["fill"]["sz"]) for f in fills) == pytest.approx(1 / 60, abs=1e-4)
        cancel = {"type": "twapCancel", "a": ETH, "t": twap_id}
        answer = await ok(session, sim, signed(trader, cancel))
        assert answer["response"] == {"type": "twapCancel", "data": {"status": "success"}}
        ended, _ = await recv_until(ws, channel("userTwapHistory"))
        (row,) = ended["data"]["history"]
        assert row["twapId"] == twap_id and row["status"] == {"status": "terminated"}
    history = await info(session, sim, {"type": "twapHistory", "user": trader.address})
    assert [h["status"]["status"] for h in history] == ["terminated"]

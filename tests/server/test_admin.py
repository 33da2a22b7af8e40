"""The admin overview (admin tokens only), guest tokens, and the dashboard's files."""

from __future__ import annotations

from typing import Any

import aiohttp

from hlgateway.simulator import Simulator
from tests.conftest import sim_endpoint
from tests.helpers import (
    Client,
    GatewayServer,
    admin_token,
    alice_token,
    make_settings,
)


async def get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_the_overview_is_for_admin_tokens_only(server: GatewayServer) -> None:
    url = f"{server.http}/api/admin/overview"
    assert (await get(url))[0] == 401
    assert (await get(url, "not-a-token"))[0] == 401
    assert (await get(url, alice_token()))[0] == 403
    client = await Client.connect(server.ws, alice_token())
    try:
        welcome = await client.recv_type("welcome")
        await client.request({"type": "subscribe", "channel": "prices"})
        await client.data("prices")
        status, body = await get(url, admin_token())
    finally:
        await client.close()
    assert status == 200
    assert body["totals"] == {"clients": 1, "subscriptions": 1, "topics": 1}
    assert body["clients"] == [
        {
            "clientId": welcome["clientId"],
            "user": "alice",
            "role": None,
            "ip": "127.0.0.1",
            "subscriptions": 1,
        }
    ]
    assert body["topics"] == [{"channel": "prices", "params": {}, "subscribers": 1}]
    assert body["counters"]["messagesOut"]["prices"] >= 1
    assert body["upstream"]["links"] and "limits" in body["upstream"]
    assert body["limits"]["maxSubscriptions"] == server.gateway.settings.max_subscriptions


async def test_guest_tokens_read_market_data_and_can_be_turned_off(simulator: Simulator) -> None:
    for enabled in (True, False):
        srv = GatewayServer(sim_endpoint(simulator), make_settings(dashboard_guest=enabled))
        await srv.start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{srv.http}/api/guest-token") as resp,
            ):
                assert resp.status == (200 if enabled else 404)
                body = await resp.json() if enabled else None
            if body is not None:
                principal = srv.gateway.verifier.verify(body["token"])
                assert principal.user_id.startswith("guest-") and not principal.wallets
                assert principal.role is None and body["expiresAt"] > 0
        finally:
            await srv.stop()


async def test_a_guest_who_shows_its_token_keeps_its_id(server: GatewayServer) -> None:
    url = f"{server.http}/api/guest-token"
    verify = server.gateway.verifier.verify

    async def post(token: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as http, http.post(url, headers=headers) as resp:
            assert resp.status == 200
            fresh: str = (await resp.json())["token"]
            return fresh

    first = await post()
    again = await post(first)
    assert verify(again).user_id == verify(first).user_id
    # Anything else is a new guest: no token, a user's token, a bad one.
    for shown in (None, alice_token(), "not-a-token", first + "x"):
        other = await post(shown)
        assert verify(other).user_id.startswith("guest-")
        assert verify(other).user_id != verify(first).user_id

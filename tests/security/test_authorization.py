"""Authorization, proved on real sockets: users x channels x params, refresh, room publishing."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.helpers import (
    ALICE_WALLET,
    ALICE_WALLET_2,
    BOB_WALLET,
    SECRET,
    Client,
    alice_token,
    token,
)
from tests.security.conftest import MakeServer

CAROL_WALLET = "0x" + "c3" * 20  # in no token
USERS: dict[str, dict[str, Any]] = {
    "alice": {"wallets": [ALICE_WALLET, ALICE_WALLET_2]},
    "bob": {"wallets": [BOB_WALLET]},
    "carol": {},  # a token without wallets
    "root": {"role": "admin"},
}
CHANNELS = ("user_orders", "user_fills", "account_updates")


def mixed_case(wallet: str) -> str:
    return "0X" + "".join(c.upper() if i % 2 else c for i, c in enumerate(wallet[2:]))


def cases(user: str) -> list[dict[str, Any]]:
    own = USERS[user].get("wallets", [])
    other = "bob" if user != "bob" else "alice"
    theirs = USERS[other]["wallets"][0]
    out: list[dict[str, Any]] = [
        {"userId": user},
        {"userId": user, "wallet": theirs},  # another user's wallet with one's own userId
        {"userId": user, "wallet": CAROL_WALLET},  # a wallet in nobody's token
        {"userId": user.upper()},  # ids are exact
        {"userId": other},
        {"userId": other, "wallet": theirs},
        {"userId": user, "wallet": "0x1234"},  # malformed
        {"userId": user, "wallet": theirs, "extra": 1},  # unknown params
    ]
    for wallet in own:
        out += [{"userId": user, "wallet": wallet}, {"userId": user, "wallet": mixed_case(wallet)}]
        out.append({"userId": other, "wallet": wallet})  # own wallet, someone else's id
    return out


def expected(user: str, params: dict[str, Any]) -> str:
    """The rule of docs/protocol.md, written out independently of the implementation."""
    if set(params) - {"userId", "wallet"}:
        return "INVALID_PARAMS"
    wallet = params.get("wallet")
    if wallet is not None and not (len(wallet) == 42 and wallet.lower().startswith("0x")):
        return "INVALID_PARAMS"
    admin = USERS[user].get("role") == "admin"
    own = params["userId"] == user
    if not own and not admin:
        return "FORBIDDEN"
    if admin and wallet is not None:
        return "subscribed"  # any user's wallet, named
    if admin and not own:
        # By id alone: the wallets the gateway knows for that user, learnt from the
        # tokens it accepted (every other user connected before root, the last).
        known = USERS.get(params["userId"], {}).get("wallets")
        return "subscribed" if known else "INVALID_PARAMS"
    wallets = [w.lower() for w in USERS[user].get("wallets", [])]
    if wallet is None:
        return "subscribed" if wallets else "FORBIDDEN"
    return "subscribed" if wallet.lower() in wallets else "FORBIDDEN"


async def test_permission_matrix_on_sockets(edge_server: MakeServer) -> None:
    srv = await edge_server(error_limit=10_000, message_rate=0, max_subscriptions=1000)
    hub = srv.gateway.hub
    checked = 0
    for user, claims in USERS.items():
        client = await Client.connect(srv.ws, token(user, **claims))
        assert (await client.recv())["type"] == "welcome"
        for channel in CHANNELS:
            for params in cases(user):
                before = hub.subscription_count
                reply = await client.request(
                    {"type": "subscribe", "channel": channel, "params": params}
                )
                want = expected(user, params)
                got = reply["type"] if reply["type"] == "subscribed" else reply["code"]
                assert got == want, (user, channel, params, reply)
                if want == "subscribed":
                    if "wallet" in params:
                        assert reply["params"]["wallet"] == params["wallet"].lower()
                    await client.request(
                        {"type": "unsubscribe", "channel": channel, "params": params}
                    )
                else:
                    assert reply["channel"] == channel
                    assert hub.subscription_count == before  # a refusal leaves nothing
                checked += 1
        await client.close()
    assert checked >= 100


async def test_data_only_for_wallets_in_the_token(edge_server: MakeServer) -> None:
    srv = await edge_server()
    alice = await Client.connect(srv.ws, alice_token())
    bob = await Client.connect(srv.ws, token("bob", wallets=[BOB_WALLET]))
    for c, user in ((alice, "alice"), (bob, "bob")):
        await c.recv()
        reply = await c.request(
            {"type": "subscribe", "channel": "user_orders", "params": {"userId": user}}
        )
        assert reply["type"] == "subscribed"
    for _ in range(3):
        assert (await alice.data("user_orders"))["data"]["order"]["wallet"] in {
            ALICE_WALLET,
            ALICE_WALLET_2,
        }
        assert (await bob.data("user_orders"))["data"]["order"]["wallet"] == BOB_WALLET
    await alice.close()
    await bob.close()


async def test_expired_token_mid_connection(edge_server: MakeServer) -> None:
    srv = await edge_server()
    lapsing = await Client.connect(srv.ws, alice_token(ttl_seconds=1))
    await lapsing.recv()
    # Refreshes that must not extend it: another user's token, an expired one, a forged one.
    for bad in (
        token("bob", ttl_seconds=600),
        alice_token(ttl_seconds=-1),
        jwt.encode({"id": "alice", "exp": int(time.time()) + 600}, "x" * 40),
    ):
        reply = await lapsing.request({"type": "auth", "token": bad})
        assert reply["code"] == "FORBIDDEN" and bad not in str(reply)
    await lapsing.request({"type": "subscribe", "channel": "prices", "params": {}})
    assert await lapsing.closed(timeout=5) == (4001, "Token expired")
    await lapsing.close()
    assert (await srv.health())["limits"]["connectionsCut"]["credentialsExpired"] == 1


@pytest.mark.parametrize(
    ("claims", "key", "status"),
    [
        ({"id": "bob"}, SECRET, 403),
        ({"id": "bob", "role": "Admin"}, SECRET, 403),  # roles are exact
        ({"id": "bob", "role": "administrator"}, SECRET, 403),
        ({"id": "bob", "role": ["admin"]}, SECRET, 403),
        ({"id": "root", "role": "admin"}, "not-the-secret-not-the-secret-00", 401),
        ({"id": "root", "role": "admin", "exp": 1}, SECRET, 401),
        ({"id": "root", "role": "admin"}, None, 401),  # alg: none
        ({"id": "root", "role": "admin"}, SECRET, 202),
    ],
)
async def test_room_publishing_needs_a_valid_admin_token(
    edge_server: MakeServer, claims: dict[str, Any], key: str | None, status: int
) -> None:
    srv = await edge_server()
    member = await Client.connect(srv.ws, alice_token())
    await member.recv()
    await member.request({"type": "join_room", "room": "desk"})
    bearer = jwt.encode(claims, key or "", algorithm="HS256" if key else "none")
    async with member.session.post(
        f"{srv.http}/api/rooms/desk/publish",
        json={"data": "halt"},
        headers={"Authorization": f"Bearer {bearer}"},
    ) as resp:
        assert resp.status == status
    # There is no publishing over the WebSocket at all.
    reply = await member.request({"type": "publish", "room": "desk", "data": "x"})
    assert reply["code"] == "UNKNOWN_TYPE"
    # The ping reply comes after any room data the publish produced.
    assert (await member.request({"type": "ping"}))["type"] == "pong"
    room_data = [m["data"] for m in member.seen if m["type"] == "data" and m["channel"] == "room"]
    assert room_data == (["halt"] if status == 202 else [])
    await member.close()

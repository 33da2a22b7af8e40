"""Telegram Mini App login on a real gateway: initData in, a token for the chat's wallets out."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest

from hlgateway.notifier.database import open_database
from hlgateway.notifier.repository import Repository
from hlgateway.simulator import Simulator
from hlgateway.telegram.webapp import sign
from tests.conftest import sim_endpoint
from tests.helpers import ALICE_WALLET, SECRET, Client, GatewayServer, make_settings

BOT = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
WATCHER = 279058397  # a private chat: chat id == user id
LONER = 11  # a chat that watches nothing


def init_data(user_id: int = WATCHER, bot: str = BOT, age: float = 5) -> str:
    fields = {
        "auth_date": str(int(time.time() - age)),
        "user": json.dumps({"id": user_id, "first_name": "V", "username": "vlad"}),
    }
    return urlencode({**fields, "hash": sign(fields, bot)})


async def watches(path: Path) -> None:
    repo = Repository(open_database(str(path)))
    await repo.open()
    async with repo.transaction() as t:
        await t.watches.add(WATCHER, ALICE_WALLET, "main", int(time.time() * 1000))
    await repo.close()


@pytest.fixture
async def server(simulator: Simulator, tmp_path: Path) -> AsyncIterator[GatewayServer]:
    db = tmp_path / "notifier.db"
    await watches(db)
    settings = make_settings(telegram_bot_token=BOT, telegram_database=str(db))
    srv = GatewayServer(sim_endpoint(simulator), settings)
    await srv.start()
    yield srv
    await srv.stop()


async def login(srv: GatewayServer, body: Any) -> tuple[int, Any]:
    url = f"{srv.http}/api/telegram/session"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as reply:
        text = await reply.text()
        return reply.status, json.loads(text) if reply.status == 200 else text


async def test_a_watching_chat_gets_a_token_for_its_wallets_only(server: GatewayServer) -> None:
    status, body = await login(server, {"initData": init_data()})
    assert status == 200
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims["id"] == f"tg-{WATCHER}" and claims["wallets"] == [ALICE_WALLET]
    assert "role" not in claims and claims["exp"] - claims["iat"] == 900
    client = await Client.connect(server.ws, body["token"])
    await client.recv()
    reply = await client.request(
        {"type": "subscribe", "channel": "user_fills", "params": {"userId": f"tg-{WATCHER}"}}
    )
    assert reply["type"] == "subscribed"
    fill = await client.data("user_fills", timeout=15)
    assert {f["wallet"] for f in fill["data"]["fills"]} == {ALICE_WALLET}
    other = await client.request(
        {"type": "subscribe", "channel": "user_fills", "params": {"userId": "alice"}}
    )
    assert other["code"] == "FORBIDDEN"
    await client.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"initData": init_data(bot="999:another-bot")}, 401),
        ({"initData": init_data(age=7200)}, 401),
        ({"initData": init_data(user_id=LONER)}, 403),
        ({"init": "x"}, 400),
        ("not an object", 400),
    ],
)
async def test_refusals(server: GatewayServer, body: Any, status: int) -> None:
    assert (await login(server, body))[0] == status


async def test_off_without_a_bot_token(simulator: Simulator) -> None:
    srv = GatewayServer(sim_endpoint(simulator), make_settings())
    await srv.start()
    try:
        assert (await login(srv, {"initData": init_data()}))[0] == 404
    finally:
        await srv.stop()

"""Shared fixtures: a running simulator on 127.0.0.1 with fast test intervals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from hlgateway.simulator import SimConfig, Simulator

FAST = SimConfig(
    seed=7,
    book_interval=0.1,
    order_interval=0.2,
    max_fill_gap=1.0,
    ctx_interval=0.2,
    tick=0.05,
    history=5.0,
)
USER = "0x" + "aB" * 20  # mixed case on purpose: addresses compare case-insensitively
USER_LOWER = USER.lower()
Frame = dict[str, Any]


CONTROL = dataclasses.replace(FAST, control=True)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(FAST)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Frame:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    frame: Frame = json.loads(msg.data)
    return frame


async def recv_until(
    ws: aiohttp.ClientWebSocketResponse,
    predicate: Callable[[Frame], bool],
    timeout: float = 5.0,
) -> tuple[Frame, list[Frame]]:
    """Read frames until one matches; return it and everything read before it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    before: list[Frame] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout}s; saw {before[-5:]}")
        frame = await recv(ws, remaining)
        if predicate(frame):
            return frame, before
        before.append(frame)


def channel(name: str) -> Callable[[Frame], bool]:
    return lambda frame: frame.get("channel") == name


async def subscribe(ws: aiohttp.ClientWebSocketResponse, sub: dict[str, Any]) -> Frame:
    """Subscribe and return the ack (frames before it are not expected)."""
    await ws.send_json({"method": "subscribe", "subscription": sub})
    ack, before = await recv_until(ws, channel("subscriptionResponse"))
    assert before == [] or all(f["channel"] != "error" for f in before), before
    return ack


async def info(session: aiohttp.ClientSession, sim: Simulator, body: Any) -> Any:
    async with session.post(sim.http_url + "/info", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.fixture
async def csim() -> AsyncIterator[Simulator]:
    """A simulator with the control API on."""
    simulator = Simulator(CONTROL)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def control(
    session: aiohttp.ClientSession,
    sim: Simulator,
    method: str,
    op: str,
    body: Any = None,
    *,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Call ``/control/<op>``; return the status and the decoded JSON answer."""
    async with session.request(
        method, f"{sim.http_url}/control/{op}", json=body, params=params
    ) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def ok(
    session: aiohttp.ClientSession, sim: Simulator, method: str, op: str, body: Any = None
) -> Any:
    status, answer = await control(session, sim, method, op, body)
    assert status == 200, answer
    return answer

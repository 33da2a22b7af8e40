"""A reconnect storm under broadcast, over real sockets: a handshake that arrives while
a broadcast is being written is answered between the broadcast's slices, not after
all of them (server/outbox.py FlushScheduler). Counted in loop turns, not timed."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from bench.fuzz.frames import TEXT, frame, handshake
from hlgateway.protocol.channels import room_topic
from hlgateway.server.outbox import FLUSH_SLICE
from tests.helpers import GatewayServer, alice_token, eventually
from tests.server.test_front import raw_connect

ROOM = "storm"
HELD = 16 * FLUSH_SLICE  # subscribers already back: a broadcast to them takes 16 turns


@pytest.fixture
def server(unlimited_server: GatewayServer) -> GatewayServer:
    return unlimited_server


async def test_a_handshake_is_answered_between_the_slices_of_a_broadcast(
    server: GatewayServer,
) -> None:
    gw = server.gateway
    join = frame(TEXT, json.dumps({"type": "join_room", "room": ROOM}).encode())
    held = [await raw_connect(server, then=join) for _ in range(HELD)]
    newcomer = socket.socket()
    try:
        await eventually(lambda: gw.hub.subscriber_count(room_topic(ROOM)) == HELD)
        # A client comes back: its connection and request head wait in the kernel...
        newcomer.connect(("127.0.0.1", server.port))  # the kernel completes it: no accept yet
        newcomer.sendall(handshake(server.port, alice_token()))
        newcomer.setblocking(False)
        # ... as a broadcast to everyone already back begins, in the same loop turn.
        assert gw.publish_to_room(ROOM, {"n": 1}) == HELD
        # Each loop turn from here: is the broadcast still being written, is the newcomer in?
        turns: list[tuple[bool, bool]] = []
        loop = asyncio.get_running_loop()

        def sample() -> None:
            turns.append((gw.flusher.writing, len(gw.connections) > HELD))
            if not (turns[-1][1] and not turns[-1][0]):
                loop.call_soon(sample)

        loop.call_soon(sample)
        await eventually(lambda: bool(turns) and turns[-1][1] and not turns[-1][0])
        writing = [w for w, _ in turns]
        admitted = next(i for i, (_, joined) in enumerate(turns) if joined)
        # The broadcast took several turns (its slices), and the newcomer was admitted
        # while some of them were still to be written: it did not wait for them all.
        assert sum(writing) >= HELD // FLUSH_SLICE - 2
        assert writing[admitted], turns
        answer = await loop.sock_recv(newcomer, 4096)
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        # And every subscriber got the broadcast.
        for reader, _ in held:
            payload = b""
            while b'"n":1' not in payload:
                payload += await asyncio.wait_for(reader.read(65536), 5)
    finally:
        newcomer.close()
        for _, writer in held:
            writer.close()

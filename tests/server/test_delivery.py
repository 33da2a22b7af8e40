"""The delivery loops (server/delivery.py, and the C module when it is built):
every client gets every frame once and in order, on real loopback sockets, on
both event loops, through each path the C loop takes itself or hands back to
Python: an idle socket, a full one, the byte bound and its 4008, a closing
outbox, a reset client, compression, other subscriber types, an error.

`make test` runs this module twice: with the C loops (when built) and with
HLGATEWAY_SPEEDUPS=0. Each scenario returns a trace of what the clients and
the counters saw; `python -m tests.server.test_delivery` prints every trace,
and the last test compares the two implementations' traces.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from hlgateway.hub import Hub
from hlgateway.protocol.channels import Topic
from hlgateway.server import delivery
from hlgateway.server.outbox import FlushScheduler, Outbox, OutboxStats
from hlgateway.websocket.control import close_frame
from hlgateway.websocket.frames import Frame

Trace = dict[str, Any]
TOPIC = Topic("orderbook", b'{"depth":1,"symbol":"BTC"}')
ROOT = Path(__file__).resolve().parents[2]


def payload(i: int, size: int = 200) -> bytes:
    head = f'{{"type":"data","n":{i},"pad":"'.encode()
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


class Peer(asyncio.Protocol):
    """The server's end of one client connection."""

    def __init__(self, accepted: asyncio.Queue[Peer]) -> None:
        self.accepted = accepted
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act as one.
        self.transport = cast(asyncio.Transport, transport)
        self.accepted.put_nowait(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


@dataclass
class Client:
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)

    async def read_at_least(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        while len(self.received) < n:
            chunk = await loop.sock_recv(self.sock, 1 << 16)
            if not chunk:
                break
            self.received += chunk
        return bytes(self.received)

    def drain(self) -> int:
        """Read what has arrived, without waiting; returns how many bytes."""
        total = 0
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                return total
            if not chunk:
                return total
            total += len(chunk)


@dataclass
class Rig:
    hub: Hub
    scheduler: FlushScheduler
    stats: OutboxStats
    peers: list[Peer]
    outboxes: list[Outbox]
    clients: list[Client]

    async def turn(self) -> None:
        """Let the loop turn: the scheduler's flush runs."""
        for _ in range(3):
            await asyncio.sleep(0)

    def close(self) -> None:
        for client in self.clients:
            client.sock.close()
        for peer in self.peers:
            if peer.transport is not None:
                peer.transport.abort()


async def make_rig(
    n: int,
    *,
    max_bytes: int = 4 << 20,
    rcvbuf: int = 0,
    deflate_wbits: int = 0,
    outbox_class: type[Outbox] = Outbox,
    scheduler: FlushScheduler | None = None,
) -> Rig:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Queue[Peer] = asyncio.Queue()
    server = await loop.create_server(lambda: Peer(accepted), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients, peers = [], []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        clients.append(Client(sock))
        peers.append(await accepted.get())
    server.close()
    scheduler, stats = scheduler or FlushScheduler(), OutboxStats()
    hub = Hub()
    outboxes = []
    for peer in peers:
        assert peer.transport is not None
        outbox = outbox_class(
            peer.transport, scheduler, stats, max_bytes=max_bytes, deflate_wbits=deflate_wbits
        )
        hub.subscribe(TOPIC, outbox)
        outboxes.append(outbox)
    return Rig(hub, scheduler, stats, peers, outboxes, clients)


# -- scenarios: each returns what it saw --------------------------------------------
async def every_frame_in_order() -> Trace:
    """Frames in separate turns and several in one turn: all of them, in order, once."""
    rig = await make_rig(20)
    try:
        frames = [Frame(payload(i)) for i in range(6)]
        reached = []
        for frame in frames[:3]:
            reached.append(rig.hub.publish(TOPIC, frame))
            await rig.turn()
        for frame in frames[3:]:  # one turn: coalesced into one write per client
            reached.append(rig.hub.publish(TOPIC, frame))
        queued_before_flush = rig.stats.queued_bytes
        await rig.turn()
        expected = b"".join(f.raw for f in frames)
        got = [await c.read_at_least(len(expected)) for c in rig.clients]
        return {
            "reached": reached,
            "queued_before_flush": queued_before_flush,
            "all_exact": all(g == expected for g in got),
            "queued_after": rig.stats.queued_bytes,
            "outbox_bytes": sorted({o.queued_bytes for o in rig.outboxes}),
        }
    finally:
        rig.close()


async def full_socket_keeps_order() -> Trace:
    """A client that does not read: the socket fills, the transport buffers the rest,
    and once it reads, everything arrives in order."""
    rig = await make_rig(1, rcvbuf=4096)
    transport = rig.peers[0].transport
    assert transport is not None
    try:
        frames: list[Frame] = []
        while transport.get_write_buffer_size() == 0 and len(frames) < 100_000:
            frame = Frame(payload(len(frames), 1000))
            frames.append(frame)
            rig.hub.publish(TOPIC, frame)
            await rig.turn()
        buffered = transport.get_write_buffer_size() > 0
        for i in range(20):  # more behind the buffered ones: queued or buffered, in order
            frame = Frame(payload(len(frames) + i, 1000))
            frames.append(frame)
            rig.hub.publish(TOPIC, frame)
            await rig.turn()
        expected = b"".join(f.raw for f in frames)
        got = await rig.clients[0].read_at_least(len(expected))
        await rig.turn()
        return {
            "transport_buffered": buffered,
            "exact": got == expected,
            "queued_after": rig.stats.queued_bytes,
            "slow_consumers": rig.stats.slow_consumers,
        }
    finally:
        rig.close()


async def over_the_bound_closes_4008() -> Trace:
    """Lossless frames past a client's bound: that client alone is closed with 4008,
    its queue released; the one that reads gets everything."""
    rig = await make_rig(2, max_bytes=3000, rcvbuf=4096)
    slow, fast = rig.outboxes
    try:
        published = 0
        while not slow.overflowed and published < 100_000:
            rig.hub.publish(TOPIC, Frame(payload(published, 1000)))
            published += 1
            await rig.turn()
            rig.clients[1].drain()
        await rig.turn()
        return {
            "overflowed": [slow.overflowed, fast.overflowed],
            "slow_consumers": rig.stats.slow_consumers,
            "slow_queue_released": slow.queued_bytes,
            "closing_code": slow.closing.frame_code,
            "fast_queue": fast.queued_bytes,
        }
    finally:
        rig.close()


async def closing_outbox_takes_nothing() -> Trace:
    rig = await make_rig(2)
    try:
        rig.outboxes[0].close(1000, "bye")
        rig.hub.publish(TOPIC, Frame(payload(1)))
        await rig.turn()
        closed = close_frame(1000, "bye")
        frame = Frame(payload(1))
        got_closed = await rig.clients[0].read_at_least(len(closed))
        got_open = await rig.clients[1].read_at_least(len(frame.raw))
        return {
            "closed_client_got_only_the_close": got_closed == closed,
            "open_client_got_the_frame": got_open == frame.raw,
            "queued_after": rig.stats.queued_bytes,
        }
    finally:
        rig.close()


class CountingOutbox(Outbox):
    """A subclass: its own deliver and flush must run, whichever loop runs."""

    __slots__ = ("delivered", "flushed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered = 0
        self.flushed = 0

    def deliver(self, frame: Frame) -> None:
        self.delivered += 1
        super().deliver(frame)

    def flush(self) -> None:
        self.flushed += 1
        super().flush()


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.frames: list[bytes] = []
        self.fail = fail

    def deliver(self, frame: Frame) -> None:
        if self.fail:
            raise RuntimeError("a subscriber failed")
        self.frames.append(frame.payload)

    def replay(self, frames: list[Frame]) -> None:
        self.frames += [f.payload for f in frames]


async def other_subscribers_use_their_own_methods() -> Trace:
    rig = await make_rig(2, outbox_class=CountingOutbox)
    recorder = Recorder()
    rig.hub.subscribe(TOPIC, recorder)
    try:
        frames = [Frame(payload(i)) for i in range(3)]
        for frame in frames:
            rig.hub.publish(TOPIC, frame)
            await rig.turn()
        expected = b"".join(f.raw for f in frames)
        got = [await c.read_at_least(len(expected)) for c in rig.clients]
        counting = [o for o in rig.outboxes if isinstance(o, CountingOutbox)]
        return {
            "recorder": len(recorder.frames),
            "subclass_delivered": [o.delivered for o in counting],
            "subclass_flushed": [o.flushed for o in counting],
            "clients_exact": all(g == expected for g in got),
        }
    finally:
        rig.close()


async def reset_client_is_lost_not_raised() -> Trace:
    rig = await make_rig(3)
    try:
        gone = rig.clients[1].sock
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # RST
        raised = None
        try:
            for i in range(5):
                rig.hub.publish(TOPIC, Frame(payload(i)))
                await rig.turn()
        except Exception as exc:
            raised = type(exc).__name__
        await asyncio.wait_for(rig.peers[1].lost.wait(), 10)
        expected = b"".join(Frame(payload(i)).raw for i in range(5))
        others = [await rig.clients[i].read_at_least(len(expected)) for i in (0, 2)]
        return {
            "raised": raised,
            "lost": rig.peers[1].lost.is_set(),
            "others_exact": all(g == expected for g in others),
        }
    finally:
        rig.close()


async def compressed_clients_get_the_deflated_frame() -> Trace:
    rig = await make_rig(3, deflate_wbits=15)
    try:
        big = Frame(payload(1, 3000), threshold=1024)
        small = Frame(payload(2, 200), threshold=1024)
        rig.hub.publish(TOPIC, big)
        await rig.turn()
        rig.hub.publish(TOPIC, small)
        await rig.turn()
        expected = big.for_deflate(15) + small.raw
        got = [await c.read_at_least(len(expected)) for c in rig.clients]
        return {
            "compressed_first_byte": hex(expected[0]),
            "all_exact": all(g == expected for g in got),
            "queued_after": rig.stats.queued_bytes,
        }
    finally:
        rig.close()


async def an_error_in_a_subscriber_propagates() -> Trace:
    rig = await make_rig(2)
    failing = Recorder(fail=True)
    rig.hub.subscribe(TOPIC, failing)
    try:
        frame = Frame(payload(1))
        raised = None
        try:
            rig.hub.publish(TOPIC, frame)
        except RuntimeError as exc:
            raised = str(exc)
        queued = rig.stats.queued_bytes
        await rig.turn()
        got = [await c.read_at_least(len(frame.raw)) for c in rig.clients]
        return {
            "raised": raised,
            "queued_for_the_two_before_it": queued,
            "both_got_it": all(g == frame.raw for g in got),
            "queued_after": rig.stats.queued_bytes,
        }
    finally:
        rig.close()


async def a_broadcast_goes_out_in_slices() -> Trace:
    """A broadcast to 20 clients, 8 a turn: what the loop runs meanwhile sees a part
    written; a second broadcast during the pass; every client gets both, in order."""
    reported: list[list[int]] = []
    scheduler = FlushScheduler(
        lambda frames: reported.append([json.loads(f.payload)["n"] for f in frames]),
        slice_size=8,
    )
    rig = await make_rig(20, scheduler=scheduler)
    loop = asyncio.get_running_loop()

    def readable() -> int:
        count = 0
        for client in rig.clients:
            with contextlib.suppress(BlockingIOError):
                count += bool(client.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        return count

    try:
        first, second = Frame(payload(0)), Frame(payload(1))
        rig.hub.publish(TOPIC, first)
        rig.scheduler.published(first)
        # Queued behind the broadcast's flush, as a post's read or answer would be.
        probed: asyncio.Future[int] = loop.create_future()
        loop.call_soon(lambda: probed.set_result(readable()))
        written_when_probed = await probed
        rig.hub.publish(TOPIC, second)  # mid-pass: behind the first frame, everywhere
        rig.scheduler.published(second)
        for _ in range(10):
            await rig.turn()
        expected = first.raw + second.raw
        got = [await c.read_at_least(len(expected)) for c in rig.clients]
        return {
            "written_when_probed": written_when_probed,
            "all_exact": all(g == expected for g in got),
            "queued_after": rig.stats.queued_bytes,
            "reported": reported,
            "still_writing": rig.scheduler.writing,
        }
    finally:
        rig.close()


SCENARIOS: dict[str, Callable[[], Awaitable[Trace]]] = {
    "every_frame_in_order": every_frame_in_order,
    "full_socket_keeps_order": full_socket_keeps_order,
    "over_the_bound_closes_4008": over_the_bound_closes_4008,
    "closing_outbox_takes_nothing": closing_outbox_takes_nothing,
    "other_subscribers_use_their_own_methods": other_subscribers_use_their_own_methods,
    "reset_client_is_lost_not_raised": reset_client_is_lost_not_raised,
    "compressed_clients_get_the_deflated_frame": compressed_clients_get_the_deflated_frame,
    "an_error_in_a_subscriber_propagates": an_error_in_a_subscriber_propagates,
    "a_broadcast_goes_out_in_slices": a_broadcast_goes_out_in_slices,
}
LOOPS = ("asyncio", "uvloop")


def run(loop: str, name: str) -> Trace:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(SCENARIOS[name](), 60))


# -- the tests ------------------------------------------------------------------------
@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def test_every_client_gets_every_frame_once_in_order(loop: str) -> None:
    trace = run(loop, "every_frame_in_order")
    assert trace["reached"] == [20] * 6
    assert trace["queued_before_flush"] == 20 * sum(len(payload(i)) for i in range(3, 6))
    assert trace["all_exact"]
    assert trace["queued_after"] == 0
    assert trace["outbox_bytes"] == [0]


def test_a_full_socket_keeps_the_order(loop: str) -> None:
    trace = run(loop, "full_socket_keeps_order")
    assert trace == {
        "transport_buffered": True,
        "exact": True,
        "queued_after": 0,
        "slow_consumers": 0,
    }


def test_over_the_bound_the_slow_client_alone_is_closed_with_4008(loop: str) -> None:
    trace = run(loop, "over_the_bound_closes_4008")
    assert trace["overflowed"] == [True, False]
    assert trace["slow_consumers"] == 1
    assert trace["slow_queue_released"] == 0
    assert trace["closing_code"] == 4008
    assert trace["fast_queue"] == 0


def test_a_closing_outbox_takes_nothing_more(loop: str) -> None:
    trace = run(loop, "closing_outbox_takes_nothing")
    assert trace == {
        "closed_client_got_only_the_close": True,
        "open_client_got_the_frame": True,
        "queued_after": 0,
    }


def test_other_subscribers_and_subclasses_use_their_own_methods(loop: str) -> None:
    trace = run(loop, "other_subscribers_use_their_own_methods")
    assert trace == {
        "recorder": 3,
        "subclass_delivered": [3, 3],
        "subclass_flushed": [3, 3],
        "clients_exact": True,
    }


def test_a_reset_client_is_lost_and_the_others_served(loop: str) -> None:
    trace = run(loop, "reset_client_is_lost_not_raised")
    assert trace == {"raised": None, "lost": True, "others_exact": True}


def test_compressed_clients_get_the_frame_built_for_their_window(loop: str) -> None:
    trace = run(loop, "compressed_clients_get_the_deflated_frame")
    assert trace == {"compressed_first_byte": "0xc1", "all_exact": True, "queued_after": 0}


def test_an_error_in_a_subscriber_propagates_and_counts_stay_true(loop: str) -> None:
    # The failing subscriber came last: both outboxes had the frame before it raised.
    trace = run(loop, "an_error_in_a_subscriber_propagates")
    assert trace == {
        "raised": "a subscriber failed",
        "queued_for_the_two_before_it": 2 * len(payload(1)),
        "both_got_it": True,
        "queued_after": 0,
    }


def test_a_broadcast_goes_out_a_slice_a_turn_in_order(loop: str) -> None:
    # A callback queued behind the broadcast (a post's read, its answer) ran after the
    # first 8 of 20 clients were written, not after all 20; nothing reordered or lost.
    trace = run(loop, "a_broadcast_goes_out_in_slices")
    assert trace == {
        "written_when_probed": 8,
        "all_exact": True,
        "queued_after": 0,
        "reported": [[0], [1]],
        "still_writing": False,
    }


def test_only_plain_tcp_transports_are_written_directly() -> None:
    class NotATransport:
        def get_extra_info(self, name: str) -> object:
            raise AssertionError("not asked")

    assert delivery.direct_fd(NotATransport()) == -1

    async def fds() -> tuple[int, int]:
        rig = await make_rig(1)
        try:
            transport = rig.peers[0].transport
            return delivery.direct_fd(transport), rig.outboxes[0]._fd
        finally:
            rig.close()

    for factory in (asyncio.new_event_loop, uvloop.new_event_loop):
        with asyncio.Runner(loop_factory=factory) as runner:
            fd, outbox_fd = runner.run(fds())
        assert fd >= 0 and outbox_fd == fd


C_BUILT = importlib.util.find_spec("hlgateway.server._delivery") is not None


def test_the_loops_in_use_are_the_ones_asked_for() -> None:
    wanted = os.environ.get("HLGATEWAY_SPEEDUPS", "1") not in ("0", "no", "false")
    assert (wanted and C_BUILT) == delivery.SPEEDUPS
    assert (delivery.publish.__module__ == "hlgateway.server._delivery") == delivery.SPEEDUPS


@pytest.mark.skipif(not delivery.SPEEDUPS, reason="the Python loops are in use")
def test_the_c_loops_take_the_common_case_themselves() -> None:
    before = delivery.counters()
    run("uvloop", "every_frame_in_order")
    run("asyncio", "every_frame_in_order")
    after = delivery.counters()
    # 6 frames to 20 clients, twice: the first frame of a turn is the C loop's, the
    # second and third of the coalesced turn queue behind it (Python's deliver).
    assert after["delivered"] - before["delivered"] == 2 * 20 * 4
    # 4 flushes per client: 3 single frames written by C, one queue of 3 by Python.
    assert after["written"] - before["written"] == 2 * 20 * 3
    assert after["handed_back"] - before["handed_back"] == 2 * 20 * (2 + 1)


@pytest.mark.skipif(not C_BUILT, reason="the C module is not built")
def test_both_implementations_leave_the_same_trace() -> None:
    traces = {}
    for setting in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-m", "tests.server.test_delivery"],
            cwd=ROOT,
            env={**os.environ, "HLGATEWAY_SPEEDUPS": setting},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        traces[setting] = json.loads(out.stdout)
    assert traces["1"]["speedups"] is True and traces["0"]["speedups"] is False
    assert traces["1"]["traces"] == traces["0"]["traces"]


def main() -> None:
    traces = {f"{name}/{loop}": run(loop, name) for name in SCENARIOS for loop in LOOPS}
    print(json.dumps({"speedups": delivery.SPEEDUPS, "traces": traces}, sort_keys=True))


if __name__ == "__main__":
    main()

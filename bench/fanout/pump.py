"""The tick pump: a Hyperliquid-compatible upstream for the fan-out benchmark.

It speaks the simulator's (Hyperliquid's) protocol on `/ws` (`subscribe`,
`unsubscribe`, `ping`, `subscriptionResponse`, `l2Book` frames) and answers
`POST /info` with the simulator's own handlers (the gateway loads its market
list from `metaAndAssetCtxs`). The books are the simulator's: 256 successive
BTC books of its seeded market model, cycled. What it adds over the simulator
is control of the clock of the data:

- every pushed book has a unique `time` in ms, never ahead of the wall clock;
  the simulator stamps books with its model tick (100 ms), which would make a
  latency measured from `time` wrong by up to 100 ms;
- `rate` mode pushes R ticks per second, each sent at the start of the ms in
  its `time` (below 200 ticks/s), so a client's `now - time` is the latency of
  the whole path from this process's send;
- `window` mode is saturation without unbounded queues: at most W ticks are in
  flight, and a tick leaves the window when the load generator reports (UDP
  datagram, 8-byte little-endian `time`) that every reading client received it,
  or after 1 s. So the pump goes exactly as fast as the server under test fans
  out, at most one tick per ms (1000 ticks/s).

Control: `POST /bench/mode` `{"mode":"idle"|"rate"|"window","rate":R,"window":W}`
(rate mode takes an optional `"count":K`: K ticks, then idle),
`GET /bench/stats`. The first stdout line is `{"event":"ready","port":P,"feedback_port":F}`.

With `--channel trades` it pushes one trade a tick on Hyperliquid's `trades`
channel instead (each with its own `tid`), a lossless stream for the gateway:
offsets, history, the durable engine's store.

Run: `python -m bench.fanout.pump [--port 0] [--coin BTC] [--channel l2Book|trades]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from hlgateway.simulator import wire
from hlgateway.simulator.info import InfoError, handle_info
from hlgateway.simulator.world import SimWorld

FEEDBACK_TIMEOUT = 30.0  # a tick nobody confirmed leaves the window after this long
ALIGN_BELOW_RATE = 200.0  # below this rate, each send waits for the start of its ms
BOOKS = 256

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Stats:
    sent: int = 0
    sent_mode: int = 0  # ticks since the current mode began
    mode_since: float = 0.0
    confirmed: int = 0
    timeouts: int = 0
    late_sends: int = 0  # rate mode: sends more than 1 ms after their slot
    subscribers: int = 0
    upstream_connections: int = 0

    def as_dict(self, mode: dict[str, Any]) -> dict[str, Any]:
        elapsed = time.monotonic() - self.mode_since
        return {
            "mode": mode,
            "sent": self.sent,
            "sent_mode": self.sent_mode,
            "mode_seconds": round(elapsed, 3),
            "rate_actual": round(self.sent_mode / elapsed, 1) if elapsed > 0 else 0.0,
            "confirmed": self.confirmed,
            "timeouts": self.timeouts,
            "late_sends": self.late_sends,
            "subscribers": self.subscribers,
            "upstream_connections": self.upstream_connections,
        }


@dataclass
class Pump:
    coin: str = "BTC"
    seed: int = 0
    channel: str = "l2Book"  # or "trades"
    world: SimWorld = field(init=False)
    subscribers: dict[web.WebSocketResponse, None] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    mode: dict[str, Any] = field(default_factory=lambda: {"mode": "idle"})
    _levels: list[bytes] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: collections.deque[tuple[int, float]] = field(default_factory=collections.deque)
    _last_ts: int = 0
    _book: int = 0
    _tid: int = 0  # trades: every trade's own id (several may share a ms)

    def __post_init__(self) -> None:
        self.world = SimWorld(self.seed, now_ms())
        market = self.world.market
        for _ in range(BOOKS):
            market.advance_tick()
            book = wire.l2_book(market.book(self.coin))
            self._levels.append(_encode(book["levels"]))
        self._prefix = b'{"channel":"l2Book","data":{"coin":' + _encode(self.coin) + b',"time":'

    # -- frames --------------------------------------------------------------
    def frame(self, ts: int) -> str:
        if self.channel == "trades":
            coin = _encode(self.coin).decode()
            self._tid += 1
            return (
                f'{{"channel":"trades","data":[{{"coin":{coin},"side":"B","px":"97012.5",'
                f'"sz":"0.0123","time":{ts},"hash":"0x{self._tid:064x}","tid":{self._tid}}}]}}'
            )
        levels = self._levels[self._book]
        self._book = (self._book + 1) % BOOKS
        return b"".join((self._prefix, str(ts).encode(), b',"levels":', levels, b"}}")).decode()

    async def push(self, ts: int) -> None:
        text = self.frame(ts)
        self._last_ts = ts
        self.stats.sent += 1
        self.stats.sent_mode += 1
        for ws in tuple(self.subscribers):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)

    # -- control -------------------------------------------------------------
    def set_mode(self, mode: dict[str, Any]) -> None:
        kind = mode.get("mode")
        if kind not in ("idle", "rate", "window"):
            raise ValueError(f"unknown mode {kind!r}")
        if kind == "rate" and not float(mode.get("rate", 0)) > 0:
            raise ValueError("rate mode needs rate > 0")
        if kind == "window" and not int(mode.get("window", 0)) > 0:
            raise ValueError("window mode needs window > 0")
        self.mode = dict(mode)
        self._inflight.clear()
        self.stats.sent_mode = 0
        self.stats.timeouts = 0
        self.stats.late_sends = 0
        self.stats.mode_since = time.monotonic()
        self._changed.set()
        self._room.set()

    def confirm(self, ts: int) -> None:
        inflight = self._inflight
        while inflight and inflight[0][0] <= ts:
            inflight.popleft()
            self.stats.confirmed += 1
        self._room.set()

    # -- the clock -----------------------------------------------------------
    async def run(self) -> None:
        while True:
            self._changed.clear()
            mode = self.mode
            if mode["mode"] == "rate":
                await self._run_rate(float(mode["rate"]), int(mode.get("count", 0)))
            elif mode["mode"] == "window":
                await self._run_window(int(mode["window"]))
            else:
                await self._changed.wait()

    async def _run_rate(self, rate: float, count: int = 0) -> None:
        """`rate` ticks per second; after `count` ticks (if given), back to idle."""
        interval_ms = 1000.0 / rate
        align = rate <= ALIGN_BELOW_RATE
        slot = float(now_ms() + 1)
        while not self._changed.is_set():
            if count and self.stats.sent_mode >= count:
                self.mode = {"mode": "idle"}
                return
            target = int(slot + 0.999999) if align else int(slot)
            target = max(target, self._last_ts + 1)
            wait = (target * 1_000_000 - time.time_ns()) / 1e9
            if wait > 0.002:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=wait - 0.0015)
                    return
                except TimeoutError:
                    pass
            if align:
                while time.time_ns() < target * 1_000_000:  # spin to the start of the ms
                    pass
            current = now_ms()
            if current - target > 1:
                self.stats.late_sends += 1
            await self.push(target if align else max(current, self._last_ts + 1))
            slot += interval_ms
            if slot < now_ms() - 1000:  # more than a second behind: skip, do not burst
                slot = float(now_ms())

    async def _run_window(self, window: int) -> None:
        inflight = self._inflight
        while not self._changed.is_set():
            if len(inflight) >= window:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), timeout=0.05)
                horizon = time.monotonic() - FEEDBACK_TIMEOUT
                while inflight and inflight[0][1] < horizon:
                    inflight.popleft()
                    self.stats.timeouts += 1
                continue
            ts = now_ms()
            if ts <= self._last_ts:  # at most one tick per ms: wait for the next ms
                await asyncio.sleep(0.0005)
                continue
            inflight.append((ts, time.monotonic()))
            await self.push(ts)


class _Feedback(asyncio.DatagramProtocol):
    def __init__(self, pump: Pump) -> None:
        self.pump = pump

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        for (ts,) in struct.iter_unpack("<q", data[: len(data) - len(data) % 8]):
            self.pump.confirm(ts)


def build_app(pump: Pump) -> web.Application:
    async def info(request: web.Request) -> web.Response:
        try:
            body = _decode(await request.read())
            result = handle_info(pump.world, body)
        except msgspec.DecodeError:
            return web.Response(status=400, text="Failed to parse the request body as JSON")
        except InfoError as exc:
            return web.Response(status=exc.status, text=exc.message)
        return web.Response(body=_encode(result), content_type="application/json")

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        pump.stats.upstream_connections += 1
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await _on_request(pump, ws, msg.data)
        finally:
            pump.subscribers.pop(ws, None)
            pump.stats.subscribers = len(pump.subscribers)
        return ws

    async def set_mode(request: web.Request) -> web.Response:
        try:
            pump.set_mode(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(pump.stats.as_dict(pump.mode))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(pump.stats.as_dict(pump.mode))

    app = web.Application()
    app.router.add_post("/info", info)
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/bench/mode", set_mode)
    app.router.add_get("/bench/stats", stats)
    return app


async def _on_request(pump: Pump, ws: web.WebSocketResponse, text: str) -> None:
    try:
        msg = _decode(text)
    except msgspec.DecodeError:
        return
    if not isinstance(msg, dict):
        return
    method = msg.get("method")
    if method == "ping":
        await ws.send_str('{"channel":"pong"}')
        return
    if method not in ("subscribe", "unsubscribe"):
        return
    sub = msg.get("subscription")
    if not isinstance(sub, dict):
        return
    if sub.get("type") == pump.channel and sub.get("coin") == pump.coin:
        if method == "subscribe":
            pump.subscribers[ws] = None
        else:
            pump.subscribers.pop(ws, None)
        pump.stats.subscribers = len(pump.subscribers)
    ack = {"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}
    await ws.send_str(_encode(ack).decode())


async def serve(host: str, port: int, feedback_port: int, coin: str, channel: str) -> None:
    pump = Pump(coin=coin, channel=channel)
    runner = web.AppRunner(build_app(pump), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Feedback(pump), local_addr=(host, feedback_port)
    )
    fb_port = transport.get_extra_info("sockname")[1]
    print(json.dumps({"event": "ready", "port": bound, "feedback_port": fb_port}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clock = loop.create_task(pump.run())
    try:
        await stop.wait()
    finally:
        clock.cancel()
        transport.close()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout.pump", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--feedback-port", type=int, default=0)
    parser.add_argument("--coin", default="BTC")
    parser.add_argument("--channel", choices=["l2Book", "trades"], default="l2Book")
    args = parser.parse_args(argv)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.feedback_port, args.coin, args.channel))


if __name__ == "__main__":
    main()

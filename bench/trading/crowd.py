"""`python -m bench.trading.crowd URL CLIENTS`: market-data clients, in a process of their own.

Each client subscribes to `prices` (BTC, ETH) and the BTC `orderbook` and reads
everything. It prints `ready N` once every client got its first data; on
SIGUSR1 `count M MIN MEDIAN MAX`, the data messages all clients and each client
received since the previous SIGUSR1 (bench/trading/crowds.py marks a
measurement with two); on SIGTERM `received M` (data messages, all clients) and
exits. Bounded: it stops by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys

import aiohttp


async def client(
    session: aiohttp.ClientSession, url: str, counts: list[int], i: int, first: asyncio.Event
) -> None:
    async with session.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(
            json.dumps(
                {"type": "subscribe", "channel": "prices", "params": {"symbols": ["BTC", "ETH"]}}
            )
        )
        await ws.send_str(
            json.dumps({"type": "subscribe", "channel": "orderbook", "params": {"symbol": "BTC"}})
        )
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            if msg.data.startswith('{"type":"data"'):
                counts[i] += 1
                first.set()


async def main(url: str, clients: int, max_seconds: float) -> int:
    counts = [0] * clients
    marked = [0] * clients
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def count() -> None:
        since = [now - then for now, then in zip(counts, marked, strict=True)]
        marked[:] = counts
        low, mid, high = min(since), int(statistics.median(since)), max(since)
        print(f"count {sum(since)} {low} {mid} {high}", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, count)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        firsts = [asyncio.Event() for _ in range(clients)]
        tasks = []
        for i in range(clients):
            tasks.append(loop.create_task(client(session, url, counts, i, firsts[i])))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, not one burst
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_seconds):
                await asyncio.gather(*(e.wait() for e in firsts))
        ready = sum(e.is_set() for e in firsts)
        print(f"ready {ready}", flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_seconds):
                await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"received {sum(counts)}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.trading.crowd")
    parser.add_argument("url")
    parser.add_argument("clients", type=int)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.clients, args.max_seconds)))

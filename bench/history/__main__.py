"""`python -m bench.history [--streams 1000] [--messages 1000]`

Fills the memory engine's history the way busy user_fills streams would (one
real-sized fill per message, through the publisher, positions spliced in) and
measures the Python heap it holds with tracemalloc: bytes per retained message
and the total. The payloads are what the gateway sends; nothing is stubbed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tracemalloc

from hlgateway.auth import Principal
from hlgateway.broker import MemoryBroker, Retention
from hlgateway.protocol.channels import Catalog
from hlgateway.protocol.markets import Markets
from hlgateway.publisher import Publisher
from hlgateway.upstream import wire


def fill(n: int, wallet: str) -> wire.Fill:
    return wire.Fill(
        id=1_000_000 + n,
        orderId=2_000_000 + n,
        symbol="BTC",
        side="buy",
        price=97_123.5,
        size=0.0123,
        fee=0.3521,
        closedPnl=-12.25,
        timestamp=1_764_000_000_000 + n,
        wallet=wallet,
        direction="Open Long",
        hash="0x" + "ab" * 32,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    catalog = Catalog(Markets(["BTC"]))
    retention = Retention(size=args.messages, ttl=600, max_size=args.messages)
    broker = MemoryBroker(retention)
    publisher = Publisher(broker)
    topics = []
    for n in range(args.streams):
        wallet = f"0x{n:040x}"
        principal = Principal(f"user{n}", wallets=frozenset({wallet}))
        topics.append((catalog.resolve("user_fills", {"userId": f"user{n}"}, principal), wallet))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for topic, wallet in topics:
        for m in range(args.messages):
            publisher.publish(topic, {"fills": [fill(m, wallet)]})
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    replay = broker.read_now(topics[0][0], None)
    assert replay.position is not None and replay.position.offset == args.messages
    sample = broker.read_now(topics[0][0], type(replay.position)(0, replay.position.epoch))
    payload_bytes = sum(len(p.payload) for p in sample.publications) / len(sample.publications)
    retained = args.streams * args.messages
    held = after - before
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    )
    print(f"command: python -m bench.history --streams {args.streams} --messages {args.messages}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| streams x messages retained | {args.streams} x {args.messages} = {retained:,} |")
    print(f"| payload (a one-fill user_fills message) | {payload_bytes:.0f} B |")
    print(f"| heap per retained message | {held / retained:.0f} B |")
    print(f"| overhead per message beyond its payload | {held / retained - payload_bytes:.0f} B |")
    print(f"| total heap for the history | {held / 2**20:.1f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

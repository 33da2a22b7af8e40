"""What one publication costs inside Redis: `python -m bench.scaleout.redis_cost`.

A redis-server of its own (pinned to core 1 when there is one); one engine publishes
N messages of ~200 bytes as fast as its pipeline goes, lossless (the Lua script:
shared-ledger SET NX, HINCRBY, XADD, trim, PUBLISH) and then snapshot (SET +
PUBLISH), while `nodes` other engines are subscribed to the topic (each receives
every message: PUB/SUB's fan-out to nodes). Reports Redis CPU seconds per
publication and publications per second per Redis core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout import procs as P
from bench.fanout.run import CLIENT_CORE
from hlgateway.auth import Principal
from hlgateway.broker import Retention
from hlgateway.broker.redis import RedisBroker
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import ORDERBOOK, Catalog, Topic, room_topic
from hlgateway.protocol.markets import Markets
from tests.helpers import eventually


def message(topic: Topic, n: int) -> bytes:
    head = encoding.data_head(topic.channel, topic.params_json)
    return encoding.data_frame(head, {"n": n, "pad": "x" * 120})


async def measure(url: str, redis_pid: int, topic: Topic, count: int, nodes: int) -> dict[str, Any]:
    publisher = RedisBroker(url, Retention(1000, 600, 2000), node="publisher")
    receivers = [RedisBroker(url, Retention(1000, 600, 2000), node=f"r{i}") for i in range(nodes)]
    got = [0] * nodes
    for index, receiver in enumerate(receivers):

        def sink(_t: Topic, _p: bytes, _o: int, index: int = index) -> None:
            got[index] += 1

        receiver.bind(sink)
    publisher.bind(lambda *_: None)
    for broker in (publisher, *receivers):
        await broker.start()
    for receiver in receivers:
        await receiver.read(topic, None)
        receiver.demand(topic)
    await asyncio.sleep(0.2)
    cpu0, t0 = P.proc_cpu_seconds(redis_pid), time.monotonic()
    for n in range(count):
        publisher.publish(topic, message(topic, n))
        if n % 1000 == 999:
            await asyncio.sleep(0)
    await eventually(
        lambda: min(got, default=count) >= count and publisher.stats().published >= count,
        300,
        every=0.01,
    )
    wall, cpu = time.monotonic() - t0, P.proc_cpu_seconds(redis_pid) - cpu0
    for broker in (publisher, *receivers):
        await broker.stop()
    return {
        "kind": "lossless" if topic.lossless else "snapshot",
        "publications": count,
        "nodes_subscribed": nodes,
        "seconds": round(wall, 2),
        "publications_per_s": round(count / wall),
        "redis_cpu_us_per_publication": round(cpu / count * 1e6, 2),
        "publications_per_redis_core_s": round(count / cpu) if cpu else None,
    }


async def run(count: int, nodes: int) -> list[dict[str, Any]]:
    procs = P.Procs(Path(tempfile.mkdtemp(prefix="hlgw-redis-cost-")))
    with procs.session(), P.own_redis(procs, CLIENT_CORE) as (url, redis_pid):
        book = Catalog(Markets(["BTC"])).resolve(
            ORDERBOOK, {"symbol": "BTC", "depth": 1}, Principal("bench")
        )
        return [
            await measure(url, redis_pid, room_topic("bench"), count, nodes),
            await measure(url, redis_pid, book, count, nodes),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout.redis_cost", description=__doc__
    )
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--nodes", type=int, default=2, help="engines subscribed to the topic")
    args = parser.parse_args(argv)
    for row in asyncio.run(run(args.count, args.nodes)):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench.trading.trace [--posts 500] [--clients 1000] [--crowd c|python]
[--gateway-ref REF]`

Where a post's round trip goes: bench.trading's run with timestamps along the
relayed path, taken in the three processes on the one monotonic clock they
share (perf_counter is CLOCK_MONOTONIC on Linux):

    A  bench sends            -> gateway reads it from the client's socket
    B  gateway reads          -> the relay takes it (parse, permission, budget)
    C  relay                  -> written on the upstream post link (the sender task's wake)
    D  upstream write         -> the simulator handles it
    E  the simulator's own work (signature recovery, matching)
    F  simulator answers      -> gateway reads the answer from the post link's socket
    G  read                   -> the link dispatches it (the reader task's wake)
    H  dispatch               -> the answer is written to the client
    I  written                -> the bench reads it

and, beside them, the gateway's flush passes (wall and CPU time, how many
outboxes), its garbage collections, and for the slowest posts how much of the
wait the gateway spent on a run queue (/proc/thread-self/schedstat) rather than
on its own CPU. The direct path gets A/E/I's equivalents.

Investigation, not a benchmark: the gateway and simulator run under patches
(`python -m bench.trading.trace gateway|simulator ...`) that wrap a few
methods, which costs a little on every post and flush. With `--gateway-ref`
the same is traced for that commit's gateway too, one after the other.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

pc = time.perf_counter
RECORDS: dict[str, list[Any]] = {"ev": [], "flush": [], "gc": [], "sched": []}
ANSWER_ID = re.compile(r'"channel":"post","data":\{"id":(\d+)')


def _dump() -> None:
    directory = os.environ.get("TRACE_DIR")
    if directory:
        path = Path(directory) / f"{os.environ.get('TRACE_ROLE', 'x')}.json"
        path.write_text(json.dumps(RECORDS))


_SCHEDSTAT: dict[str, Any] = {}


def _sched() -> tuple[int, int]:
    """This thread's CPU time and run-queue wait so far, in ns."""
    stat = _SCHEDSTAT.get("file")
    if stat is None:
        stat = _SCHEDSTAT["file"] = open("/proc/thread-self/schedstat", "rb", buffering=0)  # noqa: SIM115
    stat.seek(0)
    cpu, waited = stat.read().split()[:2]
    return int(cpu), int(waited)


def _snap(name: str, key: object) -> None:
    cpu, waited = _sched()
    RECORDS["sched"].append([name, key, pc(), cpu, waited])


def _patch_gateway() -> None:
    from aiohttp import client_proto, client_ws

    from hlgateway import session
    from hlgateway.server import connection, outbox
    from hlgateway.upstream import exchange, link

    ev = RECORDS["ev"]
    read_at = [0.0]

    def wrap(cls: Any, name: str, make: Any) -> None:
        setattr(cls, name, make(getattr(cls, name)))

    def data_received(orig: Any) -> Any:
        def patched(self: Any, data: bytes) -> Any:
            read_at[0] = pc()
            return orig(self, data)

        return patched

    def post(orig: Any) -> Any:
        def patched(self: Any, msg: Any) -> Any:
            ev.append(["g_read", str(msg.id), read_at[0]])
            ev.append(["g_relay", str(msg.id), pc()])
            _snap("g_relay", str(msg.id))
            return orig(self, msg)

        return patched

    def send(orig: Any) -> Any:
        def patched(self: Any, route: Any, body: bytes, done: Any) -> Any:
            orig(self, route, body, done)
            if self._pending:  # over the link: its id is the newest pending
                ev.append(["g_enq", next(reversed(self._pending)), pc()])

        return patched

    def send_str(orig: Any) -> Any:
        async def patched(self: Any, data: str, compress: Any = None) -> Any:
            if data.startswith('{"method":"post"'):
                found = re.search(r'"id":(\d+)', data[:40])
                if found:
                    ev.append(["g_upwrite", int(found.group(1)), pc()])
                    _snap("g_upwrite", int(found.group(1)))
            return await orig(self, data, compress)

        return patched

    def write_text(orig: Any) -> Any:  # the link's own socket (upstream/websocket.py)
        def patched(self: Any, text: str) -> Any:
            if text.startswith('{"method":"post"'):
                found = re.search(r'"id":(\d+)', text[:40])
                if found:
                    ev.append(["g_upwrite", int(found.group(1)), pc()])
                    _snap("g_upwrite", int(found.group(1)))
            return orig(self, text)

        return patched

    def upstream_bytes(orig: Any) -> Any:
        def patched(self: Any, data: bytes) -> Any:
            if b'"channel":"post"' in data:
                at = pc()
                for found in ANSWER_ID.finditer(data.decode(errors="replace")):
                    ev.append(["g_upread", int(found.group(1)), at])
                    _snap("g_upread", int(found.group(1)))
            return orig(self, data)

        return patched

    def received(orig: Any) -> Any:
        def patched(self: Any, text: str) -> Any:
            if self.index == -1:  # the post link
                found = ANSWER_ID.search(text[:80])
                if found:
                    ev.append(["g_dispatch", int(found.group(1)), pc()])
            return orig(self, text)

        return patched

    def post_answer(orig: Any) -> Any:
        def patched(self: Any, payload: bytes) -> Any:
            found = re.search(rb'"id":"([^"]+)"', payload[:200])
            rid = found.group(1).decode() if found else "?"
            ev.append(["g_answer", rid, pc()])
            return orig(self, payload)

        return patched

    sliced = hasattr(outbox.FlushScheduler, "_write_slice")
    flush_name = "_write_slice" if sliced else "_flush_all"

    def flush(orig: Any) -> Any:
        def patched(self: Any) -> Any:
            if sliced and self.writing:
                count = min(self._slice, len(self._pass) - self._next)
            elif sliced:
                count = min(self._slice, len(self.dirty))
            else:
                count = len(self.dirty)
            started, cpu = pc(), time.thread_time()
            try:
                return orig(self)
            finally:
                RECORDS["flush"].append([started, pc() - started, count, time.thread_time() - cpu])

        return patched

    wrap(connection.Connection, "data_received", data_received)
    wrap(session.Session, "_post", post)
    wrap(session.Session, "_post_answer", post_answer)
    wrap(exchange.ExchangeClient, "send", send)
    # Links over aiohttp (before) or over their own socket (upstream/websocket.py).
    wrap(client_ws.ClientWebSocketResponse, "send_str", send_str)
    wrap(client_proto.ResponseHandler, "data_received", upstream_bytes)
    try:
        from hlgateway.upstream import websocket
    except ImportError:
        pass
    else:
        wrap(websocket.UpstreamSocket, "_write_text", write_text)
        wrap(websocket.UpstreamSocket, "data_received", upstream_bytes)
    wrap(link.Link, "received", received)
    wrap(outbox.FlushScheduler, flush_name, flush)

    began: list[float] = [0.0]

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = pc()
        else:
            RECORDS["gc"].append([began[0], pc() - began[0], info["generation"]])

    gc.callbacks.append(collected)


def _patch_simulator() -> None:
    from hlgateway.simulator import websocket

    server = next(
        cls
        for cls in vars(websocket).values()
        if isinstance(cls, type) and hasattr(cls, "_post") and hasattr(cls, "_dispatch_request")
    )
    orig = server._post

    def patched(self: Any, conn: Any, req_id: int, request: Any, bad: str) -> Any:
        started = pc()
        result = orig(self, conn, req_id, request, bad)
        RECORDS["ev"].append(["s_post", [conn.id, req_id], started, pc()])
        return result

    server._post = patched


def child(role: str, argv: list[str]) -> int:
    """Run the gateway or the simulator under the patches; records at exit."""
    os.environ["TRACE_ROLE"] = role
    atexit.register(_dump)
    if role == "gateway":
        _patch_gateway()
        from hlgateway.cli import main as gateway_main

        sys.argv = ["hlgateway", *argv]
        return int(gateway_main() or 0)
    _patch_simulator()

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # the simulator's main ends quietly on it, atexit runs

    signal.signal(signal.SIGTERM, stop)
    from hlgateway.simulator.__main__ import main as simulator_main

    simulator_main(argv)
    return 0


# -- the analysis ------------------------------------------------------------------------
def _rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(int(q * len(ordered)), len(ordered) - 1)]) if ordered else 0.0


def analyze(directory: Path, bench: list[list[Any]]) -> list[str]:
    gateway = json.loads((directory / "gateway.json").read_text())
    simulator = json.loads((directory / "simulator.json").read_text())
    at: dict[str, dict[Any, float]] = {}
    rid_to_pid: dict[str, int] = {}
    last_relay: str | None = None
    for name, key, when in gateway["ev"]:
        at.setdefault(name, {})[key] = when
        if name == "g_relay":
            last_relay = key
        elif name == "g_enq" and last_relay is not None:
            rid_to_pid[last_relay], last_relay = key, None
    handled: dict[int, dict[int, tuple[float, float]]] = {}
    for _, (conn, req_id), started, ended in simulator["ev"]:
        handled.setdefault(conn, {})[req_id] = (started, ended)
    direct = [e for e in bench if e[0] == "direct"]
    relayed = [e for e in bench if e[0] == "relayed"]

    def inside(conn: int, sent: list[Any]) -> int:
        return sum(1 for e in sent if e[2] <= handled[conn].get(e[1], (-1.0, 0))[0] <= e[3])

    direct_conn = max(handled, key=lambda c: inside(c, direct))
    gateway_conn = max((c for c in handled if c != direct_conn), key=lambda c: len(handled[c]))
    rows: list[dict[str, Any]] = []
    for _, rid, sent, got in relayed:
        pid = rid_to_pid.get(rid)
        try:
            s_in, s_out = handled[gateway_conn][pid]  # type: ignore[index]
            stamps = [
                sent,
                at["g_read"][rid],
                at["g_relay"][rid],
                at["g_upwrite"][pid],
                s_in,
                s_out,
                at["g_upread"][pid],
                at["g_dispatch"][pid],
                at["g_answer"][rid],
                got,
            ]
        except KeyError:
            continue  # over REST (before the post link was up), or not seen
        rows.append({"stamps": stamps, "total": got - sent})
    directs = []
    for _, req_id, sent, got in direct:
        s_in, s_out = handled[direct_conn][req_id]
        directs.append([s_in - sent, s_out - s_in, got - s_out, got - sent])
    ms = 1000.0
    out = [
        f"{len(rows)} relayed posts traced, {len(directs)} direct",
        "",
        "| ms | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    names = "ABCDEFGHI"
    for i, name in enumerate(names):
        v = [r["stamps"][i + 1] - r["stamps"][i] for r in rows]
        out.append(
            f"| {name} | {_rank(v, 0.5) * ms:.2f} | {_rank(v, 0.9) * ms:.2f} | "
            f"{_rank(v, 0.99) * ms:.2f} | {max(v) * ms:.2f} |"
        )
    for i, name in enumerate(("direct: to the simulator", "direct: E", "direct: back")):
        v = [d[i] for d in directs]
        out.append(
            f"| {name} | {_rank(v, 0.5) * ms:.2f} | {_rank(v, 0.9) * ms:.2f} | "
            f"{_rank(v, 0.99) * ms:.2f} | {max(v) * ms:.2f} |"
        )
    # The slowest 1% of relayed posts: which segments made them slow (their mean
    # against every post's median), so the p99 is attacked where it is made.
    if rows:
        tail = sorted(rows, key=lambda r: -r["total"])[: max(1, len(rows) // 100)]
        excess = []
        for i, name in enumerate(names):
            median = _rank([r["stamps"][i + 1] - r["stamps"][i] for r in rows], 0.5)
            mean = statistics.fmean(r["stamps"][i + 1] - r["stamps"][i] for r in tail)
            excess.append(f"{name} +{(mean - median) * ms:.2f}")
        out += [
            "",
            f"The slowest 1% of relayed posts ({len(tail)}, total "
            f"{statistics.fmean(r['total'] for r in tail) * ms:.2f} ms on average): each "
            "segment's mean over its median, ms: " + ", ".join(excess),
        ]
    if directs:
        tail_d = sorted(directs, key=lambda d: -d[3])[: max(1, len(directs) // 100)]
        parts = []
        for i, name in enumerate(("to", "E", "back")):
            median = _rank([d[i] for d in directs], 0.5)
            parts.append(f"{name} +{(statistics.fmean(d[i] for d in tail_d) - median) * ms:.2f}")
        out.append(
            f"The slowest 1% of direct posts ({len(tail_d)}, total "
            f"{statistics.fmean(d[3] for d in tail_d) * ms:.2f} ms on average): " + ", ".join(parts)
        )
    flushes = gateway["flush"]
    big = [f for f in flushes if f[2] >= 2]

    def overlap(a: float, b: float) -> float:
        spans = [(float(f[0]), float(f[0] + f[1])) for f in big]
        return sum(min(b, end) - max(a, start) for start, end in spans if start < b and end > a)

    out += ["", "Slow gateway segments (> 2 ms): how much of the wait a flush was running:", ""]
    for name, i in (("A", 0), ("C", 2), ("F", 5), ("G", 6), ("I", 8)):
        slow = [(r["stamps"][i], r["stamps"][i + 1]) for r in rows]
        slow = [(a, b) for a, b in slow if b - a > 0.002]
        if slow:
            share = statistics.fmean(overlap(a, b) / (b - a) for a, b in slow)
            out.append(f"- {name}: {len(slow)} slow, {share:.0%} of their wait inside a flush")
    if big:
        wall = [f[1] for f in big]
        cpu = [f[3] for f in big]
        out.append(
            f"- flushes of 2+ outboxes: {len(big)}, up to {max(f[2] for f in big)} outboxes; "
            f"wall p50 {_rank(wall, 0.5) * ms:.2f} p99 {_rank(wall, 0.99) * ms:.2f} "
            f"max {max(wall) * ms:.2f} ms; CPU p50 {_rank(cpu, 0.5) * ms:.2f} "
            f"p99 {_rank(cpu, 0.99) * ms:.2f} max {max(cpu) * ms:.2f} ms"
        )
    snaps = {(e[0], e[1]): e for e in gateway["sched"]}
    waits = []
    for rid in at.get("g_relay", {}):
        pid = rid_to_pid.get(rid)
        a, b = snaps.get(("g_upwrite", pid)), snaps.get(("g_upread", pid))
        if a and b:
            waits.append((b[2] - a[2], (b[3] - a[3]) / 1e9, (b[4] - a[4]) / 1e9))
    if waits:
        slowest = sorted(waits, key=lambda w: -w[0])[: max(1, len(waits) // 50)]
        out.append(
            "- post link, write to answer read, slowest 2%: wall "
            f"{statistics.fmean(w[0] for w in slowest) * ms:.2f} ms, of which the gateway ran "
            f"{statistics.fmean(w[1] for w in slowest) * ms:.2f} ms and waited for a core "
            f"{statistics.fmean(w[2] for w in slowest) * ms:.2f} ms"
        )
    collections = gateway["gc"]
    if collections:
        window = (bench[0][2], bench[-1][3])
        during = [c for c in collections if window[0] <= c[0] <= window[1]]
        longest = max((c[1] for c in during), default=0.0)
        full = [c for c in during if c[2] == 2]
        out.append(
            f"- garbage collections while posting: {len(during)}, {len(full)} of the oldest "
            f"generation, longest {longest * ms:.1f} ms"
        )
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("gateway", "simulator"):
        return child(sys.argv[1], sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench.trading.trace")
    parser.add_argument("--posts", type=int, default=500, help="order + cancel pairs per path")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--gateway-ref", help="trace this commit's gateway first, then ours")
    parser.add_argument("--crowd", choices=("python", "c"), default="c", help="the data clients")
    args = parser.parse_args()
    from bench.fanout.run import build_delivery, export_ref, git_commit
    from bench.trading.__main__ import run

    gateways: list[tuple[str, Path | None]] = []
    if args.gateway_ref:
        exported, sha = export_ref(args.gateway_ref)
        build_delivery(exported)
        gateways.append((sha, exported))
    gateways.append((git_commit(), None))
    print(
        f"command: `python -m bench.trading.trace --posts {args.posts} --clients {args.clients}"
        f" --crowd {args.crowd}"
        + (f" --gateway-ref {args.gateway_ref}`" if args.gateway_ref else "`")
    )
    for label, src in gateways:
        directory = Path(tempfile.mkdtemp(prefix="bench-trading-trace-"))
        result = run(
            args.posts, args.clients, args.seed, src, trace=directory, crowd_kind=args.crowd
        )
        load = ", ".join(f"{x:.2f}" for x in result["load"][0])
        print(f"\n### gateway {label}: load before {load}\n")
        print("\n".join(analyze(directory, result["trace"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Several load generators as one: their reports merged into one report.

One process cannot hold more sockets than RLIMIT_NOFILE (20,000 here), so past
that the clients are spread over several load generators, each on its own
source addresses. Run with `--detail`, each reports every tick it saw (the
tick's time, its first and last receipt, how many clients got it) and its
latency histogram's buckets; merged, a tick's completion is the last receipt
anywhere minus the first anywhere, complete when every reading client of every
process got it, and the latency percentiles come from the summed buckets
(the same log-linear layout as loadgen.c's, so nothing is approximated twice).
Sans I/O: plain dicts in, one dict out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SUB_BITS = 6  # loadgen.c's histogram: 64 linear sub-buckets per power of two
SUB = 1 << SUB_BITS

Report = dict[str, Any]


def bucket_mid(index: int) -> float:
    """The value loadgen.c reports for a bucket (`hmid`)."""
    if index < SUB:
        return float(index)
    exponent = index // SUB + SUB_BITS - 1
    lower = (SUB + index % SUB) << (exponent - SUB_BITS)
    return lower + (1 << (exponent - SUB_BITS)) / 2


def percentile(buckets: dict[int, int], q: float, maximum: float) -> float:
    """loadgen.c's `hpct` over summed buckets."""
    count = sum(buckets.values())
    if count == 0:
        return 0.0
    want = min(int(q * count), count - 1)
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen > want:
            return min(bucket_mid(index), maximum)
    return maximum


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p999/max/mean of exact values (nearest rank, as hpct picks)."""
    if not values:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return float(ordered[min(int(q * n), n - 1)])

    return {
        "count": n,
        "mean": round(math.fsum(ordered) / n, 1),
        "p50": rank(0.5),
        "p90": rank(0.9),
        "p99": rank(0.99),
        "p999": rank(0.999),
        "max": ordered[-1],
    }


def _merge_phase(phases: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "msgs",
        "ctrl",
        "bytes",
        "wire_bytes",
        "compressed_frames",
        "other_frames",
        "pings",
        "disconnects",
        "cpu_seconds",
    ):
        out[key] = sum(p.get(key, 0) for p in phases)
    out["seconds"] = max(p.get("seconds", 0.0) for p in phases)
    out["msgs_per_s"] = sum(p.get("msgs_per_s", 0.0) for p in phases)
    # Each process's own utilisation of its core, added up (they share one core).
    out["cpu_util"] = sum(p.get("cpu_util", 0.0) for p in phases)
    per_conn = [p.get("per_conn_msgs", {}) for p in phases]
    out["per_conn_msgs"] = {
        "min": min((c.get("min", 0) for c in per_conn), default=0),
        "p50": sorted(c.get("p50", 0) for c in per_conn)[len(per_conn) // 2],
        "max": max((c.get("max", 0) for c in per_conn), default=0),
    }
    buckets: dict[int, int] = {}
    for p in phases:
        for index, count in p.get("latency_buckets", []):
            buckets[index] = buckets.get(index, 0) + count
    lat_max = max(float(p["latency_us"]["max"]) for p in phases)
    lat_count = sum(buckets.values())
    out["latency_us"] = {
        "count": lat_count,
        "negative": sum(p["latency_us"].get("negative", 0) for p in phases),
        "mean": round(
            sum(p["latency_us"]["mean"] * p["latency_us"]["count"] for p in phases)
            / max(lat_count, 1),
            1,
        ),
        **{
            name: percentile(buckets, q, lat_max)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
        },
        "max": lat_max,
    }
    # Ticks: the same tick time across processes is one broadcast.
    ticks: dict[int, list[int]] = {}
    for p in phases:
        for ts, first, last, count in p.get("ticks", []):
            tick = ticks.get(ts)
            if tick is None:
                ticks[ts] = [first, last, count]
            else:
                tick[0] = min(tick[0], first)
                tick[1] = max(tick[1], last)
                tick[2] += count
    complete = [t for t in ticks.items() if t[1][2] >= expected]
    out["ticks_complete"] = len(complete)
    out["ticks_incomplete"] = len(ticks) - len(complete)
    out["ticks_open_at_end"] = 0
    out["completion_us"] = summary([last - first for _, (first, last, _) in complete])
    out["first_us"] = summary([first - ts * 1000 for ts, (first, _, _) in complete])
    return out


def merge(reports: Sequence[Report]) -> Report:
    """One report (loadgen.c's shape) for several processes' reports (each with --detail)."""
    if len(reports) == 1:
        return dict(reports[0])
    merged: Report = {}
    for key in (
        "n",
        "open",
        "subscribed",
        "failed",
        "fail_http",
        "deflate_negotiated",
        "server_no_context_takeover",
        "expected_readers",
        "total_msgs",
        "cpu_seconds",
        "closed_without_close_frame",
        "fail_eof",
        "uring_rearms",
        "uring_nobufs",
        "uring_enters",
    ):
        merged[key] = sum(r.get(key, 0) for r in reports)
    merged["io"] = ",".join(sorted({str(r.get("io", "epoll")) for r in reports}))
    merged["connect_seconds"] = max(r.get("connect_seconds", 0.0) for r in reports)
    merged["maxrss_kb"] = sum(r.get("maxrss_kb", 0) for r in reports)
    for key in ("fail_errno", "fail_status", "close_codes"):
        counts: dict[str, int] = {}
        for r in reports:
            for name, count in r.get(key, {}).items():
                counts[name] = counts.get(name, 0) + count
        merged[key] = counts
    expected = merged["expected_readers"]
    names = {name for r in reports for name in r.get("phases", {})}
    merged["phases"] = {
        name: _merge_phase([r["phases"][name] for r in reports if name in r["phases"]], expected)
        for name in sorted(names)
    }
    merged["processes"] = len(reports)
    return merged

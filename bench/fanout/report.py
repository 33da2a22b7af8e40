"""docs/benchmarks.md and docs/bench/*.png, from every results file in docs/bench/.

Each run of `python -m bench.fanout --label L` leaves docs/bench/results-L.json;
the page is regenerated from all of them, one section per design, plus a side by
side table when there is more than one. Text between the `notes:begin` and
`notes:end` markers of the existing page is kept (hand-written observations), and
so is everything from the `other:begin` marker on (the other benchmarks' sections)
and the summary between the `summary:begin` and `summary:end` markers, kept at the
very top (hand-written: every benchmark's headline numbers, for newcomers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.fanout.steering import describe

SUMMARY_BEGIN = "<!-- summary:begin: hand-written, kept at the top when the page is regenerated -->"
SUMMARY_END = "<!-- summary:end -->"
NOTES_BEGIN = "<!-- notes:begin -->"
NOTES_END = "<!-- notes:end -->"
OTHER_BEGIN = "<!-- other:begin: the sections below are kept as they are -->"
SERVER_NAMES = {"gateway": "gateway", "node": "Node ws", "floor": "C floor"}
SERVERS = ("gateway", "node", "floor")

Results = dict[str, Any]


# -- helpers ---------------------------------------------------------------------------
def _agg(results: Results, scenario_id: str, server: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = results.get("aggregate", {}).get(scenario_id, {}).get(server)
    return value


def _ids(results: Results, key: str) -> list[str]:
    return [s["id"] for s in results.get("scenarios", []) if s["key"] == key]


def _scenario(results: Results, scenario_id: str) -> dict[str, Any]:
    for s in results.get("scenarios", []):
        if s["id"] == scenario_id:
            found: dict[str, Any] = s
            return found
    return {}


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _completion(m: dict[str, Any]) -> str:
    """Completion p99, or why there is none (no tick reached every client in the window)."""
    if m.get("ticks_complete") == 0:
        return "no tick complete"
    return _num(m.get("completion_p99_ms"), 1)


def _runs_text(m: dict[str, Any], key: str, digits: int = 0) -> str:
    runs = m.get(f"{key}_runs")
    if not runs:
        return _num(m.get(key), digits)
    return f"{_num(m.get(key), digits)} ({', '.join(_num(v, digits) for v in runs)})"


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "run"


# -- targets ---------------------------------------------------------------------------
def targets(results: Results) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the issue's targets."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**not met**")

    for n in (1000, 5000):
        gw, node = (_agg(results, f"saturation@{n}", s) for s in ("gateway", "node"))
        r = _ratio(gw and gw.get("msgs_per_s"), node and node.get("msgs_per_s"))
        rows.append(
            (
                f"saturation, {n:,} clients: delivered msg/s >= 1.5x Node",
                _ratio_text(r),
                verdict(None if r is None else r >= 1.5),
            )
        )
    gw = _agg(results, "rate-1@10000", "gateway")
    p99 = gw.get("completion_p99_ms") if gw else None
    rows.append(
        (
            "10k clients at 1 tick/s: broadcast completion p99 < 50 ms",
            "-" if p99 is None else f"{p99:.1f} ms",
            verdict(None if p99 is None else p99 < 50),
        )
    )
    gw = _agg(results, "idle@10000", "gateway")
    kib = gw.get("kib_per_conn") if gw else None
    rows.append(
        (
            "<= 12 KiB RSS per idle connection at 10k",
            "-" if kib is None else f"{kib:.2f} KiB",
            verdict(None if kib is None else kib <= 12),
        )
    )
    big = [i for i in _ids(results, "idle") if i != "idle@10000"]
    for scenario_id in big:
        gw = _agg(results, scenario_id, "gateway")
        n = _scenario(results, scenario_id).get("clients", 0)
        held = gw.get("open") if gw else None
        rows.append(
            (
                f"20k connections held by one process (measured: {n:,})",
                "-" if held is None else f"{held:,} open",
                verdict(None if held is None else held >= n) + ("" if n >= 20_000 else " (at n)"),
            )
        )
    rows += floor_targets(results)
    for scenario_id in _ids(results, "saturation-deflate") + _ids(
        results, "saturation-deflate-d20"
    ):
        gw, node = (_agg(results, scenario_id, s) for s in ("gateway", "node"))
        r = _ratio(gw and gw.get("msgs_per_s"), node and node.get("msgs_per_s"))
        rows.append(
            (
                f"compression on ({scenario_id}): >= 3x Node with compression on",
                _ratio_text(r),
                verdict(None if r is None else r >= 3),
            )
        )
    return rows


def floor_targets(results: Results) -> list[tuple[str, str, str]]:
    """Issue 24's targets: near the C floor at 10k clients, and 100k on one box."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**not met**")

    gw, node, floor = (_agg(results, "rate-1@10000", s) for s in SERVERS)
    if gw and floor:
        r = _ratio(gw.get("completion_p99_ms"), floor.get("completion_p99_ms"))
        rows.append(
            (
                "10k clients, 1 tick/s: gateway completion p99 <= 1.5x the C floor's",
                f"{_num(gw.get('completion_p99_ms'), 1)} / "
                f"{_num(floor.get('completion_p99_ms'), 1)} ms = {_ratio_text(r)}",
                verdict(None if r is None else r <= 1.5),
            )
        )
        r = _ratio(gw.get("cpu_us_per_msg"), floor.get("cpu_us_per_msg"))
        rows.append(
            (
                "10k clients, 1 tick/s: gateway CPU per delivered message <= 1.5x the floor's",
                f"{_num(gw.get('cpu_us_per_msg'), 2)} / {_num(floor.get('cpu_us_per_msg'), 2)} "
                f"us = {_ratio_text(r)}",
                verdict(None if r is None else r <= 1.5),
            )
        )
    if gw and node:
        r = _ratio(gw.get("completion_p99_ms"), node.get("completion_p99_ms"))
        rows.append(
            (
                "10k clients, 1 tick/s: gateway completion p99 <= 0.4x Node's",
                f"{_num(gw.get('completion_p99_ms'), 1)} / "
                f"{_num(node.get('completion_p99_ms'), 1)} ms = {_ratio_text(r)}",
                verdict(None if r is None else r <= 0.4),
            )
        )
    # The box scenario (connections first, then ticks) where it was run, else rate-1@100000.
    box_id = "box@100000" if _agg(results, "box@100000", "gateway") else "rate-1@100000"
    box = _agg(results, box_id, "gateway")
    if box:
        kib, p99 = box.get("kib_per_conn"), box.get("completion_p99_ms")
        held = box.get("open", 0)
        rows.append(
            (
                f"100,000 authenticated connections on one box: < 4 KiB each ({box_id})",
                f"{_num(held)} held, {_num(kib, 2)} KiB",
                verdict(None if kib is None else kib < 4 and held >= 100_000),
            )
        )
        complete = box.get("ticks_complete", 0)
        rows.append(
            (
                f"100,000 connections, 1 tick/s to all: completion p99 < 2 s ({box_id})",
                f"{_num(p99, 1)} ms ({_num(complete)} ticks complete)",
                verdict(None if p99 is None else p99 < 2000 and complete > 0),
            )
        )
    return rows


# -- sections --------------------------------------------------------------------------
def _throughput_rows(results: Results, keys: Sequence[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for key in keys:
        for scenario_id in _ids(results, key):
            gw, node = (_agg(results, scenario_id, s) for s in ("gateway", "node"))
            if gw is None and node is None:
                continue
            g: dict[str, Any] = gw or {}
            n: dict[str, Any] = node or {}
            rows.append(
                [
                    scenario_id,
                    _runs_text(g, "msgs_per_s"),
                    _runs_text(n, "msgs_per_s"),
                    _ratio_text(_ratio(g.get("msgs_per_s"), n.get("msgs_per_s"))),
                    f"{_num(g.get('ticks_per_s'), 1)} / {_num(n.get('ticks_per_s'), 1)}",
                    f"{_num(g.get('latency_p99_ms'), 1)} / {_num(n.get('latency_p99_ms'), 1)}",
                    f"{_completion(g)} / {_completion(n)}",
                    f"{_num(g.get('bytes_per_msg'))} / {_num(n.get('bytes_per_msg'))}",
                    f"{_num(g.get('compressed_share'), 2)} / {_num(n.get('compressed_share'), 2)}",
                    f"{_num(g.get('server_cpu'), 2)} / {_num(n.get('server_cpu'), 2)}",
                    f"{_num(g.get('core0_busy'), 2)} / {_num(n.get('core0_busy'), 2)}",
                    f"{_num(g.get('loadgen_cpu'), 2)} / {_num(n.get('loadgen_cpu'), 2)}",
                    f"{_num(g.get('core1_busy'), 2)} / {_num(n.get('core1_busy'), 2)}",
                    f"{_num(g.get('other_cpu'), 2)} / {_num(n.get('other_cpu'), 2)}",
                    f"{_num(g.get('server_rss_max_mib'))} / {_num(n.get('server_rss_max_mib'))}",
                ]
            )
    return rows


THROUGHPUT_HEADER = [
    "scenario@clients",
    "gateway msg/s (runs)",
    "Node msg/s (runs)",
    "gateway/Node",
    "ticks/s gw / Node",
    "latency p99 ms gw / Node",
    "completion p99 ms gw / Node",
    "wire B/msg gw / Node",
    "compressed share gw / Node",
    "server process CPU gw / Node",
    "core 0 busy gw / Node",
    "loadgen CPU gw / Node",
    "core 1 busy gw / Node",
    "other CPU gw / Node",
    "server RSS MiB gw / Node",
]


def _rate_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    for key in ("rate-1", "rate-10"):
        for scenario_id in _ids(results, key):
            for server in SERVERS:
                m = _agg(results, scenario_id, server)
                if m is None:
                    continue
                rows.append(
                    [
                        scenario_id,
                        SERVER_NAMES[server],
                        f"{_num(m.get('msgs_per_s'))} / {_num(m.get('demand_msgs_per_s'))}",
                        _num(m.get("latency_p50_ms"), 2),
                        _num(m.get("latency_p99_ms"), 2),
                        _num(m.get("latency_max_ms"), 1),
                        _num(m.get("completion_p50_ms"), 2),
                        _num(m.get("completion_p99_ms"), 2),
                        _num(m.get("completion_max_ms"), 1),
                        f"{_num(m.get('ticks_complete'))} / {_num(m.get('ticks_incomplete'))}",
                        _num(m.get("server_cpu"), 2),
                        _num(m.get("core0_busy"), 2),
                        _num(m.get("loadgen_cpu"), 3),
                        _num(m.get("other_cpu"), 2),
                    ]
                )
    return rows


RATE_HEADER = [
    "scenario@clients",
    "server",
    "msg/s got / sent",
    "latency p50 ms",
    "p99 ms",
    "max ms",
    "completion p50 ms",
    "p99 ms",
    "max ms",
    "ticks complete / incomplete",
    "server CPU",
    "core 0 busy",
    "loadgen CPU",
    "other CPU",
]


def _idle_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    for scenario_id in _ids(results, "idle"):
        for server in SERVERS:
            m = _agg(results, scenario_id, server)
            if m is None:
                continue
            rows.append(
                [
                    scenario_id,
                    SERVER_NAMES[server],
                    f"{_num(m.get('open'))} / {_num(m.get('clients'))}",
                    _num(m.get("connect_s"), 1),
                    _num(m.get("rss_base_mib"), 1),
                    _num(m.get("rss_mib"), 1),
                    _num(m.get("kib_per_conn"), 2),
                ]
            )
    return rows


def _slow_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    for scenario_id in _ids(results, "slow"):
        for server in ("gateway", "node"):
            m = _agg(results, scenario_id, server)
            if m is None:
                continue
            rows.append(
                [
                    SERVER_NAMES[server],
                    f"{_num(m.get('msgs_per_s'))} / {_num(m.get('demand_msgs_per_s'))}",
                    f"{_num(m.get('latency_p50_ms'), 1)} / {_num(m.get('latency_p99_ms'), 1)}",
                    f"{_num(m.get('slow_msgs_per_s'))} / {_num(m.get('slow_demand_msgs_per_s'))}",
                    f"{_num(m.get('slow_latency_p50_ms'), 1)} / "
                    f"{_num(m.get('slow_latency_p99_ms'), 1)}",
                    _num(m.get("slow_completion_p99_ms"), 1),
                    _num(m.get("slow_per_conn_min")),
                    _num(m.get("slow_disconnects")),
                    json.dumps(m.get("close_codes", {})),
                    f"{_num(m.get('rss_at_slow_start_mib'), 1)} -> "
                    f"+{_num(m.get('rss_growth_mib'), 1)}",
                    f"{_num(m.get('kernel_sendq_mib'), 1)} / {_num(m.get('kernel_sendq_max_kib'))}",
                ]
            )
    return rows


SLOW_HEADER = [
    "server",
    "before: msg/s got / sent",
    "before: latency p50 / p99 ms",
    "slow phase: healthy msg/s got / sent",
    "slow phase: latency p50 / p99 ms",
    "slow phase: completion p99 ms",
    "slow phase: fewest msgs to a healthy client",
    "slow clients cut",
    "close codes seen",
    "RSS MiB at slow start -> growth",
    "kernel send queues at the end: total MiB / largest KiB",
]


def _processes(m: dict[str, Any], server: str) -> str:
    n = m.get("server_processes", 1)
    if n <= 1:
        return "1"
    kind = {"gateway": "workers + Redis", "node": "cluster workers", "floor": "processes"}
    return f"{n} {kind[server]}"


def _floor_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    for scenario_id in _ids(results, "rate-1"):
        gw, node, floor = (_agg(results, scenario_id, s) or {} for s in SERVERS)
        if not gw and not floor:
            continue

        def cell(m: dict[str, Any]) -> str:
            if not m:
                return "-"
            return f"{_num(m.get('completion_p50_ms'), 1)} / {_num(m.get('completion_p99_ms'), 1)}"

        rows.append(
            [
                scenario_id,
                cell(gw),
                cell(node),
                cell(floor),
                f"{_num(gw.get('cpu_us_per_msg'), 2)} / {_num(node.get('cpu_us_per_msg'), 2)} / "
                f"{_num(floor.get('cpu_us_per_msg'), 2)}",
                _ratio_text(_ratio(gw.get("completion_p99_ms"), floor.get("completion_p99_ms"))),
                _ratio_text(_ratio(gw.get("completion_p99_ms"), node.get("completion_p99_ms"))),
                _ratio_text(_ratio(gw.get("cpu_us_per_msg"), floor.get("cpu_us_per_msg"))),
                f"{_num(gw.get('msgs_per_s'))} / {_num(node.get('msgs_per_s'))} / "
                f"{_num(floor.get('msgs_per_s'))} of {_num(gw.get('demand_msgs_per_s'))}",
                " / ".join(
                    _processes(m, s) if m else "-"
                    for m, s in zip((gw, node, floor), SERVERS, strict=True)
                ),
                f"{_num(gw.get('loadgen_cpu'), 2)} / {_num(node.get('loadgen_cpu'), 2)} / "
                f"{_num(floor.get('loadgen_cpu'), 2)}",
                f"{_num(gw.get('other_cpu'), 2)} / {_num(node.get('other_cpu'), 2)} / "
                f"{_num(floor.get('other_cpu'), 2)}",
                f"{_num(gw.get('backlog_drops'))} / {_num(node.get('backlog_drops'))} / "
                f"{_num(floor.get('backlog_drops'))}",
            ]
        )
    return rows


FLOOR_HEADER = [
    "scenario@clients",
    "gateway completion p50 / p99 ms",
    "Node completion p50 / p99 ms",
    "C floor completion p50 / p99 ms",
    "CPU us per delivered message gw / Node / floor",
    "gw/floor p99",
    "gw/Node p99",
    "gw/floor CPU",
    "msg/s gw / Node / floor",
    "processes gw / Node / floor",
    "loadgen CPU gw / Node / floor",
    "other CPU gw / Node / floor",
    "backlog drops gw / Node / floor",
]


def _box_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    ids = [i for i in _ids(results, "rate-1") if _scenario(results, i).get("clients", 0) >= 50_000]
    for scenario_id in ids + _ids(results, "box") + _ids(results, "limit"):
        for server in SERVERS:
            m = _agg(results, scenario_id, server)
            if m is None:
                continue
            refused = m.get("refused_http") or {}
            rows.append(
                [
                    scenario_id,
                    SERVER_NAMES[server],
                    _processes(m, server),
                    f"{_num(m.get('open'))} / {_num(m.get('clients'))}",
                    _num(m.get("accepts_per_s")),
                    _num(m.get("kib_per_conn"), 2),
                    f"{_num(m.get('completion_p50_ms'), 1)} / "
                    f"{_num(m.get('completion_p99_ms'), 1)}",
                    f"{_num(m.get('msgs_per_s'))} / {_num(m.get('demand_msgs_per_s'))}",
                    ", ".join(f"HTTP {k}: {v:,}" for k, v in sorted(refused.items()))
                    + (f"{', ' if refused else ''}closed: {m['refused_eof']:,}")
                    + "".join(
                        f", {k}: {v:,}" for k, v in sorted((m.get("refused_errno") or {}).items())
                    )
                    if m.get("failed")
                    else "0",
                    "yes"
                    if m.get("alive", True) and not m.get("processes_lost")
                    else f"**no** ({m.get('processes_lost', 0)} processes lost)",
                ]
            )
    return rows


BOX_HEADER = [
    "scenario@clients",
    "server",
    "processes",
    "open / asked",
    "accepted per s",
    "KiB per connection",
    "completion p50 / p99 ms",
    "msg/s got / sent",
    "refused (how)",
    "survived",
]


def _storm_rows(results: Results) -> list[list[str]]:
    """Per size: the accept rate with ticks flowing to those already back (`storm`) and
    with none (`storm-calm`), for the gateway and the floor, and their ratios."""
    rows: list[list[str]] = []
    sizes = [_scenario(results, i).get("clients", 0) for i in _ids(results, "storm")]
    sizes += [
        n
        for i in _ids(results, "storm-calm")
        if (n := _scenario(results, i).get("clients", 0)) not in sizes
    ]
    for n in sizes:
        gw, floor = (_agg(results, f"storm@{n}", s) or {} for s in ("gateway", "floor"))
        gw_calm, floor_calm = (
            _agg(results, f"storm-calm@{n}", s) or {} for s in ("gateway", "floor")
        )
        if not (gw or floor or gw_calm or floor_calm):
            continue

        def rate(m: dict[str, Any]) -> Any:
            return m.get("accepts_per_s") if m else None

        def held(*ms: dict[str, Any]) -> str:
            return " / ".join(f"{_num(m.get('open'))}" if m else "-" for m in ms)

        rows.append(
            [
                f"{n:,}",
                " / ".join(
                    _processes(m, s) if m else "-" for m, s in ((gw, "gateway"), (floor, "floor"))
                ),
                f"{_num(rate(gw))} / {_num(rate(gw_calm))}",
                f"{_num(rate(floor))} / {_num(rate(floor_calm))}",
                _ratio_text(_ratio(rate(gw), rate(gw_calm))),
                _ratio_text(_ratio(rate(floor), rate(floor_calm))),
                _ratio_text(_ratio(rate(gw), rate(floor))),
                _ratio_text(_ratio(rate(gw_calm), rate(floor_calm))),
                f"{_num(gw.get('connect_s'), 1)} / {_num(gw_calm.get('connect_s'), 1)}",
                held(gw, gw_calm, floor, floor_calm),
            ]
        )
    return rows


STORM_HEADER = [
    "clients",
    "processes gw / floor",
    "gateway accepts/s: ticks flowing / calm",
    "C floor accepts/s: flowing / calm",
    "gw flowing/calm",
    "floor flowing/calm",
    "gw/floor flowing",
    "gw/floor calm",
    "gateway s to connect all: flowing / calm",
    "held gw flowing / calm, floor flowing / calm",
]


ALT = {"slow": "slow consumers"}  # the plots' alt texts, where not their names


def _loops_line(results: Results) -> list[str]:
    """Which delivery loops the gateway ran (its /health), when the run recorded it."""
    seen = sorted(
        {
            str(r.get("delivery_loops"))
            for r in results.get("runs", [])
            if r.get("server") == "gateway" and r.get("delivery_loops")
        }
    )
    if not seen:
        return []
    names = {"c": "the C extension (server/_delivery.c)", "python": "the Python loops"}
    return [
        "- gateway delivery loops (its /health, every run): "
        + "; ".join(names.get(s, s) for s in seen)
    ]


def _loadgen_io_line(results: Results) -> str:
    """How the load generator received (loadgen.c --io), as every run reported it."""
    seen = sorted(
        {
            str(run.get("loadgen", {}).get("io", "epoll"))
            for run in results.get("runs", [])
            if "loadgen" in run
        }
    )
    names = {
        "epoll": "epoll_wait + one recv() per ready socket",
        "uring": "io_uring multishot recv into provided buffers (DEFER_TASKRUN)",
    }
    said = "; ".join(names.get(io, io) for io in seen) or "-"
    if "loadgen_io" not in results.get("placement", {}):
        said += " (recorded before the load generator had --io)"
    return f"- load generator receives with: {said}"


def design_section(results: Results, image_prefix: str) -> str:
    m = results["machine"]
    placement = results.get("placement", {})
    pin = (
        f"servers pinned to core {placement.get('server_core')}, load generator and pump to core "
        f"{placement.get('client_core')} (taskset)"
        if placement.get("taskset")
        else "not pinned (taskset missing or one core)"
    )
    parts = [
        f"## Results: {results['label']}",
        "",
        f"{results.get('description') or ''}".strip(),
        "",
        f"- date: {results['date']}; gateway measured: {results['commit']}; "
        f"run took {results['seconds']} s"
        + ("; **interrupted**" if results.get("interrupted") else "")
        + ("; quick run" if results.get("quick") else ""),
        f"- command: `{results['command']}`",
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']} (aiohttp {m['aiohttp']}), Node {m['node']} (ws {m['ws']}), "
        f"fd hard limit {m['fd_hard_limit']:,}",
        f"- placement: {pin}",
        f"- network: {describe(placement['receive_steering'])}"
        if "receive_steering" in placement
        else "- network: no receive steering (recorded before it existed)",
        *_loops_line(results),
        _loadgen_io_line(results),
        *[
            f"- re-run on {r['date']}: {', '.join(r['scenarios'])} (`{r['command']}`)"
            for r in results.get("reruns", [])
        ],
        "",
        "### Targets",
        "",
        _table(
            ["target (issue)", "measured", "verdict"],
            # A run of some scenarios only: the targets it did not measure are left out.
            [list(r) for r in targets(results) if r[1] != "-" or r[2] != "n/a"],
        ),
        "",
    ]

    def section(
        title: str, intro: str, header: Sequence[str], rows: list[list[str]], image: str
    ) -> list[str]:
        if not rows:  # a run of some scenarios only: what it did not measure is left out
            return []
        return [
            f"### {title}",
            "",
            *([intro, ""] if intro else []),
            _table(header, rows),
            "",
            *([f"![{ALT.get(image, image)}]({image_prefix}-{image}.png)", ""] if image else []),
        ]

    parts += section(
        "Saturation: delivered messages per second",
        "Median of the repetitions (each run in brackets). `ticks/s` is what each client got "
        "per second. CPU is in cores (1.00 = one core busy) over the measured window: the server "
        "process, core 0 (the server's core, kernel and softirq included: loopback TCP's receive "
        "path runs there on each send), the load generator, core 1 (load generator and pump), and "
        "`other`: everything else on the machine (near 0 when nothing disturbed the run).",
        THROUGHPUT_HEADER,
        _throughput_rows(results, ["saturation", "saturation-deflate", "saturation-deflate-d20"]),
        "saturation",
    )
    parts += section(
        "1 tick/s beside the C floor",
        "The C floor (bench/fanout/floor.c) does for each tick what no server can avoid: one "
        "prepared frame, one `send()` per client. Completion: per tick, the last client's "
        "receipt minus the first's; CPU per delivered message: the server's CPU (every process "
        "of it, Redis included for the gateway's workers) over the measured window per message "
        "the clients received, in microseconds.",
        FLOOR_HEADER,
        _floor_rows(results),
        "",
    )
    parts += section(
        "One box: many connections, and one process at its open-file limit",
        "Past one process's open files (RLIMIT_NOFILE) each server runs as several processes "
        "on one port and the clients come from several load generators. KiB per connection: "
        "the RSS of all of the server's processes once every client is connected and "
        "subscribed, less the same before the first, per connection (kernel socket buffers are "
        "not in it). `limit`: one process offered more clients than it may hold.",
        BOX_HEADER,
        _box_rows(results),
        "",
    )
    parts += section(
        "Reconnect storm: accepts per second while ticks flow to those already back",
        "Every client connects at once (at most 200 handshakes in flight per load "
        "generator), `storm`: while 1 tick/s already goes to the clients that are back; "
        "`storm-calm`: the same with no ticks until all are in. Accepts per second: clients "
        "/ seconds until the last is subscribed (TCP, upgrade with a JWT checked, subscribe "
        "answered). The load generator sends one token for every client.",
        STORM_HEADER,
        _storm_rows(results),
        "",
    )
    parts += section(
        "Fixed rate: latency (pump send -> client receipt) and broadcast completion",
        "",
        RATE_HEADER,
        _rate_rows(results),
        "latency",
    )
    parts += section(
        "Idle connections: RSS per connection",
        "",
        [
            "scenario",
            "server",
            "open / asked",
            "connect s",
            "RSS before MiB",
            "RSS after MiB",
            "KiB per connection",
        ],
        _idle_rows(results),
        "memory",
    )
    slow = _ids(results, "slow")
    if slow:
        s = _scenario(results, slow[0])
        parts += section(
            "Slow consumers",
            f"{s['clients']:,} clients at {s['rate']:g} ticks/s, {s['depth']}-level books; "
            f"after {s['slow_after']:g} s, {s['slow']} of them (SO_RCVBUF {s['slow_rcvbuf']} B) "
            f"stop reading for the remaining {s['duration'] - s['slow_after']:g} s. The gateway "
            f"runs with HLGATEWAY_OUTBOX_MAX_BYTES={s['outbox_max_bytes']:,} (lowered from "
            "the 4 MiB default so that its slow-consumer bound can be reached sooner; whether it "
            "was shows in the columns `slow clients cut` and `close codes seen`).",
            SLOW_HEADER,
            _slow_rows(results),
            "slow",
        )
    failures = results.get("failures") or []
    if failures:
        parts += ["### Failed runs", ""]
        parts += [
            f"- {f['server']} {f['scenario']} #{f['rep'] + 1}: {f['error']}" for f in failures
        ]
        parts.append("")
    return "\n".join(parts)


def side_by_side(all_results: Sequence[Results]) -> str:
    header = ["scenario@clients", "metric"] + [
        f"{r['label']}: {SERVER_NAMES[s]}" for r in all_results for s in ("gateway", "node")
    ]
    rows: list[list[str]] = []
    metrics = [
        ("saturation", "msgs_per_s", "msg/s", 0),
        ("saturation-deflate", "msgs_per_s", "msg/s", 0),
        ("saturation-deflate-d20", "msgs_per_s", "msg/s", 0),
        ("rate-1", "completion_p99_ms", "completion p99 ms", 1),
        ("rate-1", "latency_p99_ms", "latency p99 ms", 1),
        ("rate-10", "latency_p99_ms", "latency p99 ms", 1),
        ("idle", "kib_per_conn", "KiB/conn", 2),
        ("slow", "slow_latency_p99_ms", "slow phase p99 ms", 1),
        ("slow", "rss_growth_mib", "RSS growth MiB", 1),
    ]
    seen: list[str] = []
    for r in all_results:
        for s in r.get("scenarios", []):
            if s["id"] not in seen:
                seen.append(s["id"])
    for key, metric, name, digits in metrics:
        for scenario_id in seen:
            if scenario_id.split("@")[0] != key:
                continue
            cells = []
            for r in all_results:
                for server in ("gateway", "node"):
                    m = _agg(r, scenario_id, server)
                    cells.append(_num(m.get(metric), digits) if m else "-")
            rows.append([scenario_id, name, *cells])
    return _table(header, rows)


METHOD = Path(__file__).with_name("method.md")  # how it is measured, and its limits


def write_docs(out_dir: Path, results_dir: Path, extra: Sequence[Path] = ()) -> Path:
    """Rebuild `out_dir`/benchmarks.md and its plots from every results file."""
    files = sorted(results_dir.glob("results-*.json")) if results_dir.exists() else []
    files += [p for p in extra if p not in files]
    loaded: list[Results] = []
    for path in files:
        results: Results = json.loads(path.read_text())
        if any(r["label"] == results["label"] for r in loaded):
            loaded = [r for r in loaded if r["label"] != results["label"]]
        loaded.append(results)
    loaded.sort(key=lambda r: (r["label"] != "baseline", r["date"]))
    image_dir = out_dir / "bench"
    image_dir.mkdir(parents=True, exist_ok=True)
    doc = out_dir / "benchmarks.md"
    summary = notes = other = ""
    if doc.exists():
        text = doc.read_text()
        if SUMMARY_BEGIN in text and SUMMARY_END in text:
            summary = text.split(SUMMARY_BEGIN, 1)[1].split(SUMMARY_END, 1)[0].strip("\n")
        if NOTES_BEGIN in text and NOTES_END in text:
            notes = text.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0].strip("\n")
        if OTHER_BEGIN in text:
            other = OTHER_BEGIN + text.split(OTHER_BEGIN, 1)[1]
    from bench.fanout import plots

    parts = [SUMMARY_BEGIN, summary, SUMMARY_END, ""] if summary else []
    parts += [
        "# Benchmarks: fan-out",
        "",
        "Generated by `python -m bench.fanout` (bench/fanout/report.py) from the results files in "
        "`docs/bench/`; only the summary at the top and the notes between the markers are "
        "hand-written and kept across runs.",
        "",
        "The question: how many ticks per second can one gateway process deliver to how many "
        "clients, at what latency and memory, next to the seed's Node `ws` server doing the same "
        "job on the same machine in the same run.",
        "",
        METHOD.read_text().rstrip(),
        "",
        "## Notes",
        "",
        NOTES_BEGIN,
        notes,
        NOTES_END,
        "",
    ]
    if len(loaded) > 1:
        parts += [
            "## Designs side by side",
            "",
            "Medians; each design's run has its own Node reference measurement (the same code: "
            "a difference between its Node columns is the machine's run-to-run noise).",
            "",
            side_by_side(loaded),
            "",
            "![designs](bench/designs-saturation.png)",
            "",
        ]
        plots.designs(loaded, image_dir / "designs-saturation.png")
    for results in loaded:
        prefix = slug(results["label"])
        plots.design(results, image_dir, prefix)
        parts += [design_section(results, f"bench/{prefix}"), ""]
    if other:
        parts.append(other.rstrip())
    doc.write_text("\n".join(parts).rstrip() + "\n")
    return doc


def console_table(results: Results) -> str:
    rows: list[str] = []
    for scenario in results.get("scenarios", []):
        scenario_id = scenario["id"]
        gw, node, floor = (_agg(results, scenario_id, s) for s in SERVERS)
        if gw is None and node is None and floor is None:
            continue
        if scenario["mode"] == "idle":
            key, unit = "kib_per_conn", "KiB/conn"
        else:
            key, unit = "msgs_per_s", "msg/s"
        g = gw.get(key) if gw else None
        n = node.get(key) if node else None
        f = floor.get(key) if floor else None
        line = (
            f"{scenario_id:<28} {unit:<9} gateway {_num(g, 1):>12}  node {_num(n, 1):>12}"
            f"  floor {_num(f, 1):>12}"
        )
        r = _ratio(g, n)
        if r is not None:
            line += f"  gateway/node {r:5.2f}x"
        if scenario["mode"] != "idle":
            extra = []
            for name, m in (("gw", gw), ("node", node), ("floor", floor)):
                if m:
                    extra.append(
                        f"{name}: p99 {_num(m.get('latency_p99_ms'), 1)} ms, completion p99 "
                        f"{_num(m.get('completion_p99_ms'), 1)} ms, "
                        f"{_num(m.get('cpu_us_per_msg'), 2)} us CPU/msg, loadgen cpu "
                        f"{_num(m.get('loadgen_cpu'), 2)}, other cpu {_num(m.get('other_cpu'), 2)}"
                    )
            line += "\n    " + "; ".join(extra)
        rows.append(line)
    return "\n".join(rows)

"""PNG plots of a results file (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

Results = dict[str, Any]
COLORS = {"gateway": "#1f77b4", "node": "#7f7f7f"}
NAMES = {"gateway": "gateway", "node": "Node ws (seed)"}


def _agg(results: Results, scenario_id: str, server: str) -> dict[str, Any]:
    value: dict[str, Any] = results.get("aggregate", {}).get(scenario_id, {}).get(server) or {}
    return value


def _ids(results: Results, key: str) -> list[str]:
    return [s["id"] for s in results.get("scenarios", []) if s["key"] == key]


def _label(scenario_id: str) -> str:
    key, clients = scenario_id.split("@")
    n = int(clients)
    size = f"{n // 1000}k" if n % 1000 == 0 else f"{n / 1000:.1f}k"
    short = {
        "saturation": "",
        "saturation-deflate": "deflate ",
        "saturation-deflate-d20": "deflate d20 ",
        "rate-1": "1/s ",
        "rate-10": "10/s ",
        "idle": "",
        "slow": "",
    }.get(key, key + " ")
    return f"{short}{size}"


def _bars(
    ax: Axes,
    results: Results,
    ids: Sequence[str],
    metric: str,
    *,
    annotate_ratio: bool = False,
    fmt: str = "{:,.0f}",
) -> None:
    width = 0.38
    xs = list(range(len(ids)))
    for offset, server in ((-width / 2, "gateway"), (width / 2, "node")):
        values = [_agg(results, i, server).get(metric) or 0 for i in ids]
        bars = ax.bar(
            [x + offset for x in xs], values, width, label=NAMES[server], color=COLORS[server]
        )
        for bar, value in zip(bars, values, strict=True):
            if value:
                ax.annotate(
                    fmt.format(value),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    if annotate_ratio:
        for x, i in zip(xs, ids, strict=True):
            g = _agg(results, i, "gateway").get(metric)
            n = _agg(results, i, "node").get(metric)
            if g and n:
                ax.annotate(
                    f"{g / n:.2f}x",
                    (x, 0),
                    xytext=(0, -26),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                    color="#d62728",
                )
    ax.set_xticks(xs, [_label(i) for i in ids])
    ax.grid(axis="y", alpha=0.3)


def design(results: Results, out_dir: Path, prefix: str) -> list[Path]:
    """The plots of one design's run: saturation, latency, memory, slow consumers."""
    written: list[Path] = []
    title = f"{results['label']} ({results['date']})"

    sat = _ids(results, "saturation")
    deflate = _ids(results, "saturation-deflate") + _ids(results, "saturation-deflate-d20")
    if sat or deflate:
        fig, axes = plt.subplots(
            1,
            2,
            figsize=(11, 4.2),
            gridspec_kw={"width_ratios": [max(len(sat), 1), max(len(deflate), 1)]},
        )
        for ax, ids, name in (
            (axes[0], sat, "uncompressed"),
            (axes[1], deflate, "permessage-deflate"),
        ):
            if ids:
                _bars(ax, results, ids, "msgs_per_s", annotate_ratio=True)
            ax.set_title(f"saturation, {name}", fontsize=10)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        axes[0].set_ylabel("data messages delivered per second (all clients)")
        axes[0].legend(fontsize=8)
        fig.suptitle(
            f"Delivered msg/s at saturation (gateway/Node ratio in red): {title}", fontsize=10
        )
        fig.tight_layout()
        path = out_dir / f"{prefix}-saturation.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    rate = _ids(results, "rate-1") + _ids(results, "rate-10")
    if rate:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        _bars(axes[0], results, rate, "latency_p99_ms", fmt="{:.0f}")
        axes[0].set_title("latency p99 (pump send -> client receipt)", fontsize=10)
        axes[0].legend(fontsize=8, loc="upper left")
        _bars(axes[1], results, rate, "completion_p99_ms", fmt="{:.0f}")
        axes[1].axhline(50, color="#d62728", linestyle="--", linewidth=1)
        axes[1].text(
            0.99,
            50,
            "target (10k clients, 1/s): < 50 ms",
            transform=axes[1].get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=7,
            color="#d62728",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
        axes[1].set_title("broadcast completion p99 (first -> last client)", fontsize=10)
        for ax in axes:
            ax.set_yscale("log")
            ax.set_ylabel("ms (log scale)")
        fig.suptitle(f"Fixed tick rate: {title}", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{prefix}-latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    idle = _ids(results, "idle")
    if idle:
        fig, ax = plt.subplots(figsize=(6, 4))
        _bars(ax, results, idle, "kib_per_conn", fmt="{:.1f}")
        ax.axhline(12, color="#d62728", linestyle="--", linewidth=1)
        ax.text(
            0.5,
            12,
            "target: <= 12 KiB",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=7,
            color="#d62728",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
        ax.set_ylabel("KiB of server RSS per idle connection")
        ax.set_title(f"Idle connections: {title}", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{prefix}-memory.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    slow = _ids(results, "slow")
    if slow:
        scenario = next(s for s in results["scenarios"] if s["id"] == slow[0])
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in results.get("runs", []):
            if run.get("scenario") != slow[0] or "rss_series" not in run:
                continue
            series = run["rss_series"]
            ax.plot(
                [t for t, _ in series],
                [rss / 1024 for _, rss in series],
                label=f"{NAMES[run['server']]} (run {run['rep'] + 1})",
                color=COLORS[run["server"]],
            )
        start = scenario["warmup"] + scenario["slow_after"]
        ax.axvline(start, color="#d62728", linestyle="--", linewidth=1)
        ax.text(
            start,
            0.03,
            f" {scenario['slow']} of {scenario['clients']} clients stop reading",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="#d62728",
        )
        ax.set_xlabel("seconds since ticks started")
        ax.set_ylabel("server RSS, MiB")
        ax.set_title(f"Slow consumers: server memory: {title}", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{prefix}-slow.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def designs(all_results: Sequence[Results], path: Path) -> Path:
    """Saturation msg/s of every design's gateway, with each run's Node reference."""
    ids: list[str] = []
    for r in all_results:
        for key in ("saturation", "saturation-deflate", "saturation-deflate-d20"):
            ids += [i for i in _ids(r, key) if i not in ids]
    series: list[tuple[str, list[float], str]] = []
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, r in enumerate(all_results):
        series.append(
            (
                f"gateway: {r['label']}",
                [_agg(r, i, "gateway").get("msgs_per_s") or 0 for i in ids],
                palette[k % len(palette)],
            )
        )
    for r in all_results:
        series.append(
            (
                f"Node ws: {r['label']} run",
                [_agg(r, i, "node").get("msgs_per_s") or 0 for i in ids],
                "#bbbbbb",
            )
        )
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(ids)), 4.2))
    width = 0.8 / max(len(series), 1)
    for k, (name, values, color) in enumerate(series):
        xs = [x - 0.4 + width * (k + 0.5) for x in range(len(ids))]
        ax.bar(xs, values, width, label=name, color=color, edgecolor="white")
    ax.set_xticks(range(len(ids)), [_label(i) for i in ids])
    ax.set_ylabel("delivered msg/s")
    ax.set_title("Saturation across designs", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

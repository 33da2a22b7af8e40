"""Loopback receive steering: the clients' core, not the server's, receives.

On loopback, a send runs the receiver's half of TCP too (softirq on the sending
core): the server's core would pay for its clients' receive path, which on a
network is the clients' machines' work. RPS on `lo` (receive packet steering,
`/sys/class/net/lo/queues/rx-0/rps_cpus`) moves that half to the load
generator's core. Its per-CPU backlog must then hold a whole broadcast (10k
packets at once): the default `netdev_max_backlog` of 1000 drops the rest, and
TCP resends them after 200 ms or more, which would be measured as latency.

Both are machine-wide settings: they are applied for the run, for both servers
alike, and restored afterwards. Where they cannot be written (no root, a
read-only /sys) the run goes on without and says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RPS_CPUS = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
BACKLOG = Path("/proc/sys/net/core/netdev_max_backlog")
# Packets: more than the largest broadcast (100k clients) with room. The sending core
# fills the receiving core's backlog faster than it is drained (a send costs less than a
# receive), so about half a broadcast can wait there at once.
BACKLOG_NEEDED = 250_000
SOFTNET_STAT = Path("/proc/net/softnet_stat")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value + "\n")
    except OSError:
        return False
    return _read(path) is not None


@contextlib.contextmanager
def steer_receives(client_core: int, enabled: bool = True) -> Iterator[dict[str, Any]]:
    """Apply for the duration of the block; yields what was applied (for the results)."""
    info: dict[str, Any] = {"requested": enabled, "applied": False}
    old_rps, old_backlog = _read(RPS_CPUS), _read(BACKLOG)
    if not enabled:
        info["note"] = "off (--no-steering): receives run on the sending core"
        yield info
        return
    if old_rps is None or old_backlog is None:
        info["note"] = "not available here (no RPS on lo): receives run on the sending core"
        yield info
        return
    backlog = max(int(old_backlog), BACKLOG_NEEDED)
    mask = format(1 << client_core, "x")
    applied = _write(BACKLOG, str(backlog)) and _write(RPS_CPUS, mask)
    info.update(applied=applied, rps_cpus=mask, netdev_max_backlog=backlog)
    if not applied:
        info["note"] = "could not be written (needs root): receives run on the sending core"
    try:
        yield info
    finally:
        _write(RPS_CPUS, old_rps)
        _write(BACKLOG, old_backlog)


def still_applied(info: dict[str, Any]) -> bool:
    """Whether what `steer_receives` applied is still in place (another run on the
    machine may have restored its own values meanwhile: the measurement is then
    not what it says)."""
    if not info.get("applied"):
        return True
    return _read(RPS_CPUS) == info["rps_cpus"] and _read(BACKLOG) == str(info["netdev_max_backlog"])


def backlog_drops() -> int:
    """Packets dropped so far because a CPU's backlog was full (all CPUs; 0 if unknown).

    A drop is a packet TCP sends again 200 ms or more later: a run with drops in
    its measured window measures the retransmission timer, not the server.
    """
    try:
        per_cpu = SOFTNET_STAT.read_text().splitlines()
    except OSError:
        return 0
    # One line per CPU; the second column (hex) counts the drops.
    return sum(int(line.split()[1], 16) for line in per_cpu if len(line.split()) > 1)


def describe(info: dict[str, Any]) -> str:
    if info.get("applied"):
        return (
            f"loopback receives steered to the load generator's core (RPS mask "
            f"{info['rps_cpus']} on lo, netdev_max_backlog {info['netdev_max_backlog']:,})"
        )
    return f"no receive steering: {info.get('note', 'not recorded')}"

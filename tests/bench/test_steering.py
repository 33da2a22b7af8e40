"""The benchmark's receive steering, as far as a test may go without changing the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fanout import steering


def test_disabled_changes_nothing_and_says_so() -> None:
    before = steering._read(steering.RPS_CPUS), steering._read(steering.BACKLOG)
    with steering.steer_receives(1, enabled=False) as info:
        assert info == {
            "requested": False,
            "applied": False,
            "note": "off (--no-steering): receives run on the sending core",
        }
        assert (steering._read(steering.RPS_CPUS), steering._read(steering.BACKLOG)) == before
    assert steering.describe(info).startswith("no receive steering: off")


def test_applied_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same code on stand-in files: the real ones are machine-wide.
    rps, backlog = tmp_path / "rps_cpus", tmp_path / "netdev_max_backlog"
    rps.write_text("0\n")
    backlog.write_text("1000\n")
    monkeypatch.setattr(steering, "RPS_CPUS", rps)
    monkeypatch.setattr(steering, "BACKLOG", backlog)
    with steering.steer_receives(1) as info:
        assert (rps.read_text(), backlog.read_text()) == ("2\n", "250000\n")
        assert info["applied"] and "RPS mask 2" in steering.describe(info)
        assert steering.still_applied(info)
        rps.write_text("0\n")  # another run on the machine restores its own value
        assert not steering.still_applied(info)
    assert (rps.read_text(), backlog.read_text()) == ("0\n", "1000\n")


def test_unavailable_runs_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steering, "RPS_CPUS", tmp_path / "missing")
    with steering.steer_receives(1) as info:
        assert not info["applied"] and "not available" in info["note"]

"""A bounded sample of the socket fuzzer (bench/fuzz) against a real gateway process."""

from __future__ import annotations

from pathlib import Path

from bench.fuzz.run import run


async def test_malformed_frames_crash_nothing_and_spare_the_good_client(tmp_path: Path) -> None:
    report = await run(frames=3000, workers=8, time_limit=12, seed=1, log_file=tmp_path / "gw.log")
    assert report.crashes == 0, report.crash_details
    assert report.server_alive and report.server_exit_code == 0
    assert report.frames_sent >= 1000  # bounded by frames and by time; a slow machine sends fewer
    assert len(report.by_category) >= 6  # every kind of malformation was exercised
    assert report.clients_after == 1  # every fuzz connection is gone; the good one stays
    assert report.good_client_connected
    assert report.good_client_messages_during_fuzz > 0
    assert report.good_client_pings_answered > 0 or report.duration_s < 1
    assert report.rss_after_kib < report.rss_before_kib + 64 * 1024

"""A benchmark run writes its results into docs/benchmarks.md, in a section of its command's own;
bench.fanout regenerates the page's head and keeps the hand-written summary at the very top."""

from __future__ import annotations

from pathlib import Path

from bench.fanout.report import (
    NOTES_BEGIN,
    NOTES_END,
    OTHER_BEGIN,
    SUMMARY_BEGIN,
    SUMMARY_END,
    write_docs,
)
from bench.table import write_section


def test_a_run_replaces_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other:begin: kept -->\n")
    write_section("python -m bench.x --a", "## x a\nfirst", doc)
    write_section("python -m bench.x --b", "## x b\nonly", doc)
    write_section("python -m bench.x --a", "## x a\nsecond", doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- other:begin: kept -->\n")
    assert "first" not in text and text.count("second") == 1 and text.count("only") == 1
    assert text.index("## x a") < text.index("## x b")  # replaced where it was


def test_the_summary_stays_at_the_top_when_the_fanout_page_is_regenerated(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "benchmarks.md"
    summary = (
        f"{SUMMARY_BEGIN}\n# Where things stand\n\n| topic | now |\n|---|---|\n{SUMMARY_END}\n"
    )
    doc.write_text(
        f"{summary}\n# Benchmarks: fan-out\n\nstale\n\n{NOTES_BEGIN}\nmy notes\n{NOTES_END}\n\n"
        f"{OTHER_BEGIN}\n\n# Recovery\n\nkept\n"
    )
    no_results = tmp_path / "no-results"
    write_docs(tmp_path, no_results)
    write_section("python -m bench.x", "## x\nrun", doc)
    write_docs(tmp_path, no_results)
    text = doc.read_text()
    assert text.startswith(summary + "\n# Benchmarks: fan-out\n")
    assert text.count(SUMMARY_BEGIN) == 1 and text.count(SUMMARY_END) == 1
    assert "stale" not in text and "my notes" in text
    assert text.index(OTHER_BEGIN) < text.index("# Recovery\n\nkept") < text.index("## x\nrun")


def test_a_page_without_a_summary_gets_none(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks: fan-out\n\n{OTHER_BEGIN}\n")
    write_docs(tmp_path, tmp_path / "no-results")
    text = doc.read_text()
    assert text.startswith("# Benchmarks: fan-out\n") and SUMMARY_BEGIN not in text

"""A benchmark run writes its results into docs/benchmarks.md, in a section of its command's own."""

from __future__ import annotations

from pathlib import Path

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

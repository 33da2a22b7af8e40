"""The JavaScript client's unit tests (tests/js/unit.test.mjs) under Node's own test runner:
its stream cursor, refusal classes, handshake refusals, over a fake transport."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[1] / "js" / "unit.test.mjs"


@pytest.mark.requires("node")
async def test_js_unit_tests_pass() -> None:
    proc = await asyncio.create_subprocess_exec(
        "node",
        "--test",
        str(UNIT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "# fail 0" in text and "# pass 0" not in text

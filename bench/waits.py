"""Waiting, in the runs, for a condition another task or process makes true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(check: Callable[[], bool], timeout: float, quiet: bool = False) -> None:
    """Until `check()` holds; after `timeout` seconds raise TimeoutError (or return, if quiet)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            if quiet:
                return
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)

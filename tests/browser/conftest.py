"""A real gateway process on the embedded simulator, and Debian's Chromium driven by Playwright.

Chromium comes from Debian (`make install` runs `apt-get install chromium` when
/usr/bin/chromium is missing); Playwright only drives it: `playwright install`
(which downloads browsers) is never run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from tests.helpers import GatewayProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PRESENT = CHROMIUM.exists()
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
# Where screenshots go: `make screenshots` points this at docs/screenshots.
SCREENSHOTS = os.environ.get("HLGATEWAY_SCREENSHOTS")


@dataclass
class Browser:
    context: BrowserContext
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions

    async def page(self, **viewport: int) -> Page:
        page = await self.context.new_page()
        if viewport:
            await page.set_viewport_size({"width": viewport["width"], "height": viewport["height"]})
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


async def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    """Saved under tmp_path, and into docs/screenshots when asked (`make screenshots`)."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail("no /usr/bin/chromium: `make install` installs Debian's chromium")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir for every test
            executable_path=str(CHROMIUM),
            args=FLAGS,
            headless=True,
            viewport=DESKTOP,
        )
        try:
            yield Browser(context)
        finally:
            await context.close()


def gateway_process(tmp_path: Path, port: int | None = None) -> GatewayProcess:
    """INFO logs kept (to check that no token reaches them); no per-IP connection-rate
    limit: every test's page connects from 127.0.0.1 again and again."""
    return GatewayProcess(
        port or free_port(),
        log_file=tmp_path / "gateway.log",
        HLGATEWAY_LOG_LEVEL="INFO",
        HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE="0",
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    proc = gateway_process(tmp_path)
    await proc.start()
    yield proc
    await proc.terminate()

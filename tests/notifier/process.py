"""`hlgateway notifier` as a real process (for kill -9 and SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.helpers import SECRET, ChildProcess


class NotifierProcess(ChildProcess):
    """`hlgateway notifier` on the fake Bot API. `info_url=None` and `as_documented`
    start it as docs/notifier.md does (only --gateway, plus the fake Bot API and a
    database of the run's own): the info API is learned from the gateway, and the
    coalescing window and long poll are the defaults."""

    def __init__(
        self,
        gateway_ws: str,
        telegram_api: str,
        bot_token: str,
        database: str,
        info_url: str | None,
        log_file: Path,
        coalesce_ms: int = 200,
        as_documented: bool = False,
        **env: str,
    ) -> None:
        self.args = ["--gateway", gateway_ws, "--telegram-api", telegram_api]
        self.args += ["--database", database]
        if info_url is not None:
            self.args += ["--info-url", info_url]
        if not as_documented:
            self.args += ["--coalesce-ms", str(coalesce_ms), "--poll-timeout", "1"]
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": bot_token,
            "JWT_SECRET": SECRET,
            "HLGATEWAY_LOG_LEVEL": "INFO",
            **env,
        }
        self.log_file = log_file
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hlgateway",
                "notifier",
                *self.args,
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        ChildProcess.running.add(self)

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")

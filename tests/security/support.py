"""Helpers for the security tests: the full edge in-process, a real process with its logs."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp

from hlgateway.server.listener import listen
from tests.helpers import SECRET, GatewayServer


class EdgeServer(GatewayServer):
    """GatewayServer listening the way `hlgateway serve` does: with the request-head deadline."""

    async def start(self) -> None:
        await self.gateway.start()
        await self._runner.setup()
        site = await listen(self._runner, self.gateway.settings)
        self.port = site.port
        await asyncio.wait_for(self.gateway.upstream.markets_loaded.wait(), 10)

    async def health(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.http}/health") as resp,
        ):
            body: dict[str, Any] = await resp.json()
            return body


class LoggedProcess:
    """`hlgateway serve` as a real process, stderr (its logs) kept in a file."""

    def __init__(
        self,
        port: int,
        log_file: Path,
        *args: str,
        ssl_context: ssl.SSLContext | None = None,
        **env: str,
    ) -> None:
        self.port = port
        self.log_file = log_file
        self._args = args
        self._env = env
        self._ssl = ssl_context
        self.proc: asyncio.subprocess.Process | None = None
        scheme = "https" if ssl_context else "http"
        self.http = f"{scheme}://127.0.0.1:{port}"
        self.ws = f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{port}/ws"

    async def start(self) -> None:
        env = {**os.environ, "JWT_SECRET": SECRET, **self._env}
        with self.log_file.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hlgateway",
                "serve",
                "--port",
                str(self.port),
                *self._args,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = asyncio.get_running_loop().time() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.http}/health", ssl=self._ssl or False) as resp:
                        if resp.status == 200 and (await resp.json())["upstream"]["marketsLoaded"]:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline or self.proc.returncode is not None:
                    raise RuntimeError("gateway process did not become ready:\n" + self.logs())
                await asyncio.sleep(0.1)

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode or 0

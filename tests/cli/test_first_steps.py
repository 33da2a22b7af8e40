"""README.md's first ten minutes and docs/trading.md's ten lines, walked as a newcomer
walks them: `hlgateway serve` on the embedded simulator without JWT_SECRET (the local dev
secret), its banner as the README shows it, the README's `hlgateway token` command and
protocol messages, and the trading example run as printed (only the port differs) with
the token and the key that the banner printed."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import eth_account
import pytest

from tests.helpers import ChildProcess, eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TRADING = ROOT / "docs" / "trading.md"


def fenced(path: Path, containing: str, lang: str = "") -> str:
    """The first fenced block of `path` (of language `lang`) that holds `containing`."""
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", path.read_text(), re.S | re.M):
        if match.group(1) == lang and containing in match.group(2):
            return match.group(2)
    raise AssertionError(f"{path.name}: no ```{lang} block with {containing!r}")


class Serve(ChildProcess):
    """`hlgateway serve` as `make serve` runs it (no JWT_SECRET, the default state
    directory under the user's state home), on a port of the test's own."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "HLGATEWAY"))}
        self.env |= {"XDG_STATE_HOME": str(home), "HLGATEWAY_LOG_LEVEL": "WARNING"}
        self.banner: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hlgateway", "serve", "--port", str(self.port),
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        ChildProcess.running.add(self)
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):  # a bound on the start, never a measurement
            while not self.banner or not self.banner[-1].startswith("user 'trader'"):
                line = await self.proc.stdout.readline()
                assert line, f"serve exited before its banner ended: {self.banner}"
                self.banner.append(line.decode().rstrip("\n"))

    def line(self, start: str) -> str:
        return next(line for line in self.banner if line.startswith(start))


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    proc = Serve(tmp_path / "state-home")
    await proc.start()
    yield proc
    assert await proc.terminate() == 0


async def run(serve: Serve, *argv: str, cwd: Path | None = None) -> str:
    """A command of the walk; its stdout (it must exit 0)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=serve.env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)  # a bound: a hang fails
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{argv} did not end") from None
    assert proc.returncode == 0, err.decode()
    return out.decode()


def test_the_banner_is_the_one_the_readme_shows(serve: Serve) -> None:
    shown = fenced(README, "hlgateway is up").splitlines()
    assert len(serve.banner) == len(shown), serve.banner
    for printed, doc in zip(serve.banner, shown, strict=True):
        pattern = re.escape(doc).replace("8080", str(serve.port))
        pattern = pattern.replace(re.escape("/root/.local/state"), re.escape(str(serve.home)))
        pattern = pattern.replace(re.escape("eyJhbGciOi..."), r"eyJ[\w.-]+")
        pattern = re.sub(r"0x[0-9a-f]+\\\.\\\.\\\.", "0x[0-9a-f]+", pattern)  # 0x13f1...
        assert re.fullmatch(pattern, printed), (doc, printed)


async def test_the_readme_token_and_messages(serve: Serve) -> None:
    command = re.search(r"\$\(\.venv/bin/hlgateway (token [^)]*)\)", README.read_text())
    assert command is not None
    token = (await run(serve, sys.executable, "-m", "hlgateway", *shlex.split(command[1]))).strip()
    sent = [json.loads(line) for line in fenced(README, '"type":"ping"', "json").splitlines()]
    got: list[dict[str, Any]] = []
    url = f"ws://127.0.0.1:{serve.port}/ws?token={token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for msg in sent:
            await ws.send_json(msg)

        async def read() -> None:
            async for frame in ws:
                got.append(json.loads(frame.data))

        reader = asyncio.get_running_loop().create_task(read())
        subscribes = [msg["channel"] for msg in sent if msg["type"] == "subscribe"]
        snapshots = {"prices", "orderbook", "candles", "asset_context", "account_updates"}

        def answered() -> bool:
            kinds = [(m["type"], m.get("channel")) for m in got]
            return all(("data", c) in kinds for c in snapshots) and ("pong", None) in kinds

        try:
            await eventually(answered, 30)
        finally:
            reader.cancel()
    assert got[0]["type"] == "welcome"
    assert [m["channel"] for m in got if m["type"] == "subscribed"] == subscribes
    assert not [m for m in got if m["type"] == "error"]
    prices = next(m for m in got if m.get("channel") == "prices" and m["type"] == "data")
    assert set(prices["data"]) == {"BTC", "ETH", "HYPE/USDC", "xyz:XYZ100"}


@pytest.mark.parametrize("doc", [README, TRADING], ids=["README", "trading.md"])
async def test_the_trading_example_as_printed(serve: Serve, doc: Path, tmp_path: Path) -> None:
    """Run with the banner's trader token and key: the fill arrives on `user_fills`.
    With a key the exchange does not know, it prints why and ends (no endless wait)."""
    script = tmp_path / "trade.py"
    code = fenced(doc, "Trader.create", "python")
    script.write_text(code.replace("127.0.0.1:8080", f"127.0.0.1:{serve.port}"))
    trader_token = serve.line("user 'trader'").rsplit(" ", 1)[1]
    account, key = re.findall(r"0x[0-9a-f]+", serve.line("trading on the simulator"))
    out = await run(serve, sys.executable, str(script), trader_token, key, cwd=tmp_path)
    assert out.startswith("DataMessage(channel='user_fills'"), out
    assert f"'wallet': '{account}'" in out and "'symbol': 'ETH'" in out

    stranger = eth_account.Account.create()
    out = await run(serve, sys.executable, str(script), trader_token, stranger.key.hex())
    assert out.strip() == f"User or API Wallet {stranger.address.lower()} does not exist."


@pytest.mark.requires("node")
async def test_the_node_example_of_the_clients_doc(serve: Serve, tmp_path: Path) -> None:
    """docs/clients.md's watch.mjs as written (port aside), beside /client.js and `ws`:
    the refusal, a ping, the demo wallet's fills, and the position it saves."""
    url = f"http://127.0.0.1:{serve.port}/client.js"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        (tmp_path / "client.mjs").write_bytes(await resp.read())
    (tmp_path / "node_modules").symlink_to(ROOT / "tests" / "js" / "node_modules")
    code = fenced(ROOT / "docs" / "clients.md", "// watch.mjs", "javascript")
    (tmp_path / "watch.mjs").write_text(code.replace("127.0.0.1:8080", f"127.0.0.1:{serve.port}"))
    demo = serve.line("demo user").split()[4].rstrip(";")  # its wallet
    argv = ["token", "--user", "demo", "--wallet", demo]
    token = (await run(serve, sys.executable, "-m", "hlgateway", *argv)).strip()
    node = await asyncio.create_subprocess_exec(
        "node", "watch.mjs", token, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    assert node.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):  # the demo wallet fills every 10 s at most
            while not any(re.fullmatch(r"\d+ fill\(s\) \S+", line) for line in seen):
                line = await node.stdout.readline()
                assert line, f"node exited: {seen}"
                seen.append(line.decode().strip())
    finally:
        node.kill()
        await node.wait()
    assert "refused: FORBIDDEN" in seen and any(line.startswith("rtt ") for line in seen)
    saved = json.loads((tmp_path / "fills.json").read_text())
    assert isinstance(saved["offset"], int) and isinstance(saved["epoch"], str)


async def test_the_python_example_of_the_clients_doc(serve: Serve, tmp_path: Path) -> None:
    """docs/clients.md's prices.py as written (port aside), with the README's demo token."""
    script = tmp_path / "prices.py"
    code = fenced(ROOT / "docs" / "clients.md", "# prices.py", "python")
    script.write_text(code.replace("127.0.0.1:8080", f"127.0.0.1:{serve.port}"))
    demo = serve.line("demo user").split()[4].rstrip(";")
    argv = ["token", "--user", "demo", "--wallet", demo]
    token = (await run(serve, sys.executable, "-m", "hlgateway", *argv)).strip()
    lines = (await run(serve, sys.executable, str(script), token)).splitlines()
    assert lines[0].startswith("ping ") and lines[0].endswith(" ms")
    assert lines[1] == "refused: FORBIDDEN Not allowed to read user_fills of this user"
    assert lines[2].startswith("best bid (")
    assert [sorted(ast.literal_eval(line)) for line in lines[3:]] == [["BTC", "ETH"]] * 5

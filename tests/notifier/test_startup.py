"""`hlgateway notifier` started with a Bot API that refuses its token or cannot be
reached: one line that says which and where, no traceback (docs/notifier.md, Set-up)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.helpers import SECRET, free_port
from tests.notifier.fakebot import FakeBotApi


async def notifier(api: str, database: Path) -> tuple[int, str]:
    """Its exit status and stderr; the gateway is never reached (the Bot API comes first)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hlgateway", "notifier",
        "--gateway", f"ws://127.0.0.1:{free_port()}/ws", "--telegram-api", api,
        "--database", str(database),
        env={**os.environ, "TELEGRAM_BOT_TOKEN": "123456:not-this-bot", "JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)  # a bound: a hang fails
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_token_the_bot_api_refuses(fakebot: FakeBotApi, tmp_path: Path) -> None:
    code, err = await notifier(fakebot.url, tmp_path / "n.db")
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (
        f"hlgateway notifier: the Bot API at {fakebot.url} refused TELEGRAM_BOT_TOKEN "
        "(Unauthorized): check the token @BotFather gave"
    )
    assert "Traceback" not in err and "not-this-bot" not in err


async def test_a_bot_api_that_cannot_be_reached(tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, err = await notifier(api, tmp_path / "n.db")
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hlgateway notifier: cannot reach the Bot API at {api}: "), err
    assert "Traceback" not in err

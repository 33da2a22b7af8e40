"""`hlgateway notifier`: build the notifier from flags and environment, run it until
SIGTERM/SIGINT, and stop cleanly (requests in flight finish and are recorded)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hlgateway.auth import issue_token
from hlgateway.client import Backoff
from hlgateway.client.tokens import TokenSource, unverified_claims
from hlgateway.notifier.database import open_database
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.history import FillHistory
from hlgateway.notifier.service import Notifier, Options
from hlgateway.notifier.store import Store
from hlgateway.notifier.telegram import TelegramApi

log = logging.getLogger("hlgateway.notifier")

SERVICE_USER = "notifier"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which."""


def default_database() -> str:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "hlgateway" / "notifier.db")


def token_user(token: str) -> str:
    """The user id (`id`, else `sub`) of a JWT, read without verifying it."""
    claims = unverified_claims(token)
    if claims is None:
        raise ConfigError("HLGATEWAY_NOTIFIER_TOKEN is not a JWT")
    user = claims.get("id", claims.get("sub"))
    if user is None:
        raise ConfigError("HLGATEWAY_NOTIFIER_TOKEN has no id/sub claim")
    return str(user)


def gateway_credentials(
    env: dict[str, str] | os._Environ[str], dev_secret: Callable[[], str | None]
) -> tuple[TokenSource, str]:
    """(token or token provider, service user id)."""
    fixed = env.get("HLGATEWAY_NOTIFIER_TOKEN")
    if fixed:
        return fixed, token_user(fixed)
    secret = env.get("JWT_SECRET") or dev_secret()
    if not secret:
        raise ConfigError(
            "set HLGATEWAY_NOTIFIER_TOKEN (an admin token) or JWT_SECRET (to sign one)"
        )

    def mint() -> str:
        return issue_token(secret, SERVICE_USER, role="admin", ttl_seconds=3600)

    return mint, SERVICE_USER


def build(
    args: Any, env: dict[str, str] | os._Environ[str], dev_secret: Callable[[], str | None]
) -> Notifier:
    bot_token = env.get("TELEGRAM_BOT_TOKEN")
    if not bot_token:
        raise ConfigError("set TELEGRAM_BOT_TOKEN (from @BotFather)")
    token, user = gateway_credentials(env, dev_secret)
    database = args.database or env.get("HLGATEWAY_NOTIFIER_DATABASE") or default_database()
    feed = GatewayFeed(args.gateway, token, user, backoff=Backoff(initial=0.2, max_delay=5.0))
    history = FillHistory(args.info_url) if args.info_url else None
    webhook: dict[str, Any] = {}
    if args.webhook_url:
        host, _, port = args.webhook_listen.rpartition(":")
        if not port.isdigit():
            raise ConfigError("--webhook-listen must be HOST:PORT")
        webhook = {
            "webhook_url": args.webhook_url,
            "webhook_listen": (host or "0.0.0.0", int(port)),
            "webhook_secret": env.get("TELEGRAM_WEBHOOK_SECRET") or secrets.token_urlsafe(32),
        }
    options = Options(
        coalesce_ms=args.coalesce_ms,
        dashboard_url=args.dashboard_url or dashboard_of(args.gateway),
        **webhook,
    )
    return Notifier(
        Store(open_database(database)),
        TelegramApi(bot_token, args.telegram_api, poll_timeout=args.poll_timeout),
        feed,
        history,
        options,
    )


async def serve(notifier: Notifier) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = loop.create_task(notifier.run())
    stopper = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if runner in done and runner.exception() is not None:
        log.error("notifier failed", exc_info=runner.exception())
        code = 1
    stopper.cancel()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await notifier.stop()
    return code


def run(args: Any, dev_secret: Callable[[], str | None]) -> int:
    logging.basicConfig(
        level=os.environ.get("HLGATEWAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        notifier = build(args, os.environ, dev_secret)
    except ConfigError as exc:
        print(f"hlgateway notifier: {exc}", file=sys.stderr, flush=True)
        return 2
    return asyncio.run(serve(notifier))


def dashboard_of(gateway: str) -> str:
    """The dashboard of the gateway at WebSocket URL `gateway`: ws://h:p/ws -> http://h:p/."""
    parts = urlsplit(gateway)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/", "", ""))

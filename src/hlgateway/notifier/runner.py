"""`hlgateway notifier`: build the notifier from its settings (config.NotifierSettings),
run it until SIGTERM/SIGINT, and stop cleanly (requests in flight finish and are
recorded)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import signal
import sys

from hlgateway.auth import issue_token
from hlgateway.claims import token_user, unverified_claims
from hlgateway.client import Backoff
from hlgateway.client.tokens import TokenSource
from hlgateway.config import NotifierSettings, SettingsError
from hlgateway.migrations import SchemaError
from hlgateway.notifier.database import open_database
from hlgateway.notifier.feed import GatewayFeed
from hlgateway.notifier.repository import Repository
from hlgateway.notifier.service import Notifier
from hlgateway.notifier.telegram import BotApiUnusable, TelegramApi
from hlgateway.notifier.vault import install_redaction

log = logging.getLogger("hlgateway.notifier")

SERVICE_USER = "notifier"


def gateway_credentials(settings: NotifierSettings) -> tuple[TokenSource, str]:
    """(token or token provider, service user id)."""
    if settings.token:
        # Whose token it is, read without verifying (the gateway verifies it).
        claims = unverified_claims(settings.token)
        user = token_user(claims) if claims is not None else None
        if user is None:  # load_notifier_settings refuses this; a caller's own settings may not
            raise SettingsError("HLGATEWAY_NOTIFIER_TOKEN: a JWT with an id or sub claim")
        return settings.token, user
    secret = settings.jwt_secret
    if not secret:  # load_notifier_settings refuses this; a caller's own settings may not
        raise SettingsError("set HLGATEWAY_NOTIFIER_TOKEN or JWT_SECRET")

    def mint() -> str:
        return issue_token(secret, SERVICE_USER, role="admin", ttl_seconds=3600)

    return mint, SERVICE_USER


def build(settings: NotifierSettings) -> Notifier:
    bot_token = settings.bot_token
    if bot_token is None:
        raise SettingsError("TELEGRAM_BOT_TOKEN is required")
    if settings.webhook_url and not settings.webhook_secret:
        settings = dataclasses.replace(settings, webhook_secret=secrets.token_urlsafe(32))
    token, user = gateway_credentials(settings)
    feed = GatewayFeed(
        settings.gateway,
        token,
        user,
        wallets_per_connection=settings.wallets_per_connection,
        capacity=settings.feed_capacity,
        backoff=Backoff(initial=0.2, max_delay=5.0),
    )
    api = TelegramApi(bot_token, settings.telegram_api, settings.poll_timeout)
    return Notifier(Repository(open_database(settings.database_url)), api, feed, settings)


async def serve(notifier: Notifier) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = loop.create_task(notifier.run())
    stopper = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    error = runner.exception() if runner in done else None
    if isinstance(error, SchemaError):
        print(f"hlgateway notifier: {error}", file=sys.stderr, flush=True)
        code = 2
    elif isinstance(error, BotApiUnusable):  # a wrong token or --telegram-api: no traceback
        print(f"hlgateway notifier: {error}", file=sys.stderr, flush=True)
        code = 2 if error.token_refused else 1
    elif error is not None:
        log.error("notifier failed", exc_info=error)
        code = 1
    stopper.cancel()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await notifier.stop()
    return code


def run(settings: NotifierSettings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction()  # nothing shaped like a private key reaches a log line
    return asyncio.run(serve(build(settings)))

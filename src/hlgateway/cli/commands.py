"""The `hlgateway` command: serve, check-config, simulate, token, watch, notifier."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from hlgateway.auth import WALLET_RE, issue_token
from hlgateway.config import (
    CONFIG_ENV,
    NotifierSettings,
    Settings,
    SettingsError,
    load_notifier_settings,
    load_settings,
    notifier_configured,
)

DEMO_USER = "demo"
# A fixed, valid-looking address so the demo token and the simulator agree across runs.
DEMO_WALLET = "0x" + hashlib.sha256(b"hlgateway demo wallet").hexdigest()[:40]
TRADER_USER = "trader"  # the simulator's funded account, in `serve`'s banner


def dev_secret_path() -> Path:
    explicit = os.environ.get("HLGATEWAY_DEV_SECRET_FILE")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hlgateway" / "dev-secret"


def dev_secret(create: bool) -> str | None:
    """The local development secret used when JWT_SECRET is unset.

    Kept in a private file so that `hlgateway token` and a restarted dev gateway
    agree on it; never used when JWT_SECRET (or a public key) is configured.
    """
    path = dev_secret_path()
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def _load(args: argparse.Namespace, dev: Callable[[], str | None] | None) -> Settings:
    """Settings from the flags that were given, the environment and the config file."""
    return load_settings(
        os.environ,
        config_file=args.config,
        dev_secret=dev,
        host=args.host,
        port=args.port,
        upstream=args.upstream,
        sim_seed=args.seed,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        log_format=args.log_format,
        broker=args.broker,
        workers=args.workers,
        upstream_source_address=args.upstream_source_address,
        state_dir=args.state_dir,
    )


def _serve(args: argparse.Namespace) -> int:
    from hlgateway.logs import configure
    from hlgateway.server.runner import run

    used_dev_secret: list[str] = []

    def dev() -> str | None:
        secret = dev_secret(create=True)
        if secret is not None:
            used_dev_secret.append(secret)
        return secret

    try:
        settings = _load(args, dev)
    except SettingsError as exc:
        return _bad_settings(exc)
    except OSError as exc:
        print(f"hlgateway: {exc}", file=sys.stderr)
        return 2
    auth = settings.auth
    using_dev_secret = bool(used_dev_secret)
    configure(settings.log_level, settings.log_format)

    def banner(ws_url: str) -> None:
        http_url = ws_url[:-3].replace("ws", "http", 1)
        lines = [
            f"hlgateway is up: {ws_url}  (health: {http_url}/health)",
            f"dashboard: {http_url}/",
            f"state: {_state_of(settings)}",
        ]
        if using_dev_secret and auth.secret is not None:
            token = issue_token(
                auth.secret, DEMO_USER, wallets=[DEMO_WALLET], ttl_seconds=24 * 3600
            )
            lines += [
                f"JWT_SECRET is not set: using the local dev secret in {dev_secret_path()}",
                f"demo user '{DEMO_USER}', wallet {DEMO_WALLET}; token (24 h):",
                f"  {token}",
                f"connect: {ws_url}?token={token}",
                "more tokens: hlgateway token --user ID [--role admin] [--wallet 0x..] [--trade]",
            ]
            if settings.upstream == "sim":
                lines += _trading_lines(auth.secret, settings.sim_seed)
        print("\n".join(lines), flush=True)

    if settings.workers > 1:
        from hlgateway.server.workers import run_workers

        return run_workers(settings, banner)
    # A worker of --workers: its parent printed the banner once for all.
    return run(settings, None if settings.reuse_port else banner)


def _trading_lines(secret: str, seed: int) -> list[str]:
    """The embedded simulator's funded account, and a token that may trade it."""
    from hlgateway.simulator.local_account import WARNING, local_account

    account = local_account(seed)
    token = issue_token(
        secret, TRADER_USER, wallets=[account.address], ttl_seconds=24 * 3600, trade=True
    )
    return [
        f"trading on the simulator: account {account.address}, key {account.key}",
        f"  ({WARNING})",
        f"user '{TRADER_USER}' may trade it (post); token (24 h): {token}",
    ]


def _bad_settings(exc: SettingsError, what: str = "hlgateway") -> int:
    print(f"{what}: {len(exc.problems)} bad setting(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def _state_of(settings: Settings) -> str:
    """Where `serve` would keep its state (docs/operations.md, "The state directory")."""
    from hlgateway.server.runner import state_of

    return state_of(settings)


def _check_config(args: argparse.Namespace) -> int:
    """Every bad setting at once, from the flags, the environment and the config file."""
    placeholder: list[bool] = []

    def dev() -> str:
        placeholder.append(True)
        return "dev-secret"  # `serve` would use the local dev secret: not a problem here

    try:
        settings = _load(args, dev)
    except SettingsError as exc:
        return _bad_settings(exc)
    where = args.config or os.environ.get(CONFIG_ENV)
    print(
        f"config OK{f' ({where})' if where else ''}: {settings.host}:{settings.port}, "
        f"upstream {settings.upstream}"
        + (f" from {settings.upstream_source_address}" if settings.upstream_source_address else "")
        + f", logs {settings.log_format}, state {_state_of(settings)}"
    )
    if placeholder:
        print("no JWT secret or public key configured: `serve` would use the local dev secret")
    return _check_notifier(args)


def _check_notifier(args: argparse.Namespace) -> int:
    """The notifier's settings (the `[notifier]` table, its variables), when there are any."""
    try:
        if not notifier_configured(os.environ, args.config):
            print("notifier: not configured (no [notifier] table, no TELEGRAM_BOT_TOKEN)")
            return 0
        notifier = _load_notifier(args)
    except SettingsError as exc:
        return _bad_settings(exc, "hlgateway notifier")
    print(
        f"notifier config OK: gateway {notifier.gateway}, database {notifier.database_url}, "
        f"info API {notifier.info_url or 'from the gateway'}"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from hlgateway.simulator import SimConfig, run_simulator

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            config = SimConfig(seed=args.seed, control=args.control, clock_offset=args.clock_offset)
            asyncio.run(run_simulator(args.host, args.port, config))
    except OSError as exc:  # binding its address: the simulator has stopped what it started
        from hlgateway.server.runner import cannot_listen

        print(f"hlgateway: {cannot_listen(args.host, args.port, exc)}", file=sys.stderr)
        return 2
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = os.environ.get("JWT_SECRET") or dev_secret(create=False)
    if not secret:
        print(
            "hlgateway: set JWT_SECRET (or run `hlgateway serve` once to create the dev secret)",
            file=sys.stderr,
        )
        return 2
    for wallet in args.wallet:
        if not WALLET_RE.match(wallet):
            print(f"hlgateway: not a wallet address (0x + 40 hex): {wallet}", file=sys.stderr)
            return 2
    print(
        issue_token(
            secret,
            args.user,
            username=args.username,
            role=args.role,
            wallets=args.wallet or None,
            ttl_seconds=args.ttl,
            trade=args.trade,
        )
    )
    return 0


def _watch(args: argparse.Namespace) -> int:
    from hlgateway.cli.watch import run

    secret = os.environ.get("JWT_SECRET") or dev_secret(create=False)

    def mint(user: str, wallets: list[str]) -> str:
        assert secret is not None
        if not wallets and user == DEMO_USER:
            wallets = [DEMO_WALLET]
        return issue_token(secret, user, wallets=wallets or None, ttl_seconds=3600)

    return run(args, mint if secret else None)


def _notifier(args: argparse.Namespace) -> int:
    from hlgateway.notifier.runner import run

    if args.new_key:
        from hlgateway.notifier.vault import new_master_key

        print(new_master_key())  # for HLGATEWAY_NOTIFIER_KEY (or a key file)
        return 0
    try:
        settings = _load_notifier(args)
    except SettingsError as exc:
        return _bad_settings(exc, "hlgateway notifier")
    return run(settings)


def _load_notifier(args: argparse.Namespace) -> NotifierSettings:
    """The notifier's settings from its flags, the environment and the config file."""
    flags = "gateway database info_url telegram_api coalesce_ms dashboard_url poll_timeout"
    flags += " webhook_url webhook_listen"
    return load_notifier_settings(
        os.environ,
        config_file=args.config,
        dev_secret=lambda: dev_secret(create=False),
        **{name: getattr(args, name, None) for name in flags.split()},
    )


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help=f"TOML settings file ({CONFIG_ENV}); see docs/operations.md"
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines or one JSON object a line (HLGATEWAY_LOG_FORMAT, default text)",
    )
    parser.add_argument(
        "--state-dir",
        help="where streams, history and delivery positions survive a restart "
        "(HLGATEWAY_STATE_DIR; default: the user's state directory, one per listening "
        "address; none: in memory only); unused with --broker",
    )
    parser.add_argument(
        "--broker",
        help="redis://HOST:PORT/DB, or redis+sentinel://HOST:PORT,.../MASTER/DB for a Redis "
        "Sentinel group: join every node sharing that Redis into one gateway "
        "(HLGATEWAY_BROKER; default: one process, durable state on disk)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="N processes on one port (SO_REUSEPORT), to use N cores; needs --broker "
        "(HLGATEWAY_WORKERS, default 1)",
    )
    parser.add_argument(
        "--upstream-source-address",
        metavar="IP",
        help="a local address every upstream connection leaves from: Hyperliquid's limits "
        "are per IP, so each node with its own address adds capacity "
        "(HLGATEWAY_UPSTREAM_SOURCE_ADDRESS; default: the system's choice)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hlgateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (on the embedded simulator by default)")
    serve.add_argument("--host", help="listen address (HLGATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (HLGATEWAY_PORT, default 8080)")
    serve.add_argument(
        "--upstream",
        help="sim | mainnet | testnet | ws://host:port/ws (HLGATEWAY_UPSTREAM, default sim)",
    )
    serve.add_argument("--seed", type=int, help="simulator seed (HLGATEWAY_SIM_SEED, default 0)")
    serve.add_argument(
        "--tls-cert", help="PEM certificate (chain): serve wss:// and https:// (HLGATEWAY_TLS_CERT)"
    )
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert (HLGATEWAY_TLS_KEY)")
    _config_arguments(serve)
    serve.set_defaults(func=_serve)

    check = sub.add_parser(
        "check-config",
        help="check the settings (flags, environment, --config file); name every bad one",
    )
    for name in ("--host", "--upstream", "--tls-cert", "--tls-key"):
        check.add_argument(name)
    check.add_argument("--port")
    check.add_argument("--seed", type=int)
    _config_arguments(check)
    check.set_defaults(func=_check_config)

    simulate = sub.add_parser("simulate", help="run the Hyperliquid simulator on its own")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8090)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--control",
        action="store_true",
        help="serve the /control/* chaos API (drop, stall, garbage, refuse, restart, ledger)",
    )
    simulate.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the exchange's clock this far from the wall clock (negative: behind), "
        "as Hyperliquid's may be from yours",
    )
    simulate.set_defaults(func=_simulate)

    token = sub.add_parser("token", help="print a JWT for local use (signed with JWT_SECRET)")
    token.add_argument("--user", required=True, help="user id (claim `id`)")
    token.add_argument("--username")
    token.add_argument("--role", choices=["admin", "user"])
    token.add_argument(
        "--wallet", action="append", default=[], help="wallet the user may read (repeatable)"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument(
        "--trade",
        action="store_true",
        help="the trade permission: may relay signed orders with `post` (docs/trading.md)",
    )
    token.set_defaults(func=_token)

    from hlgateway.cli.watch import add_arguments as watch_arguments

    watch = sub.add_parser("watch", help="live terminal view of a channel (prices, orderbook, ...)")
    watch_arguments(watch)
    watch.set_defaults(func=_watch)

    notifier = sub.add_parser(
        "notifier", help="the Telegram bot: fills of watched wallets, alerts (docs/notifier.md)"
    )
    notifier.add_argument(
        "--gateway",
        help="the gateway's WebSocket URL (HLGATEWAY_NOTIFIER_GATEWAY, "
        "default ws://127.0.0.1:8080/ws)",
    )
    notifier.add_argument(
        "--telegram-api",
        help="Bot API server base URL (HLGATEWAY_NOTIFIER_TELEGRAM_API, "
        "default https://api.telegram.org)",
    )
    notifier.add_argument(
        "--database",
        help="sqlite:///path, a file path, or postgresql://... "
        "(HLGATEWAY_NOTIFIER_DATABASE; default ~/.local/state/hlgateway/notifier.db)",
    )
    notifier.add_argument(
        "--info-url",
        help="the exchange's info API, to reload fills a stream missed "
        "(HLGATEWAY_NOTIFIER_INFO_URL; default: the one the gateway names)",
    )
    notifier.add_argument(
        "--coalesce-ms",
        type=int,
        help="fills within this window share a message (HLGATEWAY_NOTIFIER_COALESCE_MS, "
        "default 700)",
    )
    notifier.add_argument(
        "--dashboard-url",
        help="the dashboard that /dashboard opens inside Telegram (an https URL of the gateway; "
        "HLGATEWAY_NOTIFIER_DASHBOARD_URL, default: the gateway's own address)",
    )
    notifier.add_argument(
        "--poll-timeout",
        type=int,
        help="getUpdates long poll, s (HLGATEWAY_NOTIFIER_POLL_TIMEOUT, default 25)",
    )
    notifier.add_argument(
        "--webhook-url",
        help="receive updates by webhook at this public https URL instead of long polling "
        "(HLGATEWAY_NOTIFIER_WEBHOOK_URL)",
    )
    notifier.add_argument(
        "--webhook-listen",
        help="HOST:PORT the webhook server listens on (HLGATEWAY_NOTIFIER_WEBHOOK_LISTEN, "
        "default 0.0.0.0:8443)",
    )
    notifier.add_argument(
        "--config", help=f"TOML settings file, its [notifier] table ({CONFIG_ENV})"
    )
    notifier.add_argument(
        "--new-key",
        action="store_true",
        help="print a fresh key to seal agent keys with (HLGATEWAY_NOTIFIER_KEY) and exit",
    )
    notifier.set_defaults(func=_notifier)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

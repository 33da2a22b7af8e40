"""Settings: from flags, then environment variables, then a TOML file, then defaults.

Each setting is declared once, as a typed field of `Settings` (or `AuthSettings`);
its environment variable is `HLGATEWAY_` + the field name upper-cased (the JWT
ones are listed in `AUTH_ENV`), its TOML key is the field name (`[auth]` for the
JWT ones). msgspec converts the strings and TOML values into the field's type,
checking the `Meta` bounds given beside it, and every bad setting is reported at
once (`hlgateway check-config`). Every setting is listed in docs/operations.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from hlgateway.claims import token_user, unverified_claims
from hlgateway.notifier.vault import VaultError, load_master_key

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONFIG_ENV = "HLGATEWAY_CONFIG"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"  # [schema.]name
TABLE_RE = re.compile(TABLE_PATTERN)

# Bounds, checked when a value comes from the environment or a file.
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]  # 0 turns a limit off where documented
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Rate = Annotated[float, msgspec.Meta(ge=0)]


class SettingsError(ValueError):
    """Settings that cannot work; raised before anything starts. Names every problem."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class AuthSettings:
    secret: str | None = None  # JWT_SECRET
    algorithms: tuple[str, ...] = ("HS256",)  # JWT_ALGORITHMS, comma-separated
    public_key: str | None = None  # JWT_PUBLIC_KEY (PEM) or JWT_PUBLIC_KEY_FILE
    audience: str | None = None  # JWT_AUDIENCE
    issuer: str | None = None  # JWT_ISSUER
    leeway_seconds: Count = 0  # JWT_LEEWAY
    cache_size: Count = 4096  # JWT_CACHE_SIZE: verified tokens remembered (auth.py); 0: none

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingsError(problems)

    def problems(self) -> list[str]:
        algs = set(self.algorithms)
        unknown = algs - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
        if not algs or unknown:
            return [f"JWT_ALGORITHMS: unsupported {sorted(unknown) or 'empty'}"]
        # One key family only: mixing HMAC and public-key algorithms is the
        # classic algorithm-confusion hole.
        if algs & HMAC_ALGORITHMS and algs & PUBLIC_KEY_ALGORITHMS:
            return ["JWT_ALGORITHMS: do not mix HS* with RS*/ES* algorithms"]
        if algs <= PUBLIC_KEY_ALGORITHMS and not self.public_key:
            return ["JWT_PUBLIC_KEY is required for RS*/ES* algorithms"]
        if algs <= HMAC_ALGORITHMS and not self.secret:
            return ["JWT_SECRET is required for HS* algorithms"]
        # An algorithm that cannot use the key would fail each of its tokens: say so now,
        # naming the algorithm and the key's kind. auth.py prepares keys; it imports this.
        from hlgateway.auth import key_problems

        return key_problems(self)

    @property
    def uses_public_key(self) -> bool:
        return set(self.algorithms) <= PUBLIC_KEY_ALGORITHMS

    def verification_key(self) -> str:
        key = self.public_key if self.uses_public_key else self.secret
        assert key is not None  # checked in __post_init__
        return key


# AuthSettings field -> its environment variable (the names other JWT tools use).
AUTH_ENV = {
    "secret": "JWT_SECRET",
    "algorithms": "JWT_ALGORITHMS",
    "public_key": "JWT_PUBLIC_KEY",
    "audience": "JWT_AUDIENCE",
    "issuer": "JWT_ISSUER",
    "leeway_seconds": "JWT_LEEWAY",
    "cache_size": "JWT_CACHE_SIZE",
}


@dataclass(frozen=True)
class Settings:
    auth: AuthSettings
    host: str = "127.0.0.1"
    port: Port = 8080
    upstream: str = "sim"  # sim | mainnet | testnet | ws(s)://host/ws
    sim_seed: int = 0
    allowed_origins: tuple[str, ...] = ()  # comma-separated in the environment
    max_message_bytes: Positive = 64 * 1024  # bigger: close 1009
    max_subscriptions: Count = 100  # per connection
    max_rooms: Count = 20  # per connection
    heartbeat_interval: Seconds = 30.0
    heartbeat_timeout: Seconds = 60.0
    error_limit: Count = 10  # bad messages ...
    error_window: Seconds = 60.0  # ... per this many seconds
    outbox_max_bytes: Positive = 4 * 1024 * 1024  # per connection
    socket_buffer_bytes: Count = 256 * 1024  # kernel-side backlog
    write_timeout: Seconds = 30.0  # without progress: 4008
    compression: bool = True  # offer permessage-deflate
    compression_threshold: Count = 1024  # smaller goes plain
    shutdown_timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    upstream_ping_interval: Seconds = 30.0
    upstream_pong_timeout: Seconds = 10.0
    upstream_stale_after: Seconds = 15.0  # for allMids/l2Book
    upstream_backoff_max: Seconds = 30.0
    upstream_max_links: Positive = 10
    upstream_max_subscriptions: Positive = 1000
    upstream_max_messages: Positive = 2000  # per minute
    upstream_max_new_links: Positive = 30  # per minute
    upstream_max_wallets: Count = 10  # on WS; more are polled
    upstream_rest_weight: Positive = 1200  # per minute
    # Per minute, added to this node's REST budget while it reads the market list for
    # its broker's nodes; `--workers` sets it (server/workers.py).
    upstream_market_list_weight: Count = 0
    upstream_poll_interval: Seconds = 5.0  # the shortest; longer as the REST budget needs
    upstream_max_poll_interval: Seconds = 30.0  # accepted latency of a polled wallet
    upstream_ca_file: str | None = None  # extra CA for wss/https
    upstream_host: str | None = None  # mainnet/testnet at another host
    # The local address every upstream connection (WebSocket and REST) leaves from:
    # Hyperliquid's limits are per IP, so a node with its own address has its own budget.
    upstream_source_address: str | None = None
    context_refresh: Seconds = 10.0  # for 24 h change/volume
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object a line
    # Abuse limits (docs/security.md); 0 turns a count limit off.
    new_connections_per_minute: Count = 10  # per client IP
    max_connections_per_ip: Count = 100  # open at once
    max_connections_per_user: Count = 20  # open at once
    # WebSockets this process holds at once; more get HTTP 503 (0: the open-file
    # limit less a reserve, server/capacity.py).
    max_connections: Count = 0
    message_rate: Rate = 20.0  # client messages/s per connection
    message_burst: Positive = 100  # token bucket size
    handshake_timeout: Seconds = 10.0  # the TLS handshake
    request_head_timeout: Seconds = 10.0  # slowloris deadline
    trusted_proxies: tuple[str, ...] = ()  # IPs/CIDRs, comma-separated
    allow_missing_origin: bool = True  # upgrades without Origin
    tls_cert: str | None = None  # --tls-cert (PEM)
    tls_key: str | None = None  # --tls-key (PEM)
    dashboard_guest: bool = True  # the dashboard may get guest tokens for market data
    # History and recovery of lossless streams (docs/protocol.md "Positions").
    history_size: Positive = 1000  # messages kept at least, per stream
    history_ttl: Seconds = 600.0  # kept at least this long
    history_max: Positive = 2_000  # hard bound per stream (memory)
    market_wait: Annotated[float, msgspec.Meta(ge=0)] = 10.0  # subscribes wait for the markets
    # The user directory (admin reads by userId alone): a file and/or a PostgreSQL table.
    directory_file: str | None = None  # JSON or TOML
    directory_dsn: str | None = None  # postgresql://...
    directory_table: Annotated[str, msgspec.Meta(pattern=TABLE_PATTERN)] = "hlgateway_user_wallets"
    directory_refresh: Seconds = 30.0
    # Telegram Mini App login (the dashboard inside Telegram; docs/dashboard.md).
    telegram_bot_token: str | None = None  # the notifier's bot: checks initData signatures
    telegram_database: str | None = None  # the notifier's database: which wallets a chat watches
    telegram_login_max_age: Seconds = 3600.0  # initData older than this is refused
    telegram_token_ttl: Seconds = 900.0  # lifetime of the token a Telegram login gets
    # Durable state (docs/operations.md "The state directory"): streams, history and the
    # upstream's delivery positions survive a restart. None: the user's state directory,
    # one per listening address; "none": in memory only (tests, benchmarks).
    state_dir: str | None = None  # --state-dir
    # Scale-out (docs/scaling.md): nodes sharing a Redis act as one gateway.
    # --broker: redis://HOST:PORT/DB or redis+sentinel://... (default: one process, durable)
    broker: str | None = None
    workers: Positive = 1  # --workers: processes on one port (needs a broker)
    reuse_port: bool = False  # set for each worker of --workers (SO_REUSEPORT)
    node_name: str | None = None  # this node in /health and in its upstream leases
    # Order entry (docs/trading.md): `post` relays clients' signed actions.
    post_rate: Rate = 10.0  # posts/s per user (0: unlimited) ...
    post_burst: Positive = 20  # ... in bursts of up to this many
    post_user_in_flight: Positive = 20  # one user's posts awaiting Hyperliquid's answer
    post_max_in_flight: Positive = 100  # Hyperliquid's limit of posts in flight per IP
    post_timeout: Seconds = 10.0  # no answer by then: err (the action's fate unknown)
    post_allow: tuple[str, ...] = ()  # more action types, by name (e.g. withdraw3,usdSend)
    post_keep_messages: Count = 200  # of the 2000 messages/min, left to the data links
    post_keep_weight: Count = 300  # of the 1200 REST weight/min, left to the data side
    extra: Mapping[str, str] = field(default_factory=dict)


# Fields that are not settings of their own; tables of the config file beside the gateway's.
_NOT_SETTINGS = frozenset({"auth", "extra"})
_TABLES = frozenset({"auth", "notifier"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_name(name: str) -> str:
    """The environment variable of a Settings field."""
    return f"HLGATEWAY_{name.upper()}"


def _both(name: str) -> str:
    """A setting named both ways, for problems found after merging the sources."""
    return f"{name} ({env_name(name)})"


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings) if f.name not in _NOT_SETTINGS]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def _is_bool(kind: Any) -> bool:
    return kind is bool


def _from_text(raw: str, kind: Any) -> Any:
    """An environment string, shaped for msgspec's lax conversion into `kind`."""
    if _is_tuple(kind):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if _is_bool(kind):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise msgspec.ValidationError("expected true or false")
    return raw.strip()


def _convert(value: Any, kind: Any, where: str, problems: list[str]) -> Any:
    try:
        if isinstance(value, str) and (_is_tuple(kind) or _is_bool(kind) or kind is not str):
            value = _from_text(value, kind)
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as exc:
        problems.append(f"{where}: {_reason(exc)} (got {value!r})")
        return None


def _reason(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    return text.split(" - at ", maxsplit=1)[0]


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file: top-level keys are Settings fields, `[auth]` holds the JWT ones."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: not valid TOML: {exc}") from None


def _file_of(env: Mapping[str, str], config_file: str | Path | None) -> tuple[dict[str, Any], str]:
    """The config file (`config_file`, else HLGATEWAY_CONFIG) read, and how problems name it."""
    path = config_file if config_file is not None else _env(env, CONFIG_ENV)
    if path is None:
        return {}, ""
    return read_config_file(path), f"{path}:"


def _table(file: Mapping[str, Any], name: str, source: str, problems: list[str]) -> dict[str, Any]:
    """The `[name]` table of a config file (empty when absent)."""
    table = file.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{source} {name}: expected a table")
        return {}
    return table


def _auth_values(
    env: Mapping[str, str], table: Mapping[str, Any], source: str, problems: list[str]
) -> dict[str, Any]:
    hints = _hints(AuthSettings)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "public_key_file":
            continue
        if key not in hints:
            problems.append(f"{source} [auth] {key}: unknown setting")
            continue
        converted = _convert(value, hints[key], f"{source} [auth] {key}", problems)
        if converted is not None:
            values[key] = converted
    for name, variable in AUTH_ENV.items():
        raw = _env(env, variable)
        if raw is not None:
            converted = _convert(raw, hints[name], variable, problems)
            if converted is not None:
                values[name] = converted
    key_file = _env(env, "JWT_PUBLIC_KEY_FILE") or table.get("public_key_file")
    if "public_key" not in values and key_file is not None:
        try:
            values["public_key"] = Path(str(key_file)).read_text()
        except OSError as exc:
            problems.append(f"JWT_PUBLIC_KEY_FILE: {exc.strerror or exc}: {key_file}")
    return values


def _section_values(
    cls: type,
    env_of: Callable[[str], str],
    env: Mapping[str, str],
    table: Mapping[str, Any],
    source: str,
    overrides: Mapping[str, object],
    problems: list[str],
) -> dict[str, Any]:
    """The fields of `cls` given by `table` (a TOML table), the environment (`env_of`
    names a field's variable) and `overrides` (flags), each over the one before."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_SETTINGS]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _TABLES:
            continue
        if key not in names:
            problems.append(f"{source} {key}: unknown setting")
            continue
        converted = _convert(value, hints[key], f"{source} {key}", problems)
        if converted is not None:
            values[key] = converted
    for name in names:
        raw = _env(env, env_of(name))
        if raw is not None:
            converted = _convert(raw, hints[name], env_of(name), problems)
            if converted is not None:
                values[name] = converted
    for name, value in overrides.items():
        if value is None:
            continue
        converted = _convert(value, hints[name], f"--{name.replace('_', '-')}", problems)
        if converted is not None:
            values[name] = converted
    return values


def _settings_values(
    env: Mapping[str, str],
    table: Mapping[str, Any],
    source: str,
    overrides: Mapping[str, object],
    problems: list[str],
) -> dict[str, Any]:
    return _section_values(Settings, env_name, env, table, source, overrides, problems)


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    config_file: str | Path | None = None,
    dev_secret: Callable[[], str | None] | None = None,
    **overrides: object,
) -> Settings:
    """Flags (`overrides`) over the environment over `config_file` (or HLGATEWAY_CONFIG).

    `dev_secret` is asked for a secret only when no JWT secret or public key is
    configured. Raises SettingsError naming every bad setting.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    table, source = _file_of(env, config_file)
    auth_table = _table(table, "auth", source, problems)
    auth_values = _auth_values(env, auth_table, source, problems)
    if dev_secret is not None and not (auth_values.get("secret") or auth_values.get("public_key")):
        auth_values["secret"] = dev_secret()
    values = _settings_values(env, table, source, overrides, problems)
    auth: AuthSettings | None = None
    try:
        auth = AuthSettings(**auth_values)
    except SettingsError as exc:
        problems += exc.problems
    settings = Settings(auth=auth or AuthSettings(secret="-"), **values)
    problems += settings_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def auth_from_env(env: Mapping[str, str], secret: str | None = None) -> AuthSettings:
    problems: list[str] = []
    values = _auth_values(env, {}, "", problems)
    if secret is not None:
        values["secret"] = secret
    if problems:
        raise SettingsError(problems)
    return AuthSettings(**values)


def settings_from_env(
    env: Mapping[str, str] | None = None,
    *,
    auth: AuthSettings,
    **overrides: object,
) -> Settings:
    """Environment first, then `overrides` (flags that were given) on top."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values = _settings_values(env, {}, "", overrides, problems)
    settings = Settings(auth=auth, **values)
    problems += settings_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def settings_problems(settings: Settings) -> list[str]:
    """What makes these settings unable to work, beyond each value's type and bounds."""
    problems: list[str] = []
    if (settings.tls_cert is None) != (settings.tls_key is None):
        problems.append("TLS needs both --tls-cert and --tls-key (HLGATEWAY_TLS_CERT/KEY)")
    for path in (settings.tls_cert, settings.tls_key, settings.upstream_ca_file):
        if path is not None and not Path(path).is_file():
            problems.append(f"no such file: {path}")
    for entry in settings.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            problems.append(f"{_both('trusted_proxies')}: not an address or CIDR block: {entry!r}")
    if settings.upstream_source_address is not None:
        problem = source_address_problem(settings.upstream_source_address)
        if problem is not None:
            problems.append(f"{_both('upstream_source_address')}: {problem}")
    if settings.upstream != "sim":
        from hlgateway.upstream.networks import endpoint_for  # stdlib only: no cycle

        try:
            endpoint_for(settings.upstream, settings.upstream_host)
        except ValueError as exc:
            problems.append(f"{_both('upstream')}: {exc}")
    if settings.log_level.upper() not in LOG_LEVELS:
        problems.append(f"{_both('log_level')}: one of {', '.join(LOG_LEVELS)}")
    if not 1 <= settings.history_size <= settings.history_max:
        problems.append(f"{_both('history_size')}: must be 1..{_both('history_max')}")
    from hlgateway.broker import redis_url  # the broker package needs this module first

    if settings.broker is not None and (wrong := redis_url.problem(settings.broker)):
        problems.append(f"{_both('broker')}: {wrong}")
    if (
        settings.broker is not None
        and settings.state_dir is not None
        and settings.state_dir.strip().lower() not in ("", "none")
    ):
        problems.append(
            f"{_both('state_dir')} and {_both('broker')}: with a broker the state lives in "
            "Redis and no state directory is used; drop one of them"
        )
    if settings.workers > 1 and settings.broker is None:
        problems.append(
            "--workers N needs --broker redis://HOST:PORT/DB: the workers share one gateway's "
            "streams, history and upstream through Redis (without it, run one process)"
        )
    if not TABLE_RE.fullmatch(settings.directory_table):
        problems.append(f"{_both('directory_table')}: a table name ([schema.]name)")
    if settings.upstream_max_poll_interval < settings.upstream_poll_interval:
        problems.append(
            f"{_both('upstream_max_poll_interval')}: shorter than {_both('upstream_poll_interval')}"
        )
    if settings.heartbeat_timeout < settings.heartbeat_interval:
        problems.append(f"{_both('heartbeat_timeout')}: shorter than {_both('heartbeat_interval')}")
    return problems


def source_address_problem(address: str) -> str | None:
    """Why upstream connections could not leave from `address`, or None if they can."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"not an IP address: {address!r}"
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    # Binding a throwaway socket is the one sure test that the address is this machine's.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            return f"not an address of this machine ({exc.strerror or exc})"
    return None


def check_security_settings(settings: Settings) -> None:
    """Refuse settings that would open a hole or cannot work, before anything starts."""
    problems = settings_problems(settings)
    if problems:
        raise SettingsError(problems)


# -- the notifier (`hlgateway notifier`, docs/notifier.md) ------------------------------


@dataclass(frozen=True)
class NotifierSettings:
    """The Telegram notifier's settings, typed like the gateway's: flags over the
    environment (`HLGATEWAY_NOTIFIER_` + the field name, or the name in NOTIFIER_ENV)
    over the config file's `[notifier]` table over these defaults."""

    gateway: str = "ws://127.0.0.1:8080/ws"  # the gateway's WebSocket URL
    database: str | None = None  # sqlite:///path, a file path, postgresql://...
    info_url: str | None = None  # the exchange's info API; default: the gateway names it
    telegram_api: str | None = None  # another Bot API server (default api.telegram.org)
    bot_token: str | None = None  # TELEGRAM_BOT_TOKEN, from @BotFather
    token: str | None = None  # HLGATEWAY_NOTIFIER_TOKEN: an admin token for the gateway
    jwt_secret: str | None = None  # JWT_SECRET: or sign its own admin tokens with it
    coalesce_ms: Count = 700  # fills of a chat within this window share a message
    poll_timeout: Annotated[int, msgspec.Meta(ge=1, le=50)] = 25  # getUpdates, s
    dashboard_url: str | None = None  # /dashboard's page; default the gateway's own
    webhook_url: str | None = None  # receive updates here instead of long polling
    webhook_listen: str = "0.0.0.0:8443"  # HOST:PORT of the webhook server
    webhook_secret: str | None = None  # TELEGRAM_WEBHOOK_SECRET (random when unset)
    max_watches: Positive = 10  # per chat
    max_alerts: Positive = 20  # per chat
    wallets_per_connection: Positive = 25  # 4 subscriptions each (the gateway allows 100)
    feed_capacity: Positive = 1000  # gateway events waiting before a stream is paused
    log_level: str = "INFO"  # HLGATEWAY_LOG_LEVEL, shared with the gateway
    # Trading (docs/notifier.md "Trading"): off without a key to seal agent keys with.
    key: str | None = None  # 32 bytes, base64 or hex: seals the agent keys (AES-GCM)
    key_file: str | None = None  # ... or a file holding it
    trade_max_notional: Annotated[float, msgspec.Meta(gt=0)] = 10_000.0  # USDC per order
    trade_daily_orders: Positive = 50  # confirmed orders per chat per UTC day
    confirm_seconds: Annotated[int, msgspec.Meta(ge=5, le=300)] = 30  # a preview lives this long

    @property
    def database_url(self) -> str:
        return self.database or default_notifier_database()

    @property
    def webhook_address(self) -> tuple[str, int]:
        host, _, port = self.webhook_listen.rpartition(":")
        return host or "0.0.0.0", int(port)


# NotifierSettings fields whose variable is not HLGATEWAY_NOTIFIER_<NAME>: the names
# Telegram's and JWT tools' documentation use, and the gateway's log level.
NOTIFIER_ENV = {
    "bot_token": "TELEGRAM_BOT_TOKEN",
    "webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
    "token": "HLGATEWAY_NOTIFIER_TOKEN",
    "jwt_secret": "JWT_SECRET",
    "log_level": "HLGATEWAY_LOG_LEVEL",
}


def notifier_env_name(name: str) -> str:
    return NOTIFIER_ENV.get(name) or f"HLGATEWAY_NOTIFIER_{name.upper()}"


def notifier_setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(NotifierSettings)]


def default_notifier_database() -> str:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "hlgateway" / "notifier.db")


def notifier_configured(
    env: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> bool:
    """Is there anything for `hlgateway notifier` (a `[notifier]` table, a bot token,
    an HLGATEWAY_NOTIFIER_* variable)? `check-config` checks its settings then."""
    env = os.environ if env is None else env
    if _file_of(env, config_file)[0].get("notifier"):
        return True
    own = {notifier_env_name(n) for n in notifier_setting_names()} - {"JWT_SECRET"}
    own -= {"HLGATEWAY_LOG_LEVEL"}
    return any(_env(env, name) is not None for name in own)


def load_notifier_settings(
    env: Mapping[str, str] | None = None,
    *,
    config_file: str | Path | None = None,
    dev_secret: Callable[[], str | None] | None = None,
    **overrides: object,
) -> NotifierSettings:
    """Flags (`overrides`) over the environment over `config_file`'s `[notifier]` table
    (or HLGATEWAY_CONFIG's). Without a token or a JWT secret, `[auth] secret` of the file,
    then `dev_secret`. Raises SettingsError naming every bad setting."""
    env = os.environ if env is None else env
    problems: list[str] = []
    file, source = _file_of(env, config_file)
    table = _table(file, "notifier", source, problems)
    values = _section_values(
        NotifierSettings, notifier_env_name, env, table, f"{source} [notifier]", overrides, problems
    )
    if not values.get("token") and not values.get("jwt_secret"):
        auth = file.get("auth")
        secret = auth.get("secret") if isinstance(auth, dict) else None
        values["jwt_secret"] = secret if isinstance(secret, str) and secret else None
        if values["jwt_secret"] is None and dev_secret is not None:
            values["jwt_secret"] = dev_secret()
    settings = NotifierSettings(**values)
    problems += notifier_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def notifier_problems(settings: NotifierSettings) -> list[str]:
    """What keeps these notifier settings from working (secrets never quoted)."""
    problems: list[str] = []

    def name(field_name: str) -> str:
        return f"{field_name.replace('_', '-')} ({notifier_env_name(field_name)})"

    if not settings.bot_token:
        problems.append("TELEGRAM_BOT_TOKEN is required: the bot's token, from @BotFather")
    if not settings.token and not settings.jwt_secret:
        problems.append(
            "set HLGATEWAY_NOTIFIER_TOKEN (an admin token of the gateway) or JWT_SECRET "
            "(to sign one)"
        )
    if settings.token:
        claims = unverified_claims(settings.token)
        if claims is None:
            problems.append("HLGATEWAY_NOTIFIER_TOKEN is not a JWT")
        elif token_user(claims) is None:
            problems.append("HLGATEWAY_NOTIFIER_TOKEN has no id/sub claim")
    if (
        urlsplit(settings.gateway).scheme not in ("ws", "wss")
        or not urlsplit(settings.gateway).netloc
    ):
        problems.append(f"{name('gateway')}: a ws:// or wss:// URL, got {settings.gateway!r}")
    for field_name in ("info_url", "telegram_api", "dashboard_url", "webhook_url"):
        value = getattr(settings, field_name)
        parts = urlsplit(value) if value else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.netloc):
            problems.append(f"{name(field_name)}: an http(s):// URL, got {value!r}")
    database = settings.database or ""
    scheme = database.partition("://")[0] if "://" in database else ""
    if scheme not in ("", "sqlite", "postgres", "postgresql"):
        problems.append(
            f"{name('database')}: sqlite:///path, a file path or postgresql://..., "
            f"got a {scheme}:// URL"
        )
    port = settings.webhook_listen.rpartition(":")[2]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"{name('webhook_listen')}: HOST:PORT, got {settings.webhook_listen!r}")
    if settings.log_level.upper() not in LOG_LEVELS:
        problems.append(f"{name('log_level')}: one of {', '.join(LOG_LEVELS)}")
    try:
        load_master_key(settings.key, settings.key_file)
    except VaultError as exc:
        problems.append(f"{name('key')}: {exc}")
    return problems

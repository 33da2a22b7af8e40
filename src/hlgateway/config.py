"""Settings: from flags, then environment variables, then defaults.

Every setting is listed in docs/operations.md. Environment variable names are
given next to each field.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})


TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class SettingsError(ValueError):
    """A setting that cannot work; raised before anything starts."""


@dataclass(frozen=True)
class AuthSettings:
    secret: str | None = None  # JWT_SECRET
    algorithms: tuple[str, ...] = ("HS256",)  # JWT_ALGORITHMS, comma-separated
    public_key: str | None = None  # JWT_PUBLIC_KEY (PEM) or JWT_PUBLIC_KEY_FILE
    audience: str | None = None  # JWT_AUDIENCE
    issuer: str | None = None  # JWT_ISSUER
    leeway_seconds: int = 0  # JWT_LEEWAY

    def __post_init__(self) -> None:
        algs = set(self.algorithms)
        unknown = algs - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
        if not algs or unknown:
            raise SettingsError(f"JWT_ALGORITHMS: unsupported {sorted(unknown) or 'empty'}")
        # One key family only: mixing HMAC and public-key algorithms is the
        # classic algorithm-confusion hole.
        if algs & HMAC_ALGORITHMS and algs & PUBLIC_KEY_ALGORITHMS:
            raise SettingsError("JWT_ALGORITHMS: do not mix HS* with RS*/ES* algorithms")
        if algs <= PUBLIC_KEY_ALGORITHMS and not self.public_key:
            raise SettingsError("JWT_PUBLIC_KEY is required for RS*/ES* algorithms")
        if algs <= HMAC_ALGORITHMS and not self.secret:
            raise SettingsError("JWT_SECRET is required for HS* algorithms")

    @property
    def uses_public_key(self) -> bool:
        return set(self.algorithms) <= PUBLIC_KEY_ALGORITHMS

    def verification_key(self) -> str:
        key = self.public_key if self.uses_public_key else self.secret
        assert key is not None  # checked in __post_init__
        return key


@dataclass(frozen=True)
class Settings:
    auth: AuthSettings
    host: str = "127.0.0.1"  # HLGATEWAY_HOST
    port: int = 8080  # HLGATEWAY_PORT
    upstream: str = "sim"  # HLGATEWAY_UPSTREAM: sim | mainnet | testnet | ws(s)://host/ws
    sim_seed: int = 0  # HLGATEWAY_SIM_SEED
    allowed_origins: tuple[str, ...] = ()  # HLGATEWAY_ALLOWED_ORIGINS, comma-separated
    max_message_bytes: int = 64 * 1024  # HLGATEWAY_MAX_MESSAGE_BYTES (bigger: close 1009)
    max_subscriptions: int = 100  # HLGATEWAY_MAX_SUBSCRIPTIONS, per connection
    max_rooms: int = 20  # HLGATEWAY_MAX_ROOMS, per connection
    heartbeat_interval: float = 30.0  # HLGATEWAY_HEARTBEAT_INTERVAL (s)
    heartbeat_timeout: float = 60.0  # HLGATEWAY_HEARTBEAT_TIMEOUT (s)
    error_limit: int = 10  # HLGATEWAY_ERROR_LIMIT bad messages ...
    error_window: float = 60.0  # HLGATEWAY_ERROR_WINDOW ... per this many seconds
    outbox_max_bytes: int = 4 * 1024 * 1024  # HLGATEWAY_OUTBOX_MAX_BYTES, per connection
    socket_buffer_bytes: int = 256 * 1024  # HLGATEWAY_SOCKET_BUFFER_BYTES: kernel-side backlog
    write_timeout: float = 30.0  # HLGATEWAY_WRITE_TIMEOUT (s) without progress: 4008
    compression: bool = True  # HLGATEWAY_COMPRESSION: offer permessage-deflate (0/1)
    compression_threshold: int = 1024  # HLGATEWAY_COMPRESSION_THRESHOLD: smaller goes plain
    shutdown_timeout: float = 30.0  # HLGATEWAY_SHUTDOWN_TIMEOUT (s)
    upstream_ping_interval: float = 30.0  # HLGATEWAY_UPSTREAM_PING_INTERVAL (s)
    upstream_pong_timeout: float = 10.0  # HLGATEWAY_UPSTREAM_PONG_TIMEOUT (s)
    upstream_stale_after: float = 15.0  # HLGATEWAY_UPSTREAM_STALE_AFTER (s) for allMids/l2Book
    upstream_backoff_max: float = 30.0  # HLGATEWAY_UPSTREAM_BACKOFF_MAX (s)
    upstream_max_links: int = 10  # HLGATEWAY_UPSTREAM_MAX_LINKS
    upstream_max_subscriptions: int = 1000  # HLGATEWAY_UPSTREAM_MAX_SUBSCRIPTIONS
    upstream_max_messages: int = 2000  # HLGATEWAY_UPSTREAM_MAX_MESSAGES per minute
    upstream_max_new_links: int = 30  # HLGATEWAY_UPSTREAM_MAX_NEW_LINKS per minute
    upstream_max_wallets: int = 10  # HLGATEWAY_UPSTREAM_MAX_WALLETS on WS; more are polled
    upstream_rest_weight: int = 1200  # HLGATEWAY_UPSTREAM_REST_WEIGHT per minute
    upstream_poll_interval: float = 5.0  # HLGATEWAY_UPSTREAM_POLL_INTERVAL (s)
    upstream_ca_file: str | None = None  # HLGATEWAY_UPSTREAM_CA_FILE: extra CA for wss/https
    upstream_host: str | None = None  # HLGATEWAY_UPSTREAM_HOST: mainnet/testnet at another host
    context_refresh: float = 10.0  # HLGATEWAY_CONTEXT_REFRESH (s) for 24 h change/volume
    log_level: str = "INFO"  # HLGATEWAY_LOG_LEVEL
    # Abuse limits (docs/security.md); 0 turns a count limit off.
    new_connections_per_minute: int = 10  # HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE, per client IP
    max_connections_per_ip: int = 100  # HLGATEWAY_MAX_CONNECTIONS_PER_IP, open at once
    max_connections_per_user: int = 20  # HLGATEWAY_MAX_CONNECTIONS_PER_USER, open at once
    message_rate: float = 20.0  # HLGATEWAY_MESSAGE_RATE, client messages/s per connection
    message_burst: int = 100  # HLGATEWAY_MESSAGE_BURST, token bucket size
    handshake_timeout: float = 10.0  # HLGATEWAY_HANDSHAKE_TIMEOUT (s): the TLS handshake
    request_head_timeout: float = 10.0  # HLGATEWAY_REQUEST_HEAD_TIMEOUT (s): slowloris deadline
    trusted_proxies: tuple[str, ...] = ()  # HLGATEWAY_TRUSTED_PROXIES: IPs/CIDRs, comma-separated
    allow_missing_origin: bool = True  # HLGATEWAY_ALLOW_MISSING_ORIGIN: upgrades without Origin
    tls_cert: str | None = None  # HLGATEWAY_TLS_CERT / --tls-cert (PEM)
    tls_key: str | None = None  # HLGATEWAY_TLS_KEY / --tls-key (PEM)
    # History and recovery of lossless streams (docs/protocol.md "Positions").
    history_size: int = 1000  # HLGATEWAY_HISTORY_SIZE: messages kept at least, per stream
    history_ttl: float = 600.0  # HLGATEWAY_HISTORY_TTL (s): kept at least this long
    history_max: int = 2_000  # HLGATEWAY_HISTORY_MAX: hard bound per stream (memory)
    market_wait: float = 10.0  # HLGATEWAY_MARKET_WAIT (s): subscribes wait for the market list
    # The user directory (admin reads by userId alone): a file and/or a PostgreSQL table.
    directory_file: str | None = None  # HLGATEWAY_DIRECTORY_FILE: JSON or TOML
    directory_dsn: str | None = None  # HLGATEWAY_DIRECTORY_DSN: postgresql://...
    directory_table: str = "hlgateway_user_wallets"  # HLGATEWAY_DIRECTORY_TABLE
    directory_refresh: float = 30.0  # HLGATEWAY_DIRECTORY_REFRESH (s)
    extra: Mapping[str, str] = field(default_factory=dict)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def auth_from_env(env: Mapping[str, str], secret: str | None = None) -> AuthSettings:
    public_key = _env(env, "JWT_PUBLIC_KEY")
    key_file = _env(env, "JWT_PUBLIC_KEY_FILE")
    if public_key is None and key_file is not None:
        public_key = Path(key_file).read_text()
    algorithms = _split(_env(env, "JWT_ALGORITHMS")) or ("HS256",)
    return AuthSettings(
        secret=secret if secret is not None else _env(env, "JWT_SECRET"),
        algorithms=algorithms,
        public_key=public_key,
        audience=_env(env, "JWT_AUDIENCE"),
        issuer=_env(env, "JWT_ISSUER"),
        leeway_seconds=int(_env(env, "JWT_LEEWAY") or 0),
    )


def settings_from_env(
    env: Mapping[str, str] | None = None,
    *,
    auth: AuthSettings,
    **overrides: object,
) -> Settings:
    """Environment first, then `overrides` (flags that were given) on top."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    numeric: dict[str, type] = {
        "port": int,
        "sim_seed": int,
        "max_message_bytes": int,
        "max_subscriptions": int,
        "max_rooms": int,
        "heartbeat_interval": float,
        "heartbeat_timeout": float,
        "error_limit": int,
        "error_window": float,
        "outbox_max_bytes": int,
        "socket_buffer_bytes": int,
        "write_timeout": float,
        "compression_threshold": int,
        "shutdown_timeout": float,
        "upstream_ping_interval": float,
        "upstream_pong_timeout": float,
        "upstream_stale_after": float,
        "upstream_backoff_max": float,
        "upstream_max_links": int,
        "upstream_max_subscriptions": int,
        "upstream_max_messages": int,
        "upstream_max_new_links": int,
        "upstream_max_wallets": int,
        "upstream_rest_weight": int,
        "upstream_poll_interval": float,
        "context_refresh": float,
        "new_connections_per_minute": int,
        "max_connections_per_ip": int,
        "max_connections_per_user": int,
        "message_rate": float,
        "message_burst": int,
        "handshake_timeout": float,
        "request_head_timeout": float,
        "history_size": int,
        "history_ttl": float,
        "history_max": int,
        "market_wait": float,
        "directory_refresh": float,
    }
    for name, kind in numeric.items():
        raw = _env(env, f"HLGATEWAY_{name.upper()}")
        if raw is not None:
            try:
                values[name] = kind(raw)
            except ValueError:
                raise SettingsError(f"HLGATEWAY_{name.upper()}: not a number: {raw!r}") from None
    for name in (
        "host",
        "upstream",
        "log_level",
        "upstream_ca_file",
        "upstream_host",
        "tls_cert",
        "tls_key",
        "directory_file",
        "directory_dsn",
        "directory_table",
    ):
        raw = _env(env, f"HLGATEWAY_{name.upper()}")
        if raw is not None:
            values[name] = raw
    origins = _env(env, "HLGATEWAY_ALLOWED_ORIGINS")
    if origins is not None:
        values["allowed_origins"] = _split(origins)
    proxies = _env(env, "HLGATEWAY_TRUSTED_PROXIES")
    if proxies is not None:
        values["trusted_proxies"] = _split(proxies)
    for name in ("allow_missing_origin", "compression"):
        raw = _env(env, f"HLGATEWAY_{name.upper()}")
        if raw is not None:
            values[name] = _flag(f"HLGATEWAY_{name.upper()}", raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(auth=auth, **values)  # type: ignore[arg-type]
    check_security_settings(settings)
    return settings


def check_security_settings(settings: Settings) -> None:
    """Refuse settings that would open a hole or cannot work, before anything starts."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SettingsError("TLS needs both --tls-cert and --tls-key (HLGATEWAY_TLS_CERT/KEY)")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not Path(path).is_file():
            raise SettingsError(f"TLS: no such file: {path}")
    for entry in settings.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(
                f"HLGATEWAY_TRUSTED_PROXIES: not an address or CIDR block: {entry!r}"
            ) from None
    for name in ("handshake_timeout", "request_head_timeout", "history_ttl", "directory_refresh"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"HLGATEWAY_{name.upper()}: must be positive")
    if not 1 <= settings.history_size <= settings.history_max:
        raise SettingsError("HLGATEWAY_HISTORY_SIZE: must be 1..HLGATEWAY_HISTORY_MAX")
    if not TABLE_RE.fullmatch(settings.directory_table):
        raise SettingsError("HLGATEWAY_DIRECTORY_TABLE: a table name ([schema.]name)")

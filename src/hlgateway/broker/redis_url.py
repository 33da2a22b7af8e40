"""Where the Redis engine's Redis is: the `--broker` URL, parsed (sans I/O).

Two ways to name it:

- one server: `redis://[[user]:password@]host[:port][/db]`, `rediss://` (TLS,
  with redis-py's `ssl_*` options), `unix:///path?db=N`, read by redis-py;
- a Redis Sentinel group: `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]`,
  the sentinels' addresses (port 26379 by default), the name of the primary they
  watch (`sentinel monitor <master> ...`) and the database. The user and password
  are the data servers' (primary and replicas); the sentinels' own, if they ask
  for one, are the options `sentinel_username` and `sentinel_password`.

Both take the engine's own option `min_replicas=N`: a lossless publication is
delivered only once N replicas have it (docs/scaling.md, "Redis that fails
over"). 1 by default with Sentinel, 0 for one server.

`problem(url)` says what is wrong with a URL before anything starts (settings
validation); `parse(url)` gives the `RedisTarget`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
SENTINEL_PORT = 26379
ENGINE_OPTIONS = ("min_replicas",)
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
SHAPE = (
    "redis://HOST:PORT/DB, or redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER/DB "
    "for a Redis Sentinel group"
)


@dataclass(frozen=True, slots=True)
class SentinelGroup:
    """The sentinels to ask, and the primary they watch."""

    addresses: tuple[tuple[str, int], ...]
    master: str
    username: str | None = None  # the sentinels' own AUTH, if any
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed `--broker` URL.

    `url` is what redis-py connects to (the engine's options removed); with
    Sentinel it is empty until the primary is known (`at`).
    """

    url: str
    db: int
    min_replicas: int
    sentinel: SentinelGroup | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    redacted: str = ""  # for logs and /health: never a credential

    def at(self, host: str, port: int) -> str:
        """The URL of the data server at host:port (the primary the sentinels named)."""
        auth = ""
        if self.password is not None:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password, safe='')}@"
        return f"redis://{auth}{_host(host)}:{port}/{self.db}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def problem(url: str) -> str | None:
    """What is wrong with `url` as a `--broker` URL, or None."""
    try:
        parse(url)
    except ValueError as exc:
        return str(exc)
    return None


def parse(url: str) -> RedisTarget:
    """The target a `--broker` URL names; ValueError says what is wrong (never
    with a credential in it)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"a Redis URL: {SHAPE}")
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mine = dict(q for q in query if q[0] in ENGINE_OPTIONS)
    rest = [q for q in query if q[0] not in ENGINE_OPTIONS]
    plain = urlunsplit(parts._replace(query=urlencode(rest)))
    if scheme == "unix":
        db = _int(dict(rest).get("db", "0"), "db", 0)
        where = f"unix://{parts.path}?db={db}"
    else:
        db = _int(parts.path.strip("/") or "0", "the database", 0)
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"{scheme}:// URL: the port is not a number") from None
        where = f"{scheme}://{parts.hostname}:{port}/{db}"
    return RedisTarget(
        url=plain,
        db=db,
        min_replicas=_int(mine.get("min_replicas", "0"), "min_replicas", 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        redacted=where,
    )


def _parse_sentinel(url: str) -> RedisTarget:
    rest = url.split("://", 1)[1]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://secret@host is read as a password by redis-py
            username, password = None, unquote(user)
    addresses = tuple(_address(item) for item in hosts.split(",") if item.strip())
    if not addresses:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: name at least one sentinel (HOST:PORT)")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError(
            f"{SENTINEL_SCHEME}:// URL: name the primary the sentinels watch: "
            f"{SENTINEL_SCHEME}://HOST:PORT/MASTER/DB"
        )
    if len(segments) > 2:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: the path is /MASTER or /MASTER/DB")
    master = unquote(segments[0])
    db = _int(segments[1], "the database", 0) if len(segments) == 2 else 0
    options = dict(parse_qsl(query_text, keep_blank_values=True))
    unknown = sorted(set(options) - set(ENGINE_OPTIONS) - set(SENTINEL_OPTIONS))
    if unknown:
        known = ", ".join((*ENGINE_OPTIONS, *SENTINEL_OPTIONS))
        raise ValueError(
            f"{SENTINEL_SCHEME}:// URL: unknown option {unknown[0]!r} (known: {known})"
        )
    group = SentinelGroup(
        addresses,
        master,
        username=options.get("sentinel_username") or None,
        password=options.get("sentinel_password") or None,
    )
    sentinels = ",".join(f"{_host(h)}:{p}" for h, p in addresses)
    return RedisTarget(
        url="",
        db=db,
        min_replicas=_int(options.get("min_replicas", "1"), "min_replicas", 0),
        sentinel=group,
        username=username,
        password=password,
        redacted=f"{SENTINEL_SCHEME}://{sentinels}/{master}/{db}",
    )


def _address(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [v6]:port
        host, _, port = item[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: a sentinel without a host")
    return host, _int(port, "a sentinel's port", 1) if port else SENTINEL_PORT


def _int(text: str, what: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"Redis URL: {what} must be a whole number, not {text!r}") from None
    if value < least:
        raise ValueError(f"Redis URL: {what} must be at least {least}")
    return value

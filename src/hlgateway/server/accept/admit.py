"""Who may open a WebSocket, decided from the request head, cheapest check first.

shutting down or full (503), Origin (403), per-IP admission (429 with Retry-After), a
valid handshake (405/400/426); then the 101, and only then the token and
the per-user limit, refused with a 1008 close so that browsers can read why
(they cannot read an HTTP error's body on a failed upgrade).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hlgateway.auth import Principal, TokenError
from hlgateway.server.accept.client_counts import client_ip
from hlgateway.server.capacity import RETRY_AFTER
from hlgateway.websocket.handshake import (
    Deflate,
    HandshakeError,
    RequestHead,
    check_upgrade,
    negotiate_deflate,
)

if TYPE_CHECKING:
    from hlgateway.gateway import Gateway
    from hlgateway.server.accept.defences import Edge

log = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = "Too many connections"
SERVER_FULL = "server full"


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _normal_origin(origin: str) -> str:
    """`HTTPS://App.Example:443/` -> `https://app.example`: scheme, host, non-default port."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    try:
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number
        return origin.strip().lower()
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"


def origin_allowed(
    origin: str | None, host: str, allowed: tuple[str, ...], allow_missing: bool = True
) -> bool:
    """Browsers send Origin: same host as the gateway, or allow-listed.

    No Origin (bots, servers: no browser, so no cross-site hijacking) is allowed
    unless `allow_missing` is off. `null` (sandboxed frames, files) is another site.
    """
    if origin is None:
        return allow_missing
    if "*" in allowed:
        return True
    normal = _normal_origin(origin)
    if any(normal == _normal_origin(entry) for entry in allowed):
        return True
    netloc = urlsplit(origin.strip()).netloc.lower()
    return bool(netloc) and netloc == host.lower()


@dataclass(frozen=True, slots=True)
class Admitted:
    """The upgrade goes ahead (101). `principal` None: close at once with 1008 `refusal`."""

    ip: str
    key: str
    deflate: Deflate | None
    principal: Principal | None
    refusal: str = ""


def admit(head: RequestHead, peer: str | None, gateway: Gateway, edge: Edge) -> Admitted:
    """Raises HandshakeError for an HTTP refusal; counts what it refuses.

    When it returns, the IP has been counted in (`leave_ip` when the socket
    closes) and, with a principal, so has the user (`leave_user`).
    """
    settings = gateway.settings
    if gateway.shutting_down:
        raise HandshakeError(503, "shutting down")
    if len(gateway.connections) >= gateway.capacity:
        # Before the process runs out of open files (server/capacity.py).
        edge.stats["serverFull"] += 1
        log.info("connection refused: %d connections open (the capacity)", gateway.capacity)
        raise HandshakeError(503, SERVER_FULL, (("Retry-After", str(RETRY_AFTER)),))
    origin = head.get("origin")
    if not origin_allowed(
        origin, head.host, settings.allowed_origins, settings.allow_missing_origin
    ):
        edge.stats["missingOriginRefused" if origin is None else "originRefused"] += 1
        raise HandshakeError(403, "origin required" if origin is None else "origin not allowed")
    ip = client_ip(peer, head.getall("x-forwarded-for"), edge.trusted_proxies)
    refused = edge.admission.enter_ip(ip)
    if refused is not None:
        log.info("connection refused: %s limit", refused.value, extra={"ip": ip})
        retry = str(edge.admission.retry_after(ip))
        raise HandshakeError(429, TOO_MANY_CONNECTIONS, (("Retry-After", retry),))
    try:
        key = check_upgrade(head)  # an attempt counts against the IP even when malformed
        offers = head.getall("sec-websocket-extensions")
        deflate = negotiate_deflate(offers) if settings.compression else None
        token = head.query("token") or bearer_token(head.get("authorization"))
        principal = gateway.verifier.verify(token)
    except TokenError as exc:
        edge.stats["tokenRefused"] += 1
        log.info("connection refused: %s", exc.reason, extra={"ip": ip})
        return Admitted(ip, key, deflate, None, exc.reason)
    except BaseException:  # a refused handshake (HandshakeError), or a bug
        edge.admission.leave_ip(ip)
        raise
    if edge.admission.enter_user(principal.user_id) is not None:
        log.info(
            "connection refused: user %s has too many connections",
            principal.user_id,
            extra={"ip": ip, "user": principal.user_id},
        )
        return Admitted(ip, key, deflate, None, TOO_MANY_CONNECTIONS)
    return Admitted(ip, key, deflate, principal)

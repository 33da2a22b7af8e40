"""Who may open a WebSocket: per-IP and per-user connection accounting (sans I/O).

Three limits, each off when set to 0:
- new connections per client IP per minute (a sliding window, the seed's rule);
- connections open at once per client IP;
- connections open at once per user (known only after the token is verified).

The edge asks `enter_ip` before the upgrade (a refusal is HTTP 429) and
`enter_user` after the token is verified (a refusal is a 1008 close), and calls
`leave_*` when the connection ends. The client IP is the socket's peer, or,
only when that peer is a configured trusted proxy, the nearest untrusted
address in `X-Forwarded-For`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from hlgateway.ratelimit import KeyedWindow

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refusal(StrEnum):
    """Why a connection was refused; the value names its /health counter."""

    RATE = "newConnectionsPerIp"
    IP_OPEN = "openConnectionsPerIp"
    USER_OPEN = "openConnectionsPerUser"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    new_per_ip_per_minute: int = 10
    max_per_ip: int = 100
    max_per_user: int = 20
    window: float = 60.0


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`10.0.0.1`, `10.0.0.0/8`, `::1`: addresses and CIDR blocks (ValueError if malformed)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted: tuple[IPNetwork, ...]
) -> str:
    """The address the limits apply to.

    `forwarded_for` is every `X-Forwarded-For` header value in order. It is read
    only when the peer is trusted, from the right (the hop nearest to us),
    skipping trusted proxies; the first untrusted address is the client. A
    malformed entry stops the walk at the last good hop, so a client cannot pick
    its own address by sending a forged header through the proxy.
    """
    address = _address(peer) if peer else None
    if address is None:
        return peer or "unknown"
    if not trusted or not _in(address, trusted):
        return str(address)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        candidate = _address(hop)
        if candidate is None:
            break
        address = candidate
        if not _in(address, trusted):
            break
    return str(address)


def _in(address: IPAddress, nets: tuple[IPNetwork, ...]) -> bool:
    return any(address in net for net in nets if net.version == address.version)


class Admission:
    def __init__(
        self, limits: AdmissionLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._new = KeyedWindow(limits.new_per_ip_per_minute, limits.window, clock)
        self._per_ip: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self.refused: dict[Refusal, int] = dict.fromkeys(Refusal, 0)

    # -- before the upgrade ---------------------------------------------
    def enter_ip(self, ip: str) -> Refusal | None:
        """Count a new connection from `ip`, or say why it is refused (nothing counted then)."""
        limit = self.limits.max_per_ip
        if limit > 0 and self._per_ip.get(ip, 0) >= limit:
            return self._refuse(Refusal.IP_OPEN)
        if not self._new.hit(ip):
            return self._refuse(Refusal.RATE)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return None

    def retry_after(self, ip: str) -> int:
        """Whole seconds a refused IP should wait (for the Retry-After header)."""
        return max(1, int(self._new.retry_after(ip) + 0.999))

    def leave_ip(self, ip: str) -> None:
        _decrement(self._per_ip, ip)

    # -- after the token ------------------------------------------------
    def enter_user(self, user_id: str) -> Refusal | None:
        limit = self.limits.max_per_user
        if limit > 0 and self._per_user.get(user_id, 0) >= limit:
            return self._refuse(Refusal.USER_OPEN)
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        return None

    def leave_user(self, user_id: str) -> None:
        _decrement(self._per_user, user_id)

    # -- queries ----------------------------------------------------------
    def open_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def open_for(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    @property
    def tracked(self) -> int:
        """Keys held in memory (IPs with open connections or recent attempts, users)."""
        return len(self._per_ip) + len(self._per_user) + len(self._new)

    def _refuse(self, why: Refusal) -> Refusal:
        self.refused[why] += 1
        return why


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)

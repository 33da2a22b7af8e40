"""Where the upstream is: Hyperliquid's networks, the simulator, or any ws:// URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    ws_url: str
    info_url: str

    @property
    def host(self) -> str:
        return urlsplit(self.ws_url).netloc

    @property
    def exchange_url(self) -> str:
        """REST `/exchange`, beside `/info` (signed actions: order entry's fallback)."""
        base = self.info_url[: -len("/info")] if self.info_url.endswith("/info") else self.info_url
        return base + "/exchange"

    @property
    def mainnet(self) -> bool:
        """Whether actions for this upstream are signed for Hyperliquid's mainnet.

        Only mainnet itself (at any host): testnet, the simulator and custom URLs
        check signatures as a non-mainnet chain, as the SDK signs for them.
        """
        return self.name == "mainnet"


MAINNET = Endpoint("mainnet", "wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz/info")
TESTNET = Endpoint(
    "testnet", "wss://api.hyperliquid-testnet.xyz/ws", "https://api.hyperliquid-testnet.xyz/info"
)


def with_host(endpoint: Endpoint, host: str) -> Endpoint:
    """The same endpoint (scheme, paths) at another host[:port]: Hyperliquid's own
    URLs pointed at a mirror, a proxy, or a simulator in tests."""

    def swap(url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))

    return Endpoint(endpoint.name, swap(endpoint.ws_url), swap(endpoint.info_url))


def endpoint_for(upstream: str, host_override: str | None = None) -> Endpoint:
    """`mainnet`, `testnet`, or a ws(s):// URL whose REST API is at the same host's /info.

    `host_override` keeps everything of the named network but its host.
    """
    if upstream in ("mainnet", "testnet"):
        network = MAINNET if upstream == "mainnet" else TESTNET
        return with_host(network, host_override) if host_override else network
    parts = urlsplit(upstream)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"upstream must be sim, mainnet, testnet or a ws(s):// URL: {upstream!r}")
    path = parts.path or "/ws"
    base = path[: -len("/ws")] if path.endswith("/ws") else path.rstrip("/")
    http_scheme = "https" if parts.scheme == "wss" else "http"
    ws_url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    info_url = urlunsplit((http_scheme, parts.netloc, base + "/info", "", ""))
    return Endpoint("custom", ws_url, info_url)

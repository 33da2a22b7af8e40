"""What a stream lost, from the exchange's info API: fills (`userFillsByTime`) and
ledger events (`userNonFundingLedgerUpdates`, `userFunding`).

Needed when a stream starts without a replay: the first subscribe of a wallet
(what came between /watch and the subscription), and `recovered: false` (the
gateway lost its history, or the gap is older than it keeps). The fills come
back in the gateway's `user_fills` shape, with the exchange's own decimal strings
for sizes and prices, and spot pairs named as the gateway names them (`@107` is
`HYPE/USDC`: its `GET /api/markets`); the ledger events in `user_ledger`'s, with
the gateway's own ids (so that a reloaded event and the streamed one are one).
Pages of 2,000 are followed.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec

from hlgateway.upstream.wire import is_spot_coin, ledger_event

PAGE = 2000
NAMES_TTL = 60.0  # seconds the gateway's market names are reused
LEDGER_REQUESTS = ("userNonFundingLedgerUpdates", "userFunding")


def to_gateway_fill(
    raw: dict[str, Any], wallet: str, names: dict[str, str] | None = None
) -> dict[str, Any]:
    coin = raw["coin"]
    return {
        "id": raw["tid"],
        "orderId": raw.get("oid"),
        "symbol": (names or {}).get(coin, coin),
        "market": "spot" if is_spot_coin(coin) else "perp",
        "direction": raw.get("dir", ""),
        "side": "buy" if raw.get("side") == "B" else "sell",
        "price": raw["px"],
        "size": raw["sz"],
        "fee": raw.get("fee", "0"),
        "closedPnl": raw.get("closedPnl", "0"),
        "timestamp": raw["time"],
        "wallet": wallet,
        "feeToken": raw.get("feeToken", "USDC"),
    }


def markets_url(gateway: str) -> str:
    """The gateway's `GET /api/markets` for its WebSocket URL (ws://h:p/ws)."""
    parts = urlsplit(gateway)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.removesuffix("/ws").rstrip("/") + "/api/markets"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class FillHistory:
    """`fills_since` and `ledger_since` against an info API URL (given, or learned
    from the gateway)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._own = session is None
        self._names: dict[str, str] = {}
        self._names_at = float("-inf")

    async def market_names(self, gateway: str) -> dict[str, str]:
        """Hyperliquid's coin names (and aliases) -> the gateway's symbols, from the
        gateway at WebSocket URL `gateway`; what it had before if it cannot say."""
        if time.monotonic() - self._names_at < NAMES_TTL:
            return self._names
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with self._session.get(markets_url(gateway), timeout=timeout) as resp:
                resp.raise_for_status()
                body = await resp.json()
            names: dict[str, str] = {}
            for market in body.get("markets", []):
                for alias in market.get("aliases", []):
                    names[alias] = market["symbol"]
            self._names, self._names_at = names, time.monotonic()
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            pass  # an older gateway, or away: coins keep Hyperliquid's names
        return self._names

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def fills_since(
        self, info_url: str, wallet: str, start_ms: int, names: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every fill of `wallet` at or after `start_ms`, oldest first."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        start = start_ms
        while True:
            body = {"type": "userFillsByTime", "user": wallet, "startTime": start}
            timeout = aiohttp.ClientTimeout(total=15)
            async with self._session.post(info_url, json=body, timeout=timeout) as resp:
                resp.raise_for_status()
                page: list[dict[str, Any]] = await resp.json()
            fresh = [f for f in page if f["tid"] not in seen]
            seen.update(f["tid"] for f in fresh)
            out += [to_gateway_fill(f, wallet, names) for f in fresh]
            if len(page) < PAGE or not fresh:
                break
            start = max(f["time"] for f in page)
        out.sort(key=lambda f: (f["timestamp"], f["id"]))
        return out

    async def ledger_since(self, info_url: str, wallet: str, start_ms: int) -> list[dict[str, Any]]:
        """Every ledger event (non-funding updates and funding payments) of `wallet` at or
        after `start_ms`, oldest first, as `user_ledger` gives them."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        out: dict[str, dict[str, Any]] = {}
        for request in LEDGER_REQUESTS:
            start = start_ms
            while True:
                body = {"type": request, "user": wallet, "startTime": start}
                timeout = aiohttp.ClientTimeout(total=15)
                async with self._session.post(info_url, json=body, timeout=timeout) as resp:
                    resp.raise_for_status()
                    page: list[dict[str, Any]] = await resp.json()
                events = [
                    msgspec.to_builtins(ledger_event(r["time"], r.get("hash"), r["delta"], wallet))
                    for r in page
                ]
                fresh = [e for e in events if e["id"] not in out]
                out.update((e["id"], e) for e in fresh)
                if len(page) < PAGE or not fresh:
                    break
                start = max(r["time"] for r in page)
        return sorted(out.values(), key=lambda e: (e["time"], e["id"]))

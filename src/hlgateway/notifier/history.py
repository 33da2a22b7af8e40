"""The fills a stream lost, from the exchange's info API (`userFillsByTime`).

Needed when a stream starts without a replay: the first subscribe of a wallet
(what came between /watch and the subscription), and `recovered: false` (the
gateway lost its history, or the gap is older than it keeps). The
fills come back in the gateway's `user_fills` shape, with the exchange's own
decimal strings for sizes and prices. Pages of 2,000 are followed.
"""

from __future__ import annotations

from typing import Any

import aiohttp

PAGE = 2000


def to_gateway_fill(raw: dict[str, Any], wallet: str) -> dict[str, Any]:
    return {
        "id": raw["tid"],
        "orderId": raw.get("oid"),
        "symbol": raw["coin"],
        "side": "buy" if raw.get("side") == "B" else "sell",
        "price": raw["px"],
        "size": raw["sz"],
        "fee": raw.get("fee", "0"),
        "closedPnl": raw.get("closedPnl", "0"),
        "timestamp": raw["time"],
        "wallet": wallet,
        "feeToken": raw.get("feeToken", "USDC"),
    }


class FillHistory:
    """`fills_since` against an info API URL (given, or learned from the gateway)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._own = session is None

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def fills_since(self, info_url: str, wallet: str, start_ms: int) -> list[dict[str, Any]]:
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
            out += [to_gateway_fill(f, wallet) for f in fresh]
            if len(page) < PAGE or not fresh:
                break
            start = max(f["time"] for f in page)
        out.sort(key=lambda f: (f["timestamp"], f["id"]))
        return out

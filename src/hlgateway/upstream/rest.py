"""Hyperliquid's REST `/info`, typed, inside the weight budget.

Weights follow Hyperliquid's rate-limit table: l2Book, allMids and
clearinghouseState weigh 2; most other info requests 20; userFillsByTime,
historicalOrders and the ledger requests 20 plus one per 20 items answered (a
call waits for its base weight in the budget; what the items add is charged
when the answer is read); candleSnapshot 20 plus one per 60 candles (we ask for
500 at most, budgeted as 29).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from hlgateway.upstream import wire
from hlgateway.upstream.limits import WeightBudget

WEIGHTS = {"l2Book": 2, "allMids": 2, "clearinghouseState": 2, "candleSnapshot": 29}
DEFAULT_WEIGHT = 20
# Requests charged one more unit of weight per this many items they answer.
PER_ITEM = frozenset(
    {"userFillsByTime", "historicalOrders", "userFills", "userFunding"}
    | {"userNonFundingLedgerUpdates"}
)
ITEMS_PER_WEIGHT = 20
PAGE = 2000  # Hyperliquid returns at most this many fills, orders or ledger rows per call
LEDGER_STREAMS = ("userNonFundingLedgerUpdates", "userFunding")


def info_weight(kind: str, items: int = 0) -> int:
    """What Hyperliquid charges an /info request of `kind` that answered `items` items."""
    base = WEIGHTS.get(kind, DEFAULT_WEIGHT)
    return base + items // ITEMS_PER_WEIGHT if kind in PER_ITEM else base


class RestError(Exception):
    """The REST API failed or answered something we cannot read."""


class InfoClient:
    def __init__(self, url: str, session: aiohttp.ClientSession, budget: WeightBudget) -> None:
        self.url = url
        self._session = session
        self.budget = budget

    async def post(self, payload: dict[str, Any]) -> bytes:
        await self.budget.take(info_weight(str(payload.get("type"))))
        try:
            async with self._session.post(self.url, json=payload) as resp:
                if resp.status != 200:
                    raise RestError(f"{payload.get('type')}: HTTP {resp.status}")
                return await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RestError(f"{payload.get('type')}: {exc.__class__.__name__}") from None

    async def meta_and_contexts(self, dex: str = "", first_asset: int = 0) -> wire.Listing:
        """The perps of the main dex (`""`) or of a builder dex, with their contexts."""
        body = await self.post({"type": "metaAndAssetCtxs", **({"dex": dex} if dex else {})})
        try:
            return wire.parse_meta_and_ctxs(body, first_asset)
        except wire.WireError as exc:
            raise RestError(f"metaAndAssetCtxs: {exc}") from None

    async def spot_meta_and_contexts(self) -> wire.Listing:
        body = await self.post({"type": "spotMetaAndAssetCtxs"})
        try:
            return wire.parse_spot_meta_and_ctxs(body)
        except wire.WireError as exc:
            raise RestError(f"spotMetaAndAssetCtxs: {exc}") from None

    async def perp_dexs(self) -> list[str]:
        body = await self.post({"type": "perpDexs"})
        try:
            return wire.parse_perp_dexs(body)
        except wire.WireError as exc:
            raise RestError(f"perpDexs: {exc}") from None

    async def candles(
        self, coin: str, interval: str, start_ms: int, end_ms: int
    ) -> list[wire.Candle]:
        req = {"coin": coin, "interval": interval, "startTime": start_ms, "endTime": end_ms}
        body = await self.post({"type": "candleSnapshot", "req": req})
        try:
            return wire.parse_candles(body)
        except wire.WireError as exc:
            raise RestError(f"candleSnapshot: {exc}") from None

    async def ledger_since(self, user: str, start_ms: int) -> list[wire.LedgerEvent]:
        """Every ledger event of `user` from `start_ms` on (non-funding updates and
        funding payments), oldest first (pages through both)."""
        events: list[wire.LedgerEvent] = []
        for stream in LEDGER_STREAMS:
            seen: set[str] = set()
            start = start_ms
            while True:
                body = await self.post({"type": stream, "user": user, "startTime": start})
                try:
                    page = wire.parse_rest_ledger(body, user)
                except wire.WireError as exc:
                    raise RestError(f"{stream}: {exc}") from None
                self._charge_items(stream, len(page))
                fresh = [e for e in page if e.id not in seen]
                seen.update(e.id for e in fresh)
                events += fresh
                if len(page) < PAGE or not fresh:
                    break
                start = max(e.time for e in page)
        events.sort(key=lambda e: (e.time, e.id))
        return events

    async def fills_since(self, user: str, start_ms: int) -> list[wire.Fill]:
        """Every fill of `user` from `start_ms` on, oldest first (pages through)."""
        fills: list[wire.Fill] = []
        seen: set[int] = set()
        start = start_ms
        while True:
            body = await self.post({"type": "userFillsByTime", "user": user, "startTime": start})
            try:
                page = wire.parse_rest_fills(body, user)
            except wire.WireError as exc:
                raise RestError(f"userFillsByTime: {exc}") from None
            self._charge_items("userFillsByTime", len(page))
            fresh = [f for f in page if f.id not in seen]
            seen.update(f.id for f in fresh)
            fills += fresh
            if len(page) < PAGE or not fresh:
                fills.sort(key=lambda f: (f.timestamp, f.id))
                return fills
            start = max(f.timestamp for f in page)

    async def historical_orders(self, user: str) -> list[wire.HistoricalOrder]:
        body = await self.post({"type": "historicalOrders", "user": user})
        try:
            orders = wire.parse_historical_orders(body, user)
        except wire.WireError as exc:
            raise RestError(f"historicalOrders: {exc}") from None
        self._charge_items("historicalOrders", len(orders))
        return orders

    def _charge_items(self, kind: str, items: int) -> None:
        self.budget.charge(info_weight(kind, items) - info_weight(kind))

    async def account(self, user: str) -> wire.Account:
        body = await self.post({"type": "clearinghouseState", "user": user})
        try:
            return wire.parse_rest_account(body, user)
        except (wire.WireError, msgspec.ValidationError) as exc:
            raise RestError(f"clearinghouseState: {exc}") from None

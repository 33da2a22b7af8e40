"""A fake Hyperliquid that answers with real recorded mainnet responses.

`POST /info` answers each request type with its recording
(tests/fixtures/hyperliquid, PROVENANCE.md there), filtered the way Hyperliquid
filters it (a user's rows for that user only, `startTime`); what was never
recorded is answered empty, never invented. `GET /ws` acks subscriptions in
Hyperliquid's way and sends frames made of the recorded values in Hyperliquid's
documented frame shapes: `allMids` (the recorded perp mids and the recorded spot
pairs' `midPx`), `l2Book`, `activeSpotAssetCtx`, and the recorded `candleSnapshot`
replayed as `candle` updates, one per frame. A user's streams start with an empty
snapshot, as for a wallet with no history, and then replay the recorded rows as
live frames (`replay()`), so that a gateway, which delivers what happens after a
subscription starts, passes them all on.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hyperliquid"
LEDGER_USER = "0x2ba553d9f990a3b66b03b2dc0d030dfc1c061036"
FILLS_USER = "0xb7b6f3cea3f66bf525f5d8f965f6dbf6d9b017b2"  # fills and funding
STATE_USER = "0x5e9ee1089755c3435139848e47e6635505d5a13a"
USER_STREAMS = frozenset({"userFills", "userFundings", "userNonFundingLedgerUpdates"})


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Recordings:
    def __init__(self) -> None:
        self.meta = load("meta.json")
        self.mids: dict[str, str] = load("all_mids.json")
        self.spot_meta, self.spot_ctxs = load("spot_meta_and_asset_ctxs.json")
        self.book = load("l2_book.json")
        self.candles: list[dict[str, Any]] = load("candle_snapshot.json")
        self.fills: list[dict[str, Any]] = load("user_fills.json")
        self.funding: list[dict[str, Any]] = load("user_funding.json")
        self.ledger: list[dict[str, Any]] = load("user_non_funding_ledger_updates.json")
        self.state = load("clearinghouse_state.json")
        listed = {pair["name"] for pair in self.spot_meta["universe"]}
        self.spot_mids = {
            c["coin"]: c["midPx"]
            for c in self.spot_ctxs
            if c["coin"] in listed and c.get("midPx") is not None
        }

    def all_mids(self) -> dict[str, str]:
        return {**self.mids, **self.spot_mids}

    def ws_fundings(self) -> list[dict[str, Any]]:
        """The recorded funding rows as the WebSocket sends them (no hash there)."""
        return [
            {"time": row["time"], **{k: v for k, v in row["delta"].items() if k != "type"}}
            for row in self.funding
        ]


def _since(rows: list[dict[str, Any]], body: dict[str, Any]) -> list[dict[str, Any]]:
    start = body.get("startTime", 0)
    end = body.get("endTime")
    return [r for r in rows if r["time"] >= start and (end is None or r["time"] <= end)]


class RecordedUpstream:
    def __init__(self) -> None:
        self.data = Recordings()
        self._runner: web.AppRunner | None = None
        self._links: list[tuple[web.WebSocketResponse, set[str]]] = []
        self.port = 0
        self.requests: list[dict[str, Any]] = []

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/info", self._info)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for ws, _ in list(self._links):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def info_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/info"

    # -- REST --------------------------------------------------------------
    async def _info(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        return web.json_response(self.answer(body))

    def answer(self, body: dict[str, Any]) -> Any:
        data = self.data
        kind = body.get("type")
        user = str(body.get("user", "")).lower()
        if kind == "metaAndAssetCtxs":
            if body.get("dex"):
                return [{"universe": []}, []]
            # Only `meta` is recorded: the contexts are not (24 h change reads 0).
            return [data.meta, [{} for _ in data.meta["universe"]]]
        if kind == "spotMetaAndAssetCtxs":
            return [data.spot_meta, data.spot_ctxs]
        if kind == "perpDexs":
            return [None]  # no builder dex in the recordings
        if kind == "candleSnapshot":
            req = body.get("req", {})
            if (req.get("coin"), req.get("interval")) != ("kPEPE", "1h"):
                return []
            return [c for c in data.candles if req["startTime"] <= c["t"] <= req["endTime"]]
        if kind in ("userFills", "userFillsByTime"):
            rows = data.fills if user == FILLS_USER else []
            if kind == "userFillsByTime":
                rows = sorted(_since(rows, body), key=lambda r: r["time"])
            return rows
        if kind == "userFunding":
            return _since(data.funding, body) if user == FILLS_USER else []
        if kind == "userNonFundingLedgerUpdates":
            return _since(data.ledger, body) if user == LEDGER_USER else []
        if kind == "clearinghouseState":
            if user == STATE_USER:
                return data.state
            return {"marginSummary": {"accountValue": "0.0"}, "assetPositions": [], "time": 0}
        if kind == "historicalOrders":
            return []
        if kind == "l2Book":
            return data.book if body.get("coin") == data.book["coin"] else None
        if kind == "allMids":
            return data.all_mids()
        raise web.HTTPUnprocessableEntity(text=f"unknown variant `{kind}`")

    # -- WebSocket ---------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscribed: set[str] = set()
        link = (ws, subscribed)
        self._links.append(link)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                await self._on_message(ws, subscribed, json.loads(msg.data))
        finally:
            self._links.remove(link)
        return ws

    async def _on_message(
        self, ws: web.WebSocketResponse, subscribed: set[str], msg: dict[str, Any]
    ) -> None:
        method = msg.get("method")
        if method == "ping":
            await ws.send_json({"channel": "pong"})
            return
        sub = msg.get("subscription", {})
        key = json.dumps(sub, sort_keys=True)
        ack = {"method": method, "subscription": sub}
        if method == "unsubscribe":
            subscribed.discard(key)
            await ws.send_json({"channel": "subscriptionResponse", "data": ack})
            return
        subscribed.add(key)
        await ws.send_json({"channel": "subscriptionResponse", "data": ack})
        for frame in self._initial(sub):
            await ws.send_json(frame)

    def _initial(self, sub: dict[str, Any]) -> list[dict[str, Any]]:
        data = self.data
        kind = sub.get("type")
        if kind == "allMids" and not sub.get("dex"):
            return [{"channel": "allMids", "data": {"mids": data.all_mids()}}]
        if kind == "l2Book" and sub.get("coin") == data.book["coin"]:
            return [{"channel": "l2Book", "data": data.book}]
        if kind == "activeAssetCtx":
            ctx = next((c for c in data.spot_ctxs if c["coin"] == sub.get("coin")), None)
            if ctx is not None:
                frame = {"coin": ctx["coin"], "ctx": ctx}
                return [{"channel": "activeSpotAssetCtx", "data": frame}]
            return []  # no perp context is recorded
        if kind == "candle" and (sub.get("coin"), sub.get("interval")) == ("kPEPE", "1h"):
            return [{"channel": "candle", "data": candle} for candle in data.candles]
        if kind in USER_STREAMS:
            user = str(sub.get("user", "")).lower()
            empty = {"userFills": "fills", "userFundings": "fundings"}.get(
                kind, "nonFundingLedgerUpdates"
            )
            return [{"channel": kind, "data": {"isSnapshot": True, "user": user, empty: []}}]
        return []

    def subscribed(self, kind: str, user: str) -> bool:
        return any(
            json.loads(key).get("type") == kind and json.loads(key).get("user", "").lower() == user
            for _, keys in self._links
            for key in keys
        )

    async def replay(self, batch: int = 50) -> None:
        """Send the recorded user rows as live frames to every link subscribed to them."""
        data = self.data
        streams: list[tuple[str, str, str, list[dict[str, Any]]]] = [
            ("userFills", FILLS_USER, "fills", sorted(data.fills, key=lambda r: r["time"])),
            ("userFundings", FILLS_USER, "fundings", data.ws_fundings()),
            ("userNonFundingLedgerUpdates", LEDGER_USER, "nonFundingLedgerUpdates", data.ledger),
        ]
        for kind, user, field, rows in streams:
            for start in range(0, len(rows), batch):
                frame = {
                    "channel": kind,
                    "data": {"user": user, field: rows[start : start + batch]},
                }
                for ws, keys in list(self._links):
                    if any(
                        json.loads(k).get("type") == kind
                        and json.loads(k).get("user", "").lower() == user
                        for k in keys
                    ):
                        await ws.send_json(frame)
                await asyncio.sleep(0)

"""The simulator's ``POST /info`` and ``POST /exchange``: Hyperliquid's REST API over HTTP.

The answers are ``info.handle_info``'s and ``Exchange.handle``'s (sans I/O);
here are the HTTP side of them (Hyperliquid's status codes and error texts),
wallet tracking by query, and pushing what an action changed to the streams.
"""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from hlgateway.simulator.fanout import push_result
from hlgateway.simulator.info import InfoError, handle_info
from hlgateway.simulator.limits import info_weight
from hlgateway.simulator.state import SimState

log = logging.getLogger("hlgateway.simulator")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class InfoEndpoint:
    def __init__(self, state: SimState) -> None:
        self._state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Hyperliquid's REST weight limit is per client IP, like its WebSocket limits.
        budget = self._state.rest_budget(request.remote or "unknown")
        if not budget.admit(self._state.now()):
            limit = self._state.config.rest_weight_per_minute
            return web.Response(status=429, text=f"Rate limited: {limit} weight per minute")
        raw = await request.read()
        try:
            body = _decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return web.Response(status=400, text="Failed to parse the request body as JSON")
        kind = body.get("type") if isinstance(body, dict) else None
        try:
            self._state.tracking.watch_query(body)
            result = handle_info(self._state.world, body)
        except InfoError as exc:
            budget.charge(self._state.now(), info_weight(str(kind), None))
            return web.Response(status=exc.status, text=exc.message)
        except Exception:
            log.exception("info request failed: %.200r", raw)
            return web.Response(status=500, text="internal error")
        budget.charge(self._state.now(), info_weight(str(kind), result))
        return web.Response(body=_encode(result), content_type="application/json")


class ExchangeEndpoint:
    def __init__(self, state: SimState) -> None:
        self._state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = _decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return web.Response(status=400, text="Failed to parse the request body as JSON")
        state = self._state
        try:
            result = state.world.exchange.handle(body, state.action_now_ms())
        except Exception:  # never the signature or anything else of the body in the log
            log.exception("exchange request failed")
            return web.Response(status=500, text="internal error")
        state.counters.count_action(result.status, result.body)
        if result.status != 200:
            return web.Response(status=result.status, text=str(result.body))
        response = web.Response(body=_encode(result.body), content_type="application/json")
        push_result(state, result)
        return response

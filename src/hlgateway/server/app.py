"""HTTP routes: `/ws` (the WebSocket), `/health`, and the admin room publish."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from hlgateway.auth import TokenError
from hlgateway.gateway import Gateway
from hlgateway.protocol.errors import CloseCode, ProtocolError
from hlgateway.server.connection import Connection

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)


def bearer_token(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def origin_allowed(request: web.BaseRequest, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin: same host as the gateway, or allow-listed. No Origin: allowed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


async def websocket(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    settings = gateway.settings
    if gateway.shutting_down:
        raise web.HTTPServiceUnavailable(text="shutting down")
    if not origin_allowed(request, settings.allowed_origins):
        raise web.HTTPForbidden(text="origin not allowed")
    ws = web.WebSocketResponse(autoping=False, max_msg_size=settings.max_message_bytes)
    await ws.prepare(request)
    token = request.query.get("token") or bearer_token(request)
    try:
        principal = gateway.verifier.verify(token)
    except TokenError as exc:
        # Accepted at the HTTP level, then closed at once: browsers can read the reason.
        log.info("connection refused: %s", exc.reason)
        await ws.close(code=CloseCode.POLICY, message=exc.reason.encode())
        return ws
    await Connection(gateway, request, ws, principal).run()
    return ws


async def health(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].health()
    return web.json_response(body, status=200, dumps=_dumps)


async def publish_to_room(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    token = bearer_token(request)
    if token is None:
        raise web.HTTPUnauthorized(text="Token required")
    try:
        principal = gateway.verifier.verify(token)
    except TokenError as exc:
        raise web.HTTPUnauthorized(text=exc.reason) from None
    if not principal.is_admin:
        raise web.HTTPForbidden(text="admin role required")
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict) or "data" not in body:
        raise web.HTTPBadRequest(text='body must be {"data": ...}')
    try:
        reached = gateway.publish_to_room(request.match_info["room"], body["data"])
    except ProtocolError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None
    return web.json_response({"room": request.match_info["room"], "delivered": reached}, status=202)


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[GATEWAY] = gateway
    app.router.add_get("/ws", websocket)
    app.router.add_get("/health", health)
    app.router.add_post("/api/rooms/{room}/publish", publish_to_room)
    return app

"""HTTP routes: `/ws` (the WebSocket), `/health`, `/client.js`, and the admin room publish.

The WebSocket upgrade runs the edge's checks in order, cheapest first:
shutting down (503), Origin (403), per-IP admission (429), then the upgrade
under the handshake deadline, the token (1008), and the per-user limit (1008).
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from hlgateway.auth import TokenError
from hlgateway.gateway import Gateway
from hlgateway.metrics import CONTENT_TYPE
from hlgateway.protocol.errors import CloseCode, ProtocolError
from hlgateway.server.admission import client_ip
from hlgateway.server.connection import Connection
from hlgateway.server.edge import Edge

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
EDGE = web.AppKey("edge", Edge)

TOO_MANY_CONNECTIONS = "Too many connections"


def bearer_token(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
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
    request: web.BaseRequest, allowed: tuple[str, ...], allow_missing: bool = True
) -> bool:
    """Browsers send Origin: same host as the gateway, or allow-listed.

    No Origin (bots, servers: no browser, so no cross-site hijacking) is allowed
    unless `allow_missing` is off. `null` (sandboxed frames, files) is another site.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return allow_missing
    if "*" in allowed:
        return True
    normal = _normal_origin(origin)
    if any(normal == _normal_origin(entry) for entry in allowed):
        return True
    netloc = urlsplit(origin.strip()).netloc.lower()
    return bool(netloc) and netloc == request.host.lower()


def peer_ip(request: web.BaseRequest, edge: Edge) -> str:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    host = peer[0] if isinstance(peer, tuple) and peer else None
    return client_ip(host, request.headers.getall("X-Forwarded-For", ()), edge.trusted_proxies)


async def websocket(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    edge = request.app[EDGE]
    settings = gateway.settings
    if gateway.shutting_down:
        raise web.HTTPServiceUnavailable(text="shutting down")
    if not origin_allowed(request, settings.allowed_origins, settings.allow_missing_origin):
        missing = "Origin" not in request.headers
        edge.stats["missingOriginRefused" if missing else "originRefused"] += 1
        raise web.HTTPForbidden(text="origin required" if missing else "origin not allowed")
    ip = peer_ip(request, edge)
    refusal = edge.admission.enter_ip(ip)
    if refusal is not None:
        log.info("connection refused: %s limit", refusal.value)
        raise web.HTTPTooManyRequests(
            text=TOO_MANY_CONNECTIONS,
            headers={"Retry-After": str(edge.admission.retry_after(ip))},
        )
    try:
        return await _upgrade(request, gateway, edge)
    finally:
        edge.admission.leave_ip(ip)


async def _upgrade(request: web.Request, gateway: Gateway, edge: Edge) -> web.StreamResponse:
    settings = gateway.settings
    ws = web.WebSocketResponse(
        autoping=False, max_msg_size=settings.max_message_bytes, compress=settings.compression
    )
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            await ws.prepare(request)
    except TimeoutError:
        edge.stats["handshakeTimeouts"] += 1
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPRequestTimeout() from None
    token = request.query.get("token") or bearer_token(request)
    try:
        principal = gateway.verifier.verify(token)
    except TokenError as exc:
        # Accepted at the HTTP level, then closed at once: browsers can read the reason.
        edge.stats["tokenRefused"] += 1
        log.info("connection refused: %s", exc.reason)
        await ws.close(code=CloseCode.POLICY, message=exc.reason.encode())
        return ws
    user_id = principal.user_id
    if edge.admission.enter_user(user_id) is not None:
        log.info("connection refused: user %s has too many connections", user_id)
        await ws.close(code=CloseCode.POLICY, message=TOO_MANY_CONNECTIONS.encode())
        return ws
    try:
        await Connection(gateway, request, ws, principal, edge).run()
    finally:
        edge.admission.leave_user(user_id)
    return ws


async def health(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].health()
    body["limits"] = request.app[EDGE].health()
    return web.json_response(body, status=200, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


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


async def client_js(request: web.Request) -> web.Response:
    """The JavaScript client (an ES module), from the package data."""
    body = resources.files("hlgateway").joinpath("static/client.js").read_bytes()
    return web.Response(
        body=body,
        content_type="application/javascript",
        charset="utf-8",
        # A public static file: pages on other origins may `import` it (module scripts need CORS).
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def build_app(gateway: Gateway) -> web.Application:
    edge = Edge(gateway.settings, gateway.limits)
    app = web.Application(client_max_size=256 * 1024, middlewares=[edge.head_deadline.middleware()])
    app[GATEWAY] = gateway
    app[EDGE] = edge
    app.router.add_get("/ws", websocket)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/client.js", client_js)
    app.router.add_post("/api/rooms/{room}/publish", publish_to_room)
    return app

"""HTTP routes: `/health`, `/metrics`, `/client.js`, and the admin room publish.

`/ws` never reaches aiohttp: the front protocol answers the WebSocket
handshake itself (server/front.py, server/upgrade.py).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from hlgateway.auth import TokenError
from hlgateway.gateway import Gateway
from hlgateway.metrics import CONTENT_TYPE
from hlgateway.protocol.errors import ProtocolError
from hlgateway.server.edge import Edge
from hlgateway.server.upgrade import bearer_token

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
EDGE = web.AppKey("edge", Edge)


async def health(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].health()
    body["limits"] = request.app[EDGE].health()
    return web.json_response(body, status=200, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def publish_to_room(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    token = bearer_token(request.headers.get("Authorization"))
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
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/client.js", client_js)
    app.router.add_post("/api/rooms/{room}/publish", publish_to_room)
    return app

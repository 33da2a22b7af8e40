"""HTTP routes: the dashboard (`/`, `/assets/*`), `/health`, `/metrics`, `/client.js`,
the market list (`/api/markets`), the admin API (room publish, overview), and
`/api/trading` (what clients sign for).

`/ws` never reaches aiohttp: the accept path answers the WebSocket
handshake itself (server/accept/request_head.py, server/accept/admit.py).
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from hlgateway.auth import TokenError
from hlgateway.gateway import Gateway
from hlgateway.metrics import CONTENT_TYPE
from hlgateway.protocol.encoding import now_ms
from hlgateway.protocol.errors import ProtocolError
from hlgateway.server import guest, heap, telegram_login
from hlgateway.server.accept.admit import bearer_token
from hlgateway.server.accept.defences import Edge
from hlgateway.server.admin import overview
from hlgateway.trading.requests import RELAYED

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
EDGE = web.AppKey("edge", Edge)
CHAT_WALLETS = web.AppKey("chat_wallets", telegram_login.ChatWallets)


async def health(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].health()
    body["limits"] = request.app[EDGE].health()
    body["gc"] = heap.health()
    return web.json_response(body, status=200, dumps=_dumps)


async def markets(request: web.Request) -> web.Response:
    """Every listed market (perps, spot pairs, builder-dex perps): public, like
    Hyperliquid's own meta; 503 until the list is loaded."""
    listed = request.app[GATEWAY].upstream.markets
    if not listed.loaded:
        raise web.HTTPServiceUnavailable(text="Market list not loaded yet; try again shortly")
    body = {"markets": [m.describe() for m in listed.all()], "timestamp": now_ms()}
    return web.json_response(body, dumps=_dumps, headers={"Cache-Control": "max-age=5"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _require_admin(request: web.Request) -> None:
    """401 without a valid Bearer token, 403 for a token without the admin role."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise web.HTTPUnauthorized(text="Token required")
    try:
        principal = request.app[GATEWAY].verifier.verify(token)
    except TokenError as exc:
        raise web.HTTPUnauthorized(text=exc.reason) from None
    if not principal.is_admin:
        raise web.HTTPForbidden(text="admin role required")


async def admin_overview(request: web.Request) -> web.Response:
    _require_admin(request)
    body = overview(request.app[GATEWAY], request.app[EDGE])
    return web.json_response(body, dumps=_dumps, headers={"Cache-Control": "no-store"})


async def issue_guest_token(request: web.Request) -> web.Response:
    settings = request.app[GATEWAY].settings
    if not guest.can_issue(settings):
        raise web.HTTPNotFound(text="guest tokens are off")
    # A guest who shows a valid guest token keeps its id (the client refreshes with `auth`,
    # which must be for the same user); anything else gets a fresh guest.
    same: str | None = None
    shown = bearer_token(request.headers.get("Authorization"))
    if shown is not None:
        try:
            user_id = request.app[GATEWAY].verifier.verify(shown).user_id
        except TokenError:
            user_id = ""
        if user_id.startswith(guest.GUEST_PREFIX):
            same = user_id
    token, expires_at = guest.guest_token(settings, same)
    return web.json_response(
        {"token": token, "expiresAt": expires_at}, headers={"Cache-Control": "no-store"}
    )


async def telegram_session(request: web.Request) -> web.Response:
    settings = request.app[GATEWAY].settings
    if CHAT_WALLETS not in request.app:
        raise web.HTTPNotFound(text="Telegram login is off")
    return await telegram_login.session(request, settings, request.app[CHAT_WALLETS])


async def _close_chat_wallets(app: web.Application) -> None:
    await app[CHAT_WALLETS].close()


async def trading_info(request: web.Request) -> web.Response:
    """What a client needs to sign for this gateway's upstream: the network, and the
    asset number of every market (an order names its coin by it: perps from 0, spot
    pairs from 10000, builder-dex perps from 110000). No secret in it."""
    gateway = request.app[GATEWAY]
    endpoint = gateway.upstream.endpoint
    policy = gateway.relay.policy
    body = {
        "network": endpoint.name,
        "mainnet": endpoint.mainnet,
        "assets": {
            m.symbol: m.asset for m in gateway.upstream.markets.all() if m.asset is not None
        },
        "relayed": sorted(policy.limits.also_allowed | RELAYED),
        "limits": {
            "rate": policy.limits.rate,
            "burst": policy.limits.burst,
            "userInFlight": policy.limits.user_in_flight,
            "maxInFlight": policy.limits.max_in_flight,
        },
    }
    return web.json_response(body, dumps=_dumps, headers={"Cache-Control": "no-cache"})


async def publish_to_room(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    _require_admin(request)
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


# The dashboard's files (static/dashboard/), by name: nothing else is reachable.
_ASSET = re.compile(r"^[A-Za-z0-9_-]+\.(js|css|svg)$")
_TYPES = {"js": "application/javascript", "css": "text/css", "svg": "image/svg+xml"}
# The page runs only its own scripts and styles and talks only to this gateway; no
# referrer leaves it (the first load's address may carry ?token=).
_CSP = (
    "default-src 'self'; connect-src {connect}; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'"
)


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


def _page_headers(request: web.Request) -> dict[str, str]:
    # Older browsers do not count ws:// to the page's own host as 'self'.
    host = request.host
    connect = f"'self' ws://{host} wss://{host}" if _HOST.match(host) else "'self'"
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": _CSP.format(connect=connect),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _dashboard_file(name: str) -> bytes:
    return resources.files("hlgateway").joinpath("static/dashboard").joinpath(name).read_bytes()


async def dashboard(request: web.Request) -> web.Response:
    return web.Response(
        body=_dashboard_file("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers=_page_headers(request),
    )


async def dashboard_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    match = _ASSET.match(name)
    if match is None:
        raise web.HTTPNotFound()
    try:
        body = _dashboard_file(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(
        body=body,
        content_type=_TYPES[match.group(1)],
        charset="utf-8",
        headers=_page_headers(request),
    )


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def build_app(gateway: Gateway) -> web.Application:
    edge = Edge(gateway.settings, gateway.limits)
    app = web.Application(client_max_size=256 * 1024, middlewares=[edge.head_deadline.middleware()])
    app[GATEWAY] = gateway
    app[EDGE] = edge
    app.router.add_get("/", dashboard)
    app.router.add_get("/assets/{name}", dashboard_asset)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/markets", markets)
    app.router.add_get("/client.js", client_js)
    app.router.add_post("/api/rooms/{room}/publish", publish_to_room)
    app.router.add_get("/api/trading", trading_info)
    app.router.add_get("/api/admin/overview", admin_overview)
    app.router.add_post("/api/guest-token", issue_guest_token)
    app.router.add_post("/api/telegram/session", telegram_session)
    if telegram_login.enabled(gateway.settings):
        assert gateway.settings.telegram_database is not None
        app[CHAT_WALLETS] = telegram_login.ChatWallets(gateway.settings.telegram_database)
        app.on_cleanup.append(_close_chat_wallets)
    return app

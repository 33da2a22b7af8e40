"""aiohttp server speaking Hyperliquid's ``/ws`` and ``/info`` protocol.

One clock task advances the model in real time and fans data out; each
connection owns a reader (the request handler) and a writer task draining its
outbound queue, so a slow client never stalls the clock or other clients and
is dropped once its backlog grows past ``max_pending_frames``. All per-
connection state dies with the handler.

Hyperliquid's limits are enforced per client IP (``ClientBudget``), across all
of that IP's connections. With ``SimConfig.control`` the simulator also serves
``/control/*`` (see ``control``): the chaos operations below (drop, stall,
garbage, refuse, restart) and the ledger of everything each wallet emitted,
which are public methods of ``Simulator`` as well. Those methods are
synchronous and must be called on the simulator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from hlgateway.ratelimit import SlidingWindow
from hlgateway.simulator import wire
from hlgateway.simulator.accounts import WalletActivity
from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.control import control_handler
from hlgateway.simulator.info import InfoError, handle_info
from hlgateway.simulator.limits import ClientBudget
from hlgateway.simulator.market import Trade, aggregate_book
from hlgateway.simulator.subscriptions import (
    MAX_ECHO,
    USER_KINDS,
    Subscription,
    SubscriptionError,
    parse_subscription,
)
from hlgateway.simulator.world import SimWorld

log = logging.getLogger("hlgateway.simulator")

PARSE_ERROR = "Error parsing JSON into valid websocket request: "
# Frames that are not valid Hyperliquid frames, sent in this order (cycling) by
# ``Simulator.garbage``: non-JSON text, JSON of the wrong shape for its channel, a
# binary frame, an unknown channel, a JSON array, JSON without a channel.
GARBAGE_FRAMES: tuple[str | bytes, ...] = (
    "garbage: this is not JSON {",
    '{"channel":"l2Book","data":"garbage"}',
    b"\x00\x01garbage\xff",
    '{"channel":"noSuchChannel","data":{"garbage":true}}',
    "[1,2,3]",
    '{"data":{"coin":"BTC"}}',
)
# Info requests about one wallet; with ``track_rest_queries`` they count as watching it.
USER_INFO_TYPES = frozenset(
    {
        "clearinghouseState",
        "openOrders",
        "frontendOpenOrders",
        "userFills",
        "userFillsByTime",
        "orderStatus",
        "historicalOrders",
    }
)
MAX_CONTROL_COUNT = 10_000  # most garbage frames one request may send
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's close reply
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_PONG = '{"channel":"pong"}'


def _dump(value: Any) -> str:
    return _encode(value).decode()


def _error(text: str) -> str:
    return _dump(wire.frame("error", text))


def _ack(method: str, sub: Subscription) -> str:
    return _dump(
        wire.frame("subscriptionResponse", {"method": method, "subscription": sub.normalized()})
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _matches(normalized: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    """Subset match of a control request's fields on a normalised subscription.

    0x addresses compare case-insensitively; everything else (coin names are
    case-sensitive on Hyperliquid) compares exactly, and a bool never equals a number.
    """
    for key, want in match.items():
        if key not in normalized:
            return False
        have = normalized[key]
        if isinstance(want, str) and isinstance(have, str) and want[:2].lower() == "0x":
            if have.lower() != want.lower():
                return False
        elif have != want or isinstance(have, bool) != isinstance(want, bool):
            return False
    return True


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}")
    return seconds


def _check_link(link: int | None) -> None:
    if link is not None and (isinstance(link, bool) or not isinstance(link, int)):
        raise ValueError("link must be an integer link id")


class _Counters:
    """What ``Simulator.stats`` reports; every field a plain count."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused_max_connections = 0
        self.refused_new_connection_rate = 0
        self.refused_unavailable = 0
        self.dropped_control = 0
        self.dropped_idle = 0
        self.dropped_slow_client = 0
        self.restarts = 0
        self.refusals = 0
        self.stalled_subscriptions = 0
        self.silenced_links = 0
        self.withheld_frames = 0
        self.garbage_frames = 0
        self.limit_subscriptions = 0
        self.limit_users = 0
        self.limit_messages = 0


class _Connection:
    """One client link: its subscriptions, outbound queue and chaos state."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        budget: ClientBudget,
        max_pending: int,
        clock: Callable[[], float],
        counters: _Counters,
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.transport = transport
        self.budget = budget
        self.remote = budget.ip
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.port: int | None = int(peer[1]) if isinstance(peer, tuple) and len(peer) > 1 else None
        self.subs: dict[str, Subscription] = {}
        self.last_sent = clock()
        self.bbo_sent: dict[str, str] = {}  # sub key -> last best levels sent
        self.state_sent: dict[str, str] = {}  # user -> last clearinghouseState sent
        self.stalls: dict[str, float] = {}  # sub key -> loop time its stall ends
        self.silent_until = 0.0  # loop time until which nothing at all is sent
        self.detached = False
        self.wake = asyncio.Event()
        self.overflowed = False
        self._out: deque[str | bytes] = deque()
        self._max_pending = max_pending
        self._clock = clock
        self._counters = counters

    def silent(self, now: float) -> bool:
        return now < self.silent_until

    def send(self, frame: str | bytes) -> bool:
        """Queue a frame (dropped while the link is silenced); say whether it was queued."""
        if self.overflowed or self.detached:
            return False
        if self.silent_until and self.silent(self._clock()):
            self._counters.withheld_frames += 1
            return False
        if len(self._out) >= self._max_pending:
            # Too far behind to ever catch up: drop the client like a real server would.
            self.overflowed = True
            self._out.clear()
        else:
            self._out.append(frame)
        self.wake.set()
        return True

    def stalled(self, sub: Subscription, now: float) -> bool:
        until = self.stalls.get(sub.key)
        if until is None:
            return False
        if now < until:
            return True
        del self.stalls[sub.key]
        return False

    def withhold(self, sub: Subscription) -> bool:
        """True (and counted) if ``sub``'s data must not be pushed right now."""
        if self.stalls and self.stalled(sub, self._clock()):
            self._counters.withheld_frames += 1
            return True
        return False

    def push(self, sub: Subscription, text: str) -> None:
        """Send a data frame of ``sub`` unless that stream is stalled."""
        if not self.withhold(sub):
            self.send(text)

    def pop_pending(self) -> str | bytes | None:
        return self._out.popleft() if self._out else None

    def users(self) -> set[str]:
        return {sub.user for sub in self.subs.values() if sub.user is not None}

    def subs_of(self, kind: str) -> Iterable[Subscription]:
        return [sub for sub in self.subs.values() if sub.kind == kind]

    def abort(self) -> None:
        """Cut the TCP link without a close frame (clients see 1006)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class Simulator:
    """An offline Hyperliquid: ``GET /ws`` and ``POST /info`` on one port."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:  # noqa: B008 (frozen)
        self._config = config
        self._world: SimWorld | None = None
        self._runner: web.AppRunner | None = None
        self._tls = False
        self._clock: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: dict[int, _Connection] = {}
        self._budgets: dict[str, ClientBudget] = {}
        self._next_conn_id = 1
        self._user_refs: dict[str, int] = {}
        self._released: dict[str, float] = {}  # user -> loop time its last subscription went
        self._refuse_until = 0.0  # loop time until which upgrades get 503
        self._generation = 0  # bumped by restart(): handshakes in flight across it are cut
        self._counters = _Counters()
        self._host = ""
        self._port = 0
        self._epoch_ms = 0
        self._t0 = 0.0

    @property
    def config(self) -> SimConfig:
        return self._config

    # -- lifecycle -----------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Bind (port 0: a free port). With `ssl_context`, serve https/wss like Hyperliquid."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        cfg = self._config
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._epoch_ms = cfg.start_ms if cfg.start_ms is not None else int(time.time() * 1000)
        self._t0 = loop.time()
        self._world = SimWorld(
            cfg.seed,
            self._epoch_ms,
            tick_ms=max(1, round(cfg.tick * 1000)),
            order_interval_ms=max(1, round(cfg.order_interval * 1000)),
            max_fill_gap_ms=max(1, round(cfg.max_fill_gap * 1000)),
            history_ms=round(cfg.history * 1000),
            trade_rate=cfg.trade_rate,
        )
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_post("/info", self._info_handler)
        if cfg.control:

            async def handle_control(request: web.Request) -> web.StreamResponse:
                return await control_handler(self, request)

            app.router.add_route("*", "/control/{op:.*}", handle_control)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tls = ssl_context is not None
        bound = runner.addresses[0]
        self._host, self._port = str(bound[0]), int(bound[1])
        self._clock = asyncio.create_task(self._run_clock(), name="hl-simulator-clock")

    async def stop(self) -> None:
        """Close every client link (1001 going away), the clock and the listener."""
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
        conns = list(self._connections.values())
        if conns:
            closing = [
                c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator stopping")
                for c in conns
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), CLOSE_TIMEOUT
                )
            for conn in conns:
                conn.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def http_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._authority()}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self._tls else 'ws'}://{self._authority()}/ws"

    @property
    def world(self) -> SimWorld:
        """The live model (market, accounts and their ledgers), for tests."""
        if self._world is None:
            raise RuntimeError("simulator not started")
        return self._world

    def active_subscriptions(self) -> list[dict[str, Any]]:
        return [sub.normalized() for c in self._connections.values() for sub in c.subs.values()]

    def connection_count(self) -> int:
        return len(self._connections)

    def _authority(self) -> str:
        if self._runner is None:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def _now(self) -> float:
        if self._loop is None:
            raise RuntimeError("simulator not started")
        return self._loop.time()

    def _model_now_ms(self) -> int:
        return self._loop_to_ms(self._now())

    def _loop_to_ms(self, loop_time: float) -> int:
        """A loop time on the model clock (epoch ms; the wall clock unless start_ms is set)."""
        return self._epoch_ms + int((loop_time - self._t0) * 1000)

    # -- control: chaos operations and the ledger ----------------------------
    def links(self) -> list[dict[str, Any]]:
        """Every open link: ``{id, remote, port, subscriptions, stalled, silent}``."""
        now = self._now()
        return [
            {
                "id": conn.id,
                "remote": conn.remote,
                "port": conn.port,
                "subscriptions": [sub.normalized() for sub in conn.subs.values()],
                "stalled": [
                    sub.normalized() for sub in conn.subs.values() if conn.stalled(sub, now)
                ],
                "silent": conn.silent(now),
            }
            for conn in self._connections.values()
        ]

    def _targets(self, link: int | None) -> list[_Connection]:
        _check_link(link)
        if link is None:
            return list(self._connections.values())
        conn = self._connections.get(link)
        return [] if conn is None else [conn]

    def drop(self, link: int | None = None) -> int:
        """Abort one link (or all) without a close frame (clients see 1006).

        An unknown link id (e.g. one that already went away) drops nothing: 0.
        """
        conns = self._targets(link)
        for conn in conns:
            self._cut(conn)
        self._counters.dropped_control += len(conns)
        return len(conns)

    def drop_connections(self) -> int:
        """Abruptly cut every client link (no close frame), like a server-side drop."""
        return self.drop()

    def stall(
        self,
        match: Mapping[str, Any],
        seconds: float,
        link: int | None = None,
        silence_pongs: bool = False,
    ) -> int:
        """Withhold the data of matching subscriptions for ``seconds``; return how many.

        ``match`` is a subset of a normalised subscription (``{}`` matches all). The
        stall binds to the subscriptions open now: their pushes are skipped (not
        queued) until it ends, while pongs, acks and post answers still flow; an
        unsubscribe ends it, a later subscribe starts fresh. ``silence_pongs``
        also silences the whole link (pongs, acks, everything) for ``seconds``.
        """
        return self.stall_report(match, seconds, link, silence_pongs=silence_pongs)["stalled"]

    def stall_report(
        self,
        match: Mapping[str, Any],
        seconds: float,
        link: int | None = None,
        *,
        silence_pongs: bool = False,
    ) -> dict[str, int]:
        """``stall`` answering ``{"stalled": subscriptions, "links": links affected}``."""
        if not isinstance(match, Mapping):
            raise ValueError("match must be an object of subscription fields")
        seconds = _check_seconds("seconds", seconds, allow_zero=False)
        until = self._now() + seconds
        stalled = silenced = touched = 0
        for conn in self._targets(link):
            before = stalled
            if silence_pongs:
                conn.silent_until = max(conn.silent_until, until)
                silenced += 1
            for sub in conn.subs.values():
                if _matches(sub.normalized(), match):
                    conn.stalls[sub.key] = max(conn.stalls.get(sub.key, 0.0), until)
                    stalled += 1
            touched += silence_pongs or stalled > before
        self._counters.stalled_subscriptions += stalled
        self._counters.silenced_links += silenced
        return {"stalled": stalled, "links": touched}

    def garbage(self, count: int, link: int | None = None) -> int:
        """Send ``count`` invalid frames (``GARBAGE_FRAMES``, cycling) to each target link.

        Returns the number of frames queued (a silenced link takes none).
        """
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError("count must be an integer")
        if not 0 <= count <= MAX_CONTROL_COUNT:
            raise ValueError(f"count must be between 0 and {MAX_CONTROL_COUNT}")
        sent = 0
        for conn in self._targets(link):
            for i in range(count):
                sent += conn.send(GARBAGE_FRAMES[i % len(GARBAGE_FRAMES)])
        self._counters.garbage_frames += sent
        return sent

    def refuse(self, seconds: float) -> int:
        """Answer new upgrades with HTTP 503 for ``seconds`` (0 ends a refusal now).

        Existing links are untouched. Returns when refusing ends, in model-clock ms.
        """
        seconds = _check_seconds("seconds", seconds, allow_zero=True)
        self._refuse_until = self._now() + seconds
        self._counters.refusals += 1
        return self._loop_to_ms(self._refuse_until)

    def restart(self, down: float = 1.0) -> dict[str, int]:
        """An API server restart: abort every link, refuse upgrades for ``down`` s.

        The world (market, accounts, histories, tracking) carries on meanwhile.
        Returns ``{"dropped": n, "until": ms}``.
        """
        down = _check_seconds("down", down, allow_zero=True)
        self._generation += 1
        self._refuse_until = self._now() + down
        conns = list(self._connections.values())
        for conn in conns:
            self._cut(conn)
        self._counters.dropped_control += len(conns)
        self._counters.restarts += 1
        return {"dropped": len(conns), "until": self._loop_to_ms(self._refuse_until)}

    def ledger(self, user: str) -> dict[str, Any]:
        """Every fill and orderUpdates transition the simulator produced for ``user``.

        Entries are oldest first and recorded whether or not anyone was subscribed.
        The invented pre-history of a wallet's first tracking is included and
        marked: fills with ``time <= trackedSince`` and orders with
        ``"prehistory": true``. Caps: the newest 10000 fills and 20000 transitions.
        """
        if not isinstance(user, str) or not _ADDRESS.fullmatch(user):
            raise ValueError("user must be an address: 0x and 40 hex digits")
        wallet = self.world.accounts.wallet(user)
        if wallet is None:
            return {
                "user": user.lower(),
                "tracked": False,
                "trackedSince": None,
                "fills": [],
                "orders": [],
            }
        since = wallet.tracked_since_ms
        orders = []
        for update in wallet.order_history():
            row = wire.ledger_order(update)
            row["prehistory"] = update.status_timestamp <= since
            orders.append(row)
        return {
            "user": wallet.address,
            "tracked": wallet.tracked,
            "trackedSince": since,
            "fills": [wire.fill(f) for f in wallet.fills()],
            "orders": orders,
        }

    def stats(self) -> dict[str, Any]:
        """Counters since start (see the report in ``control``'s docstring)."""
        c = self._counters
        return {
            "connections": {
                "accepted": c.accepted,
                "open": len(self._connections),
                "refused": {
                    "maxConnections": c.refused_max_connections,
                    "newConnectionRate": c.refused_new_connection_rate,
                    "unavailable": c.refused_unavailable,
                },
            },
            "drops": {
                "control": c.dropped_control,
                "idle": c.dropped_idle,
                "slowClient": c.dropped_slow_client,
            },
            "restarts": c.restarts,
            "refusals": c.refusals,
            "stalls": {
                "subscriptions": c.stalled_subscriptions,
                "silencedLinks": c.silenced_links,
                "withheldFrames": c.withheld_frames,
            },
            "garbage": c.garbage_frames,
            "limitErrors": {
                "subscriptions": c.limit_subscriptions,
                "users": c.limit_users,
                "messages": c.limit_messages,
            },
            "trackedUsers": len(self.world.accounts.tracked_users()),
        }

    def _cut(self, conn: _Connection) -> None:
        """Abort ``conn`` and forget it at once, so ``links()`` is current on return."""
        conn.abort()
        self._detach(conn)

    # -- REST ----------------------------------------------------------------
    async def _info_handler(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = _decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return web.Response(status=400, text="Failed to parse the request body as JSON")
        try:
            self._watch_queried_user(body)
            result = handle_info(self.world, body)
        except InfoError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except Exception:
            log.exception("info request failed: %.200r", raw)
            return web.Response(status=500, text="internal error")
        return web.Response(body=_encode(result), content_type="application/json")

    # -- WebSocket -----------------------------------------------------------
    def _budget(self, ip: str) -> ClientBudget:
        budget = self._budgets.get(ip)
        if budget is None:
            cfg = self._config
            budget = ClientBudget(
                ip,
                new_connections=SlidingWindow(cfg.max_new_connections_per_minute),
                messages=SlidingWindow(cfg.max_messages_per_minute),
            )
            self._budgets[ip] = budget
        return budget

    def _admit(self, budget: ClientBudget, now: float) -> web.Response | None:
        """Refuse an upgrade before it happens, or record it; None = admitted."""
        cfg = self._config
        c = self._counters
        if now < self._refuse_until:
            c.refused_unavailable += 1
            return web.Response(status=503, text="Service temporarily unavailable")
        if len(budget.links) >= cfg.max_connections:
            c.refused_max_connections += 1
            return web.Response(
                status=429, text=f"Too many connections: at most {cfg.max_connections} per IP"
            )
        if not budget.new_connections.try_take(now):
            c.refused_new_connection_rate += 1
            limit = cfg.max_new_connections_per_minute
            return web.Response(
                status=429, text=f"Too many new connections: at most {limit} per minute per IP"
            )
        return None

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            await ws.prepare(request)  # raises aiohttp's 400 for a non-upgrade request
        budget = self._budget(request.remote or "unknown")
        refusal = self._admit(budget, self._now())
        if refusal is not None:
            return refusal
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        budget.links.add(conn_id)  # reserved now: concurrent handshakes count too
        generation = self._generation
        try:
            await ws.prepare(request)
        except BaseException:
            budget.links.discard(conn_id)
            raise
        conn = _Connection(
            conn_id,
            ws,
            request.transport,
            budget,
            self._config.max_pending_frames,
            self._now,
            self._counters,
        )
        self._connections[conn.id] = conn
        self._counters.accepted += 1
        if generation != self._generation:  # a restart happened during the handshake
            self._cut(conn)
        writer = asyncio.create_task(self._write_loop(conn), name=f"hl-simulator-writer-{conn.id}")
        try:
            async for msg in ws:
                if conn.detached:
                    break
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.send(_error(PARSE_ERROR + "binary frame"))
                else:
                    break
        finally:
            self._detach(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _write_loop(self, conn: _Connection) -> None:
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while (frame := conn.pop_pending()) is not None:
                    if isinstance(frame, bytes):
                        await conn.ws.send_bytes(frame)
                    else:
                        await conn.ws.send_str(frame)
                    conn.last_sent = self._now()
                if conn.overflowed:
                    log.warning("dropping connection %d: outbound backlog too large", conn.id)
                    self._counters.dropped_slow_client += 1
                    await conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow client")
                    conn.abort()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the link is dead; the reader will notice and clean up
            log.debug("connection %d write failed: %r", conn.id, exc)
            conn.abort()

    def _detach(self, conn: _Connection) -> None:
        if conn.detached:
            return
        conn.detached = True
        self._connections.pop(conn.id, None)
        conn.budget.links.discard(conn.id)
        for sub in conn.subs.values():
            self._release_user(sub)
        conn.subs.clear()
        conn.stalls.clear()

    def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            if not conn.budget.messages.try_take(self._now()):
                self._counters.limit_messages += 1
                limit = self._config.max_messages_per_minute
                conn.send(_error(f"Cannot send more than {limit} messages per minute."))
                return
            self._dispatch_request(conn, text)
        except Exception:  # bad input must never take the server down
            log.exception("failed to handle client message %.200r", text)
            conn.send(_error(PARSE_ERROR + text[:MAX_ECHO]))

    def _dispatch_request(self, conn: _Connection, text: str) -> None:
        parse_error = _error(PARSE_ERROR + text[:MAX_ECHO])
        try:
            msg = _decode(text)
        except (msgspec.DecodeError, RecursionError):
            conn.send(parse_error)
            return
        if not isinstance(msg, dict):
            conn.send(parse_error)
            return
        method = msg.get("method")
        if method == "ping":
            conn.send(_PONG)
        elif method in ("subscribe", "unsubscribe") and "subscription" in msg:
            if method == "subscribe":
                self._subscribe(conn, msg["subscription"])
            else:
                self._unsubscribe(conn, msg["subscription"])
        elif method == "post" and _is_int(msg.get("id")) and isinstance(msg.get("request"), dict):
            self._post(conn, msg["id"], msg["request"], parse_error)
        else:
            conn.send(parse_error)

    def _parse(self, conn: _Connection, raw: Any) -> Subscription | None:
        world = self.world
        try:
            return parse_subscription(raw, lambda coin: world.market.spec(coin) is not None)
        except SubscriptionError as exc:
            conn.send(_error(str(exc)))
            return None

    def _subscribe(self, conn: _Connection, raw: Any) -> None:
        sub = self._parse(conn, raw)
        if sub is None:
            return
        cfg = self._config
        if sub.key in conn.subs:
            conn.send(_error(f"Already subscribed: {sub.key}"))
            return
        # The limits are per IP: count across every open link of this client.
        siblings = [self._connections[i] for i in conn.budget.links if i in self._connections]
        if sum(len(c.subs) for c in siblings) >= cfg.max_subscriptions:
            self._counters.limit_subscriptions += 1
            conn.send(_error(f"Cannot subscribe to more than {cfg.max_subscriptions} channels."))
            return
        users = set().union(*(c.users() for c in siblings))
        if sub.user is not None and sub.user not in users and len(users) >= cfg.max_users:
            self._counters.limit_users += 1
            conn.send(_error(f"Cannot track more than {cfg.max_users} total users."))
            return
        # Registering, acking and sending the initial data happen without yielding to
        # the loop, so no pushed update can overtake the ack or the snapshot.
        conn.subs[sub.key] = sub
        self._retain_user(sub)
        conn.send(_ack("subscribe", sub))
        self._send_initial(conn, sub)

    def _unsubscribe(self, conn: _Connection, raw: Any) -> None:
        sub = self._parse(conn, raw)
        if sub is None:
            return
        if conn.subs.pop(sub.key, None) is None:
            conn.send(_error(f"Already unsubscribed: {sub.key}"))
            return
        conn.bbo_sent.pop(sub.key, None)
        conn.stalls.pop(sub.key, None)
        if sub.kind == "clearinghouseState" and sub.user is not None:
            conn.state_sent.pop(sub.user, None)
        self._release_user(sub)
        conn.send(_ack("unsubscribe", sub))

    def _post(self, conn: _Connection, req_id: int, request: dict[str, Any], bad: str) -> None:
        kind = request.get("type")
        payload = request.get("payload")
        if kind == "info" and isinstance(payload, dict):
            try:
                self._watch_queried_user(payload)
                data = handle_info(self.world, payload)
                response: dict[str, Any] = {
                    "type": "info",
                    "payload": {"type": payload["type"], "data": data},
                }
            except InfoError as exc:
                response = {"type": "error", "payload": exc.message}
        elif kind == "action":
            response = {"type": "error", "payload": "Actions are not supported by the simulator"}
        else:
            conn.send(bad)
            return
        conn.send(_dump(wire.frame("post", {"id": req_id, "response": response})))

    # A wallet is tracked (its order flow runs) while any link subscribes to it, and
    # for ``track_grace`` seconds after the last one went away.
    def _retain_user(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0)
        self._user_refs[sub.user] = count + 1
        self._released.pop(sub.user, None)
        if count == 0:
            self.world.accounts.track(sub.user, self.world.now_ms)  # no-op within grace

    def _release_user(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0) - 1
        if count > 0:
            self._user_refs[sub.user] = count
            return
        self._user_refs.pop(sub.user, None)
        if self._config.track_grace > 0:
            self._released[sub.user] = self._now()
        else:
            self.world.accounts.untrack(sub.user)

    def _watch_queried_user(self, body: Any) -> None:
        """With ``track_rest_queries``, an info request about a wallet tracks it for the grace."""
        if not self._config.track_rest_queries or not isinstance(body, dict):
            return
        user = body.get("user")
        if body.get("type") not in USER_INFO_TYPES or not isinstance(user, str):
            return
        if not _ADDRESS.fullmatch(user):
            return  # handle_info answers the malformed request
        user = user.lower()
        if self._user_refs.get(user, 0) > 0:
            return  # subscribed: tracked anyway
        self.world.accounts.track(user, self.world.now_ms)
        self._released[user] = self._now()  # (re)start its grace

    def _expire_tracking(self, now: float) -> None:
        grace = self._config.track_grace
        for user, since in list(self._released.items()):
            if now - since >= grace:
                del self._released[user]
                self.world.accounts.untrack(user)

    def _forget_budgets(self, now: float) -> None:
        for ip, budget in list(self._budgets.items()):
            if budget.idle(now):
                del self._budgets[ip]

    def _send_initial(self, conn: _Connection, sub: Subscription) -> None:
        world = self.world
        market = world.market
        if sub.kind == "allMids":
            conn.send(_dump(wire.frame("allMids", {"mids": wire.mids(market.mids())})))
        elif sub.kind == "l2Book" and sub.coin is not None:
            book = aggregate_book(market.book(sub.coin), sub.n_sig_figs, sub.mantissa)
            conn.send(_dump(wire.frame("l2Book", wire.l2_book(book))))
        elif sub.kind == "bbo" and sub.coin is not None:
            data = wire.bbo(market.book(sub.coin))
            conn.bbo_sent[sub.key] = _dump(data["bbo"])
            conn.send(_dump(wire.frame("bbo", data)))
        elif sub.kind == "trades" and sub.coin is not None:
            recent = market.recent_trades(sub.coin, self._config.trades_replay)
            if recent:  # an empty list would carry no coin; clients cannot route it
                conn.send(_dump(wire.frame("trades", [wire.trade(t) for t in recent])))
        elif sub.kind == "activeAssetCtx" and sub.coin is not None:
            ctx = wire.active_asset_ctx(sub.coin, market.ctx(sub.coin))
            conn.send(_dump(wire.frame("activeAssetCtx", ctx)))
        elif sub.kind == "userFills" and sub.user is not None:
            wallet = world.accounts.wallet(sub.user)
            cap = self._config.snapshot_fills
            fills = [] if wallet is None else wallet.fills()[-cap:]
            snapshot = {
                "isSnapshot": True,
                "user": sub.user,
                "fills": [wire.fill(f) for f in fills],
            }
            conn.send(_dump(wire.frame("userFills", snapshot)))
        elif sub.kind == "clearinghouseState" and sub.user is not None:
            self._push_state(conn, sub.user, {}, force=True)
        # orderUpdates and userEvents have no snapshot on Hyperliquid.

    # -- clock and fan-out ---------------------------------------------------
    async def _run_clock(self) -> None:
        cfg = self._config
        loop = asyncio.get_running_loop()
        next_book = loop.time() + cfg.book_interval
        next_ctx = loop.time() + cfg.ctx_interval
        pause = min(cfg.tick, cfg.book_interval, cfg.ctx_interval)
        while True:
            try:
                now = loop.time()
                result = self.world.step(self._model_now_ms())
                self._push_trades(result.trades)
                self._push_activities(result.activities)
                if now >= next_book:
                    next_book = _next_due(next_book, cfg.book_interval, now)
                    self._push_books()
                if now >= next_ctx:
                    next_ctx = _next_due(next_ctx, cfg.ctx_interval, now)
                    self._push_ctxs()
                self._drop_idle(now)
                self._expire_tracking(now)
                self._forget_budgets(now)
            except Exception:  # one bad tick must not stop the clock
                log.exception("simulator clock tick failed")
            await asyncio.sleep(pause)

    def _subscribers(self, kind: str) -> list[tuple[_Connection, Subscription]]:
        return [(c, s) for c in self._connections.values() for s in c.subs_of(kind)]

    def _push_trades(self, trades: Iterable[Trade]) -> None:
        by_coin: dict[str, list[dict[str, Any]]] = {}
        for t in trades:
            by_coin.setdefault(t.coin, []).append(wire.trade(t))
        if not by_coin:
            return
        frames = {coin: _dump(wire.frame("trades", rows)) for coin, rows in by_coin.items()}
        for conn, sub in self._subscribers("trades"):
            if sub.coin in frames:
                conn.push(sub, frames[sub.coin])

    def _push_activities(self, activities: Iterable[WalletActivity]) -> None:
        for act in activities:
            frames: dict[str, str] = {}
            if act.order_updates:
                updates = [wire.order_update(u) for u in act.order_updates]
                frames["orderUpdates"] = _dump(wire.frame("orderUpdates", updates))
            if act.fills:
                fills = [wire.fill(f) for f in act.fills]
                frames["userFills"] = _dump(
                    wire.frame("userFills", {"user": act.user, "fills": fills})
                )
                frames["userEvents"] = _dump(wire.frame("user", {"fills": fills}))
            states: dict[str, tuple[str, str]] = {}
            for conn in list(self._connections.values()):
                for sub in conn.subs.values():
                    if sub.user != act.user:
                        continue
                    if sub.kind in frames:
                        conn.push(sub, frames[sub.kind])
                    elif sub.kind == "clearinghouseState" and act.fills and not conn.withhold(sub):
                        self._push_state(conn, act.user, states)

    def _push_books(self) -> None:
        market = self.world.market
        subs = [(c, s) for c in self._connections.values() for s in c.subs.values()]
        if not subs:
            return
        mids_frame: str | None = None
        books: dict[tuple[str, int | None, int | None], str] = {}
        states: dict[str, tuple[str, str]] = {}
        for conn, sub in subs:
            if sub.kind in ("allMids", "l2Book", "bbo", "clearinghouseState") and conn.withhold(
                sub
            ):
                continue
            if sub.kind == "allMids":
                if mids_frame is None:
                    mids_frame = _dump(wire.frame("allMids", {"mids": wire.mids(market.mids())}))
                conn.send(mids_frame)
            elif sub.kind == "l2Book" and sub.coin is not None:
                key = (sub.coin, sub.n_sig_figs, sub.mantissa)
                if key not in books:
                    book = aggregate_book(market.book(sub.coin), sub.n_sig_figs, sub.mantissa)
                    books[key] = _dump(wire.frame("l2Book", wire.l2_book(book)))
                conn.send(books[key])
            elif sub.kind == "bbo" and sub.coin is not None:
                data = wire.bbo(market.book(sub.coin))
                best = _dump(data["bbo"])
                if conn.bbo_sent.get(sub.key) != best:  # bbo is pushed only on change
                    conn.bbo_sent[sub.key] = best
                    conn.send(_dump(wire.frame("bbo", data)))
            elif sub.kind == "clearinghouseState" and sub.user is not None:
                self._push_state(conn, sub.user, states)

    def _push_ctxs(self) -> None:
        market = self.world.market
        frames: dict[str, str] = {}
        for conn, sub in self._subscribers("activeAssetCtx"):
            coin = sub.coin
            if coin is None:
                continue
            if coin not in frames:
                ctx = wire.active_asset_ctx(coin, market.ctx(coin))
                frames[coin] = _dump(wire.frame("activeAssetCtx", ctx))
            conn.push(sub, frames[coin])

    def _push_state(
        self,
        conn: _Connection,
        user: str,
        cache: dict[str, tuple[str, str]],
        *,
        force: bool = False,
    ) -> None:
        """Send ``user``'s clearinghouseState to ``conn`` if it changed since the last one."""
        if user not in cache:
            world = self.world
            view = world.accounts.account_view(user, world.now_ms)
            # The fingerprint ignores "time": a new timestamp alone is not a change.
            fingerprint = _dump(wire.clearinghouse_state(dataclasses.replace(view, time=0)))
            cache[user] = (
                fingerprint,
                _dump(wire.frame("clearinghouseState", wire.ws_clearinghouse_state(user, view))),
            )
        fingerprint, text = cache[user]
        if force or conn.state_sent.get(user) != fingerprint:
            conn.state_sent[user] = fingerprint
            conn.send(text)

    def _drop_idle(self, now: float) -> None:
        limit = self._config.idle_timeout
        for conn in list(self._connections.values()):
            if now - conn.last_sent > limit:
                log.info("dropping connection %d: nothing sent for %.0f s", conn.id, limit)
                self._counters.dropped_idle += 1
                self._cut(conn)


def _next_due(due: float, interval: float, now: float) -> float:
    """Keep a fixed cadence, but skip missed beats instead of bursting."""
    due += interval
    return due if due > now else now + interval


async def run_simulator(host: str, port: int, config: SimConfig) -> None:
    """Serve until cancelled (``hlgateway simulate``); announces the URLs it listens on."""
    sim = Simulator(config)
    await sim.start(host, port)
    log.info("Hyperliquid simulator listening on %s (ws: %s)", sim.http_url, sim.ws_url)
    print(f"Hyperliquid simulator listening on {sim.http_url} (ws: {sim.ws_url})", flush=True)
    if config.control:
        print(f"control API: {sim.http_url}/control/ (links, drop, stall, ...)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()

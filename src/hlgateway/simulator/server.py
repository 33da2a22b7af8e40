"""aiohttp server speaking Hyperliquid's ``/ws`` and ``/info`` protocol.

One clock task advances the model in real time and fans data out; each
connection owns a reader (the request handler) and a writer task draining its
outbound queue, so a slow client never stalls the clock or other clients and
is dropped once its backlog grows past ``max_pending_frames``. All per-
connection state dies with the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from hlgateway.simulator import wire
from hlgateway.simulator.accounts import WalletActivity
from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.info import InfoError, handle_info
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
MAX_SNAPSHOT_FILLS = 2_000
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


class _Connection:
    """One client link: its subscriptions, outbound queue and rate-limit window."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        max_pending: int,
        now: float,
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.transport = transport
        self.subs: dict[str, Subscription] = {}
        self.last_sent = now
        self.received: deque[float] = deque()
        self.bbo_sent: dict[str, str] = {}  # sub key -> last best levels sent
        self.state_sent: dict[str, str] = {}  # user -> last clearinghouseState sent
        self.wake = asyncio.Event()
        self.overflowed = False
        self._out: deque[str] = deque()
        self._max_pending = max_pending

    def send(self, text: str) -> None:
        if self.overflowed:
            return
        if len(self._out) >= self._max_pending:
            # Too far behind to ever catch up: drop the client like a real server would.
            self.overflowed = True
            self._out.clear()
        else:
            self._out.append(text)
        self.wake.set()

    def pop_pending(self) -> str | None:
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
        self._clock: asyncio.Task[None] | None = None
        self._connections: dict[int, _Connection] = {}
        self._next_conn_id = 1
        self._user_refs: dict[str, int] = {}
        self._host = ""
        self._port = 0
        self._epoch_ms = 0
        self._t0 = 0.0

    # -- lifecycle -----------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        cfg = self._config
        loop = asyncio.get_running_loop()
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
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
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
        return f"http://{self._authority()}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._authority()}/ws"

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

    def drop_connections(self) -> int:
        """Abruptly cut every client link (no close frame), like a server-side drop."""
        conns = list(self._connections.values())
        for conn in conns:
            conn.abort()
        return len(conns)

    def _authority(self) -> str:
        if self._runner is None:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def _model_now_ms(self) -> int:
        return self._epoch_ms + int((asyncio.get_running_loop().time() - self._t0) * 1000)

    # -- REST ----------------------------------------------------------------
    async def _info_handler(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = _decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return web.Response(status=400, text="Failed to parse the request body as JSON")
        try:
            result = handle_info(self.world, body)
        except InfoError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except Exception:
            log.exception("info request failed: %.200r", raw)
            return web.Response(status=500, text="internal error")
        return web.Response(body=_encode(result), content_type="application/json")

    # -- WebSocket -----------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT, max_msg_size=1 << 20)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        conn = _Connection(
            self._next_conn_id, ws, request.transport, self._config.max_pending_frames, loop.time()
        )
        self._next_conn_id += 1
        self._connections[conn.id] = conn
        writer = asyncio.create_task(self._write_loop(conn), name=f"hl-simulator-writer-{conn.id}")
        try:
            async for msg in ws:
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
        loop = asyncio.get_running_loop()
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while (text := conn.pop_pending()) is not None:
                    await conn.ws.send_str(text)
                    conn.last_sent = loop.time()
                if conn.overflowed:
                    log.warning("dropping connection %d: outbound backlog too large", conn.id)
                    await conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow client")
                    conn.abort()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the link is dead; the reader will notice and clean up
            log.debug("connection %d write failed: %r", conn.id, exc)
            conn.abort()

    def _detach(self, conn: _Connection) -> None:
        self._connections.pop(conn.id, None)
        for sub in conn.subs.values():
            self._release_user(sub)
        conn.subs.clear()

    def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            if not self._within_rate(conn):
                limit = self._config.max_messages_per_minute
                conn.send(_error(f"Cannot send more than {limit} messages per minute."))
                return
            self._dispatch_request(conn, text)
        except Exception:  # bad input must never take the server down
            log.exception("failed to handle client message %.200r", text)
            conn.send(_error(PARSE_ERROR + text[:MAX_ECHO]))

    def _within_rate(self, conn: _Connection) -> bool:
        now = asyncio.get_running_loop().time()
        window = conn.received
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= self._config.max_messages_per_minute:
            return False
        window.append(now)
        return True

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
        if len(conn.subs) >= cfg.max_subscriptions:
            conn.send(_error(f"Cannot subscribe to more than {cfg.max_subscriptions} channels."))
            return
        users = conn.users()
        if sub.user is not None and sub.user not in users and len(users) >= cfg.max_users:
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
        if sub.kind == "clearinghouseState" and sub.user is not None:
            conn.state_sent.pop(sub.user, None)
        self._release_user(sub)
        conn.send(_ack("unsubscribe", sub))

    def _post(self, conn: _Connection, req_id: int, request: dict[str, Any], bad: str) -> None:
        kind = request.get("type")
        payload = request.get("payload")
        if kind == "info" and isinstance(payload, dict):
            try:
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

    def _retain_user(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0)
        self._user_refs[sub.user] = count + 1
        if count == 0:
            self.world.accounts.track(sub.user, self.world.now_ms)

    def _release_user(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0) - 1
        if count > 0:
            self._user_refs[sub.user] = count
            return
        self._user_refs.pop(sub.user, None)
        self.world.accounts.untrack(sub.user)

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
            fills = [] if wallet is None else wallet.fills()[-MAX_SNAPSHOT_FILLS:]
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
                conn.send(frames[sub.coin])

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
                        conn.send(frames[sub.kind])
                    elif sub.kind == "clearinghouseState" and act.fills:
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
            conn.send(frames[coin])

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
                conn.abort()


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
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()

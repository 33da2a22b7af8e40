"""The simulator's ``/ws``: Hyperliquid's WebSocket protocol, per link.

Each link owns a reader (the request handler) and a writer task draining its
outbound queue (``Connection``). Upgrades are refused as Hyperliquid would
(per-IP connection count and rate, 503 while refusing or restarting); then
each client message is rate limited per IP and answered: ping, subscribe and
unsubscribe (with the per-IP subscription and user limits), and ``post``
requests (info, and signed actions for ``exchange.py``). A subscribe's ack and
its snapshot are queued without yielding, so no pushed update overtakes them.
Bad input gets Hyperliquid's error text and never takes the simulator down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from hlgateway.simulator import wire
from hlgateway.simulator.connection import CLOSE_TIMEOUT, Connection
from hlgateway.simulator.fanout import all_mids_frame, asset_ctx_frame, push_result, push_state
from hlgateway.simulator.info import InfoError, handle_info
from hlgateway.simulator.limits import ClientBudget
from hlgateway.simulator.market import aggregate_book
from hlgateway.simulator.state import SimState
from hlgateway.simulator.subscriptions import (
    MAX_ECHO,
    Subscription,
    SubscriptionError,
    parse_subscription,
)

log = logging.getLogger("hlgateway.simulator")

PARSE_ERROR = "Error parsing JSON into valid websocket request: "
_decode = msgspec.json.Decoder().decode
_PONG = '{"channel":"pong"}'


def _ack(method: str, sub: Subscription) -> str:
    return wire.dump(
        wire.frame("subscriptionResponse", {"method": method, "subscription": sub.normalized()})
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class WebSocketSide:
    def __init__(self, state: SimState) -> None:
        self._state = state

    def _admit(self, budget: ClientBudget, now: float) -> web.Response | None:
        """Refuse an upgrade before it happens, or record it; None = admitted."""
        cfg = self._state.config
        c = self._state.counters
        if now < self._state.refuse_until:
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            await ws.prepare(request)  # raises aiohttp's 400 for a non-upgrade request
        budget = self._state.budget(request.remote or "unknown")
        refusal = self._admit(budget, self._state.now())
        if refusal is not None:
            return refusal
        conn_id = self._state.next_conn_id
        self._state.next_conn_id += 1
        budget.links.add(conn_id)  # reserved now: concurrent handshakes count too
        generation = self._state.generation
        try:
            await ws.prepare(request)
        except BaseException:
            budget.links.discard(conn_id)
            raise
        conn = Connection(
            conn_id,
            ws,
            request.transport,
            budget,
            self._state.config.max_pending_frames,
            self._state.now,
            self._state.counters,
        )
        self._state.connections[conn.id] = conn
        self._state.counters.accepted += 1
        if generation != self._state.generation:  # a restart happened during the handshake
            self._state.cut(conn)
        writer = asyncio.create_task(self._write_loop(conn), name=f"hl-simulator-writer-{conn.id}")
        try:
            async for msg in ws:
                if conn.detached:
                    break
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.send(wire.error_text(PARSE_ERROR + "binary frame"))
                else:
                    break
        finally:
            self._state.detach(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _write_loop(self, conn: Connection) -> None:
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while (frame := conn.pop_pending()) is not None:
                    if isinstance(frame, bytes):
                        await conn.ws.send_bytes(frame)
                    else:
                        await conn.ws.send_str(frame)
                    conn.last_sent = self._state.now()
                if conn.overflowed:
                    log.warning("dropping connection %d: outbound backlog too large", conn.id)
                    self._state.counters.dropped_slow_client += 1
                    await conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow client")
                    conn.abort()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the link is dead; the reader will notice and clean up
            log.debug("connection %d write failed: %r", conn.id, exc)
            conn.abort()

    def _on_text(self, conn: Connection, text: str) -> None:
        try:
            if not conn.budget.messages.try_take(self._state.now()):
                self._state.counters.limit_messages += 1
                limit = self._state.config.max_messages_per_minute
                conn.send(wire.error_text(f"Cannot send more than {limit} messages per minute."))
                return
            self._dispatch_request(conn, text)
        except Exception:  # bad input must never take the server down
            log.exception("failed to handle client message %.200r", text)
            conn.send(wire.error_text(PARSE_ERROR + text[:MAX_ECHO]))

    def _dispatch_request(self, conn: Connection, text: str) -> None:
        parse_error = wire.error_text(PARSE_ERROR + text[:MAX_ECHO])
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

    def _parse(self, conn: Connection, raw: Any) -> Subscription | None:
        world = self._state.world
        try:
            return parse_subscription(
                raw,
                lambda coin: world.market.spec(coin) is not None,
                lambda dex: dex == "" or world.listing.dex(dex) is not None,
            )
        except SubscriptionError as exc:
            conn.send(wire.error_text(str(exc)))
            return None

    def _subscribe(self, conn: Connection, raw: Any) -> None:
        sub = self._parse(conn, raw)
        if sub is None:
            return
        cfg = self._state.config
        if sub.key in conn.subs:
            conn.send(wire.error_text(f"Already subscribed: {sub.key}"))
            return
        # The limits are per IP: count across every open link of this client.
        siblings = self._state.siblings(conn)
        if sum(len(c.subs) for c in siblings) >= cfg.max_subscriptions:
            self._state.counters.limit_subscriptions += 1
            conn.send(
                wire.error_text(f"Cannot subscribe to more than {cfg.max_subscriptions} channels.")
            )
            return
        users = set().union(*(c.users() for c in siblings))
        if sub.user is not None and sub.user not in users and len(users) >= cfg.max_users:
            self._state.counters.limit_users += 1
            conn.send(wire.error_text(f"Cannot track more than {cfg.max_users} total users."))
            return
        # Registering, acking and sending the initial data happen without yielding to
        # the loop, so no pushed update can overtake the ack or the snapshot.
        conn.subs[sub.key] = sub
        self._state.tracking.retain(sub)
        conn.send(_ack("subscribe", sub))
        self._send_initial(conn, sub)

    def _unsubscribe(self, conn: Connection, raw: Any) -> None:
        sub = self._parse(conn, raw)
        if sub is None:
            return
        if conn.subs.pop(sub.key, None) is None:
            conn.send(wire.error_text(f"Already unsubscribed: {sub.key}"))
            return
        conn.bbo_sent.pop(sub.key, None)
        conn.stalls.pop(sub.key, None)
        if sub.kind == "clearinghouseState" and sub.user is not None:
            conn.state_sent.pop((sub.user, sub.dex), None)
        self._state.tracking.release(sub)
        conn.send(_ack("unsubscribe", sub))

    def _post(self, conn: Connection, req_id: int, request: dict[str, Any], bad: str) -> None:
        kind = request.get("type")
        payload = request.get("payload")
        if kind == "info" and isinstance(payload, dict):
            try:
                self._state.tracking.watch_query(payload)
                data = handle_info(self._state.world, payload)
                response: dict[str, Any] = {
                    "type": "info",
                    "payload": {"type": payload["type"], "data": data},
                }
            except InfoError as exc:
                response = {"type": "error", "payload": exc.message}
        elif kind == "action" and isinstance(payload, dict):
            state = self._state
            result = state.world.exchange.handle(payload, state.action_now_ms())
            state.counters.count_action(result.status, result.body)
            if result.status == 200:
                response = {"type": "action", "payload": result.body}
            else:
                response = {"type": "error", "payload": str(result.body)}
            # The answer first, then what the action changed (as Hyperliquid's order).
            conn.send(wire.dump(wire.frame("post", {"id": req_id, "response": response})))
            push_result(state, result)
            return
        else:
            conn.send(bad)
            return
        conn.send(wire.dump(wire.frame("post", {"id": req_id, "response": response})))

    def _send_initial(self, conn: Connection, sub: Subscription) -> None:
        world = self._state.world
        market = world.market
        cap = self._state.config.snapshot_fills
        if sub.kind == "allMids":
            conn.send(all_mids_frame(world, sub.dex))
        elif sub.kind == "l2Book" and sub.coin is not None:
            book = aggregate_book(world.book(sub.coin), sub.n_sig_figs, sub.mantissa)
            conn.send(wire.dump(wire.frame("l2Book", wire.l2_book(book))))
        elif sub.kind == "bbo" and sub.coin is not None:
            data = wire.bbo(world.book(sub.coin))
            conn.bbo_sent[sub.key] = wire.dump(data["bbo"])
            conn.send(wire.dump(wire.frame("bbo", data)))
        elif sub.kind == "trades" and sub.coin is not None:
            recent = market.recent_trades(sub.coin, self._state.config.trades_replay)
            if recent:  # an empty list would carry no coin; clients cannot route it
                conn.send(wire.dump(wire.frame("trades", [wire.trade(t) for t in recent])))
        elif sub.kind == "activeAssetCtx" and sub.coin is not None:
            conn.send(asset_ctx_frame(world, sub.coin))
        elif sub.kind == "candle" and sub.coin is not None and sub.interval is not None:
            current = world.candles.current(sub.coin, sub.interval)
            if current is not None:
                conn.send(wire.dump(wire.frame("candle", wire.candle(current))))
        elif sub.kind == "userFills" and sub.user is not None:
            wallet = world.accounts.wallet(sub.user)
            fills = [] if wallet is None else wallet.fills()[-cap:]
            snapshot = {
                "isSnapshot": True,
                "user": sub.user,
                "fills": [wire.fill(f) for f in fills],
            }
            conn.send(wire.dump(wire.frame("userFills", snapshot)))
        elif sub.kind == "userFundings" and sub.user is not None:
            wallet = world.accounts.wallet(sub.user)
            fundings = [] if wallet is None else wallet.fundings()[-cap:]
            data = {
                "isSnapshot": True,
                "user": sub.user,
                "fundings": [wire.ws_funding(p) for p in fundings],
            }
            conn.send(wire.dump(wire.frame("userFundings", data)))
        elif sub.kind == "userNonFundingLedgerUpdates" and sub.user is not None:
            wallet = world.accounts.wallet(sub.user)
            updates = [] if wallet is None else wallet.ledger_updates()[-cap:]
            data = {
                "isSnapshot": True,
                "user": sub.user,
                "nonFundingLedgerUpdates": [wire.ledger_update(u) for u in updates],
            }
            conn.send(wire.dump(wire.frame("userNonFundingLedgerUpdates", data)))
        elif sub.kind == "userTwapSliceFills" and sub.user is not None:
            wallet = world.accounts.wallet(sub.user)
            slices = [] if wallet is None else wallet.twap_fills[-cap:]
            data = {
                "isSnapshot": True,
                "user": sub.user,
                "twapSliceFills": [wire.twap_slice_fill(f) for f in slices],
            }
            conn.send(wire.dump(wire.frame("userTwapSliceFills", data)))
        elif sub.kind == "userTwapHistory" and sub.user is not None:
            history = [wire.twap_history(t) for t in world.matcher.twaps_of(sub.user)]
            data = {"isSnapshot": True, "user": sub.user, "history": history}
            conn.send(wire.dump(wire.frame("userTwapHistory", data)))
        elif sub.kind == "clearinghouseState" and sub.user is not None:
            push_state(self._state.world, conn, sub.user, sub.dex, {}, force=True)
        # orderUpdates and userEvents have no snapshot on Hyperliquid.

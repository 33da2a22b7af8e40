"""One client connection's protocol state, sans I/O.

The edge (server/connection.py) feeds it text frames; replies go to the same
`Subscriber` that receives data, so a `subscribed` reply always precedes the
data of its topic. It returns a `Close` when the connection must end.

Abuse limits live here too, as decisions on plain objects: a token bucket
meters the client's messages (over it: a `RATE_LIMITED` error and nothing
done), the error window closes a client that keeps being refused (1008), and
subscriptions and rooms are capped per connection. A refused request never
changes any state.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from hlgateway.auth import Principal, TokenError, TokenVerifier
from hlgateway.hub import Hub, Subscriber
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import ROOM, USER_CHANNELS, Catalog, Topic, room_topic
from hlgateway.protocol.errors import CloseCode, ErrorCode, ProtocolError
from hlgateway.protocol.messages import (
    Auth,
    ClientMessage,
    DecodeFailure,
    JoinRoom,
    LeaveRoom,
    Ping,
    RequestId,
    Subscribe,
    Unsubscribe,
    decode,
)
from hlgateway.ratelimit import TokenBucket
from hlgateway.websocket.frames import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_subscriptions: int = 100
    max_rooms: int = 20
    error_limit: int = 10
    error_window: float = 60.0
    message_rate: float = 20.0  # client messages per second (0: unlimited) ...
    message_burst: int = 100  # ... with bursts of up to this many


TOO_MANY_ERRORS = "Too many errors"
RATE_LIMIT_EXCEEDED = "Rate limit exceeded"


class Session:
    __slots__ = (
        "_bucket",
        "_catalog",
        "_clock",
        "_errors",
        "_hub",
        "_limits",
        "_out",
        "_verifier",
        "client_id",
        "closed",
        "principal",
        "stats",
        "verdict",
    )

    def __init__(
        self,
        client_id: str,
        principal: Principal,
        *,
        catalog: Catalog,
        hub: Hub,
        out: Subscriber,
        verifier: TokenVerifier,
        limits: SessionLimits = SessionLimits(),
        clock: Callable[[], float] = time.monotonic,
        stats: Counter[str] | None = None,
    ) -> None:
        self.client_id = client_id
        self.principal = principal
        self._catalog = catalog
        self._hub = hub
        self._out = out
        self._verifier = verifier
        self._limits = limits
        self._clock = clock
        self._errors: deque[float] | None = None  # made on the first error; most make none
        self._bucket = TokenBucket(limits.message_rate, limits.message_burst, clock)
        # Shared by every session of the process: refusal counts for /health.
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.closed = False
        self.verdict: Close | None = None  # once set, the session ignores further input

    @property
    def expires_at(self) -> int | None:
        """Unix ms at which the current token runs out (None: never)."""
        return self.principal.expires_at

    def welcome(self) -> None:
        user = {"id": self.principal.user_id, "username": self.principal.username}
        self._send(encoding.message("welcome", clientId=self.client_id, user=user))

    def handle(self, raw: str | bytes) -> Close | None:
        """Process one client frame. Never raises for bad input."""
        if self.closed or self.verdict is not None:
            return None
        try:
            msg = decode(raw)
        except DecodeFailure as exc:
            if not self._bucket.take():
                return self._rate_limited(exc.request_id, exc.channel)
            return self._fail(exc.code, exc.message, exc.request_id, exc.channel)
        if not self._bucket.take():
            channel = msg.channel if isinstance(msg, Subscribe | Unsubscribe) else None
            return self._rate_limited(msg.id, channel)
        try:
            self._dispatch(msg)
        except ProtocolError as exc:
            channel = msg.channel if isinstance(msg, Subscribe | Unsubscribe) else None
            params = msg.params if isinstance(msg, Subscribe | Unsubscribe) else None
            return self._fail(exc.code, exc.message, msg.id, channel, params)
        return None

    def reject(self, code: ErrorCode, text: str) -> Close | None:
        """A frame the edge refused before decoding (a binary frame, say)."""
        if self.closed or self.verdict is not None:
            return None
        if not self._bucket.take():
            return self._rate_limited(None, None)
        return self._fail(code, text, None)

    def allow_control(self) -> bool:
        """Whether to answer a protocol-level ping: they spend the same budget, silently."""
        return not self.closed and self.verdict is None and self._bucket.take()

    def close(self) -> list[Topic]:
        """Leave every topic; idempotent."""
        if self.closed:
            return []
        self.closed = True
        return self._hub.remove(self._out)

    # -- dispatch ---------------------------------------------------------
    def _dispatch(self, msg: ClientMessage) -> None:
        match msg:
            case Subscribe(channel=channel, params=params, id=rid):
                self._subscribe(channel, params, rid)
            case Unsubscribe(channel=channel, params=params, id=rid):
                self._unsubscribe(channel, params, rid)
            case Ping(id=rid):
                self._reply("pong", rid)
            case JoinRoom(room=room, id=rid):
                self._join(room, rid)
            case LeaveRoom(room=room, id=rid):
                self._leave(room, rid)
            case Auth(token=token, id=rid):
                self._auth(token, rid)

    def _subscribe(self, channel: str, params: dict[str, object] | None, rid: RequestId) -> None:
        topic = self._catalog.resolve(channel, params, self.principal)
        mine = [t for t in self._hub.topics_of(self._out) if t.channel != ROOM]
        if topic not in mine and len(mine) >= self._limits.max_subscriptions:
            self.stats["tooManySubscriptions"] += 1
            raise ProtocolError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"At most {self._limits.max_subscriptions} subscriptions per connection",
            )
        self._hub.subscribe(topic, self._out)
        self._reply("subscribed", rid, channel=topic.channel, params=topic.params)
        latest = self._hub.latest(topic)
        if latest is not None:
            self._out.deliver(latest)

    def _unsubscribe(self, channel: str, params: dict[str, object] | None, rid: RequestId) -> None:
        wanted = self._catalog.resolve(channel, params, self.principal)
        # Match on what the client sees (channel + canonical params): the wallets a
        # topic reads were fixed by the token it was subscribed with.
        for topic in self._hub.topics_of(self._out):
            if topic.channel == wanted.channel and topic.params_json == wanted.params_json:
                self._hub.unsubscribe(topic, self._out)
                self._reply("unsubscribed", rid, channel=topic.channel, params=topic.params)
                return
        raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"Not subscribed to {channel}")

    def _join(self, room: str, rid: RequestId) -> None:
        topic = room_topic(room)
        rooms = [t for t in self._hub.topics_of(self._out) if t.channel == ROOM]
        if topic not in rooms and len(rooms) >= self._limits.max_rooms:
            self.stats["tooManyRooms"] += 1
            raise ProtocolError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"At most {self._limits.max_rooms} rooms"
            )
        self._hub.subscribe(topic, self._out)
        self._reply("room_joined", rid, room=room)

    def _leave(self, room: str, rid: RequestId) -> None:
        if not self._hub.unsubscribe(room_topic(room), self._out):
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"Not in room {room[:64]!r}")
        self._reply("room_left", rid, room=room)

    def _auth(self, token: str, rid: RequestId) -> None:
        # The reply names why, never the token itself.
        try:
            principal = self._verifier.verify(token)
        except TokenError as exc:
            self.stats["authRefused"] += 1
            raise ProtocolError(ErrorCode.FORBIDDEN, exc.reason) from None
        if principal.user_id != self.principal.user_id:
            # Switching identity would keep the old user's subscriptions readable.
            self.stats["authRefused"] += 1
            raise ProtocolError(ErrorCode.FORBIDDEN, "Token is for another user")
        self.principal = principal
        self._reply("authenticated", rid, expiresAt=principal.expires_at)
        self._revoke_unreadable()

    def _revoke_unreadable(self) -> None:
        """After a refresh, drop user-channel subscriptions the new token no longer grants.

        A refreshed token may hold fewer wallets or lose the admin role; what was
        subscribed under the old one must not keep flowing. Each dropped
        subscription gets a FORBIDDEN error naming it (not counted as a client error).
        """
        principal = self.principal
        for topic in self._hub.topics_of(self._out):
            if topic.channel not in USER_CHANNELS or principal.is_admin:
                continue
            own = str(topic.params.get("userId")) == principal.user_id
            if own and all(principal.owns_wallet(w) for w in topic.wallets):
                continue
            self._hub.unsubscribe(topic, self._out)
            self.stats["revoked"] += 1
            self._send(
                encoding.error(
                    ErrorCode.FORBIDDEN,
                    f"Access to {topic.channel} revoked by the new token",
                    None,
                    topic.channel,
                    topic.params,
                )
            )

    # -- replies ----------------------------------------------------------
    def _send(self, payload: bytes) -> None:
        self._out.deliver(Frame(payload))

    def _reply(self, kind: str, rid: RequestId, **fields: object) -> None:
        self._send(encoding.message(kind, rid, **fields))

    def _fail(
        self,
        code: ErrorCode,
        text: str,
        rid: RequestId,
        channel: str | None = None,
        params: object = None,
    ) -> Close | None:
        self._send(encoding.error(code, text, rid, channel, params))
        now = self._clock()
        window = self._errors
        if window is None:
            window = self._errors = deque()
        window.append(now)
        while window and now - window[0] > self._limits.error_window:
            window.popleft()
        if len(window) > self._limits.error_limit:
            if code is ErrorCode.RATE_LIMITED:
                log.info("closing client %s: rate limit exceeded", self.client_id)
                self.stats["closedRateLimited"] += 1
                self.verdict = Close(CloseCode.POLICY, RATE_LIMIT_EXCEEDED)
            else:
                log.info("closing client %s: too many errors", self.client_id)
                self.stats["closedTooManyErrors"] += 1
                self.verdict = Close(CloseCode.POLICY, TOO_MANY_ERRORS)
            return self.verdict
        return None

    def _rate_limited(self, rid: RequestId, channel: str | None) -> Close | None:
        """Over the message budget: the request is not looked at, only refused."""
        self.stats["rateLimited"] += 1
        wait = self._bucket.retry_after()
        return self._fail(
            ErrorCode.RATE_LIMITED, f"Too many messages; retry in {wait:.1f} s", rid, channel
        )

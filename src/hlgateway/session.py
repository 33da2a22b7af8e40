"""One client connection's protocol state, sans I/O.

The edge (server/connection.py) feeds it text frames; replies go to the same
`Subscriber` that receives data, so a `subscribed` reply always precedes the
data of its topic. It returns a `Close` when the connection must end.

Abuse limits live here too, as decisions on plain objects: a token bucket
meters the client's messages (over it: a `RATE_LIMITED` error and nothing
done), the error window closes a client that keeps being refused (1008), and
subscriptions and rooms are capped per connection. A refused request never
changes any state.

Joining a topic takes what the broker keeps (the latest snapshot, or the
history after `since`) and attaches the subscriber in the same step, so the
replay and live data meet with no gap and no duplicate. Usually that step is
synchronous; when it must wait (the market list is not loaded yet, or the
broker reads a remote store) the session runs it in a task and holds the
client's later messages until it is done, so requests keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hlgateway.auth import Principal, TokenError, TokenVerifier
from hlgateway.broker import Broker, MemoryBroker, Replay
from hlgateway.hub import Hub, Subscriber
from hlgateway.protocol import encoding
from hlgateway.protocol.channels import (
    ROOM,
    USER_CHANNELS,
    Catalog,
    MarketsNotLoaded,
    Topic,
    room_topic,
)
from hlgateway.protocol.errors import CloseCode, ErrorCode, ProtocolError
from hlgateway.protocol.messages import (
    Auth,
    ClientMessage,
    DecodeFailure,
    JoinRoom,
    LeaveRoom,
    Ping,
    Post,
    RequestId,
    Subscribe,
    Unsubscribe,
    decode,
)
from hlgateway.ratelimit import TokenBucket
from hlgateway.trading.policy import refusal_counts
from hlgateway.websocket.frames import DEFAULT_THRESHOLD, Frame

if TYPE_CHECKING:
    from hlgateway.trading.relay import PostRelay

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
    market_wait: float = 10.0  # how long a subscribe waits for the market list (s)
    max_held: int = 100  # client messages held while a subscribe waits


TOO_MANY_ERRORS = "Too many errors"
RATE_LIMIT_EXCEEDED = "Rate limit exceeded"


class Session:
    __slots__ = (
        "_broker",
        "_bucket",
        "_catalog",
        "_clock",
        "_errors",
        "_held",
        "_hub",
        "_limits",
        "_on_verdict",
        "_out",
        "_relay",
        "_threshold",
        "_urgent",
        "_verifier",
        "_waiting",
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
        broker: Broker | None = None,
        compression_threshold: int = DEFAULT_THRESHOLD,
        on_verdict: Callable[[Close], None] | None = None,
        relay: PostRelay | None = None,
        urgent: Callable[[Frame], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._relay = relay  # order entry (`post`); None: not offered
        # Writes a frame now, ahead of the data queued for this client: a post's answer
        # waits neither for the loop turn's flush nor behind market data.
        self._urgent = urgent
        self.principal = principal
        self._catalog = catalog
        self._hub = hub
        # Without a broker (unit tests), an unbound memory engine: reads only.
        self._broker = broker if broker is not None else MemoryBroker()
        self._threshold = compression_threshold
        # A verdict reached after waiting (not as handle()'s return value).
        self._on_verdict = on_verdict
        self._waiting: asyncio.Task[None] | None = None
        self._held: deque[str | bytes] | None = None
        catalog.directory.learn(principal)
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

    def welcome(self, info_url: str | None = None) -> None:
        """The first message. `info_url`: the exchange's info API this gateway reads, for
        clients that reload what a stream could not replay (the notifier does)."""
        user = {"id": self.principal.user_id, "username": self.principal.username}
        extra = {"infoUrl": info_url} if info_url else {}
        self._send(encoding.message("welcome", clientId=self.client_id, user=user, **extra))

    def handle(self, raw: str | bytes) -> Close | None:
        """Process one client frame. Never raises for bad input."""
        if self.closed or self.verdict is not None:
            return None
        if self._waiting is not None:
            return self._hold(raw)
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
            if isinstance(msg, Post) and not refusal_counts(exc.code):
                self.stats["postsRateLimited"] += 1
                self._send(encoding.error(exc.code, exc.message, msg.id))
                return None
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
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        self._held = None
        return self._hub.remove(self._out)

    @property
    def waiting(self) -> bool:
        """A subscribe is waiting (for the market list, or the broker)."""
        return self._waiting is not None

    async def settled(self) -> None:
        """Until no subscribe waits any more (held messages included)."""
        while self._waiting is not None:
            await asyncio.wait({self._waiting})

    # -- dispatch ---------------------------------------------------------
    def _dispatch(self, msg: ClientMessage) -> None:
        match msg:
            case Subscribe():
                self._subscribe(msg)
            case Unsubscribe(channel=channel, params=params, id=rid):
                self._unsubscribe(channel, params, rid)
            case Ping(id=rid):
                self._reply("pong", rid)
            case JoinRoom():
                self._join(msg)
            case LeaveRoom(room=room, id=rid):
                self._leave(room, rid)
            case Auth(token=token, id=rid):
                self._auth(token, rid)
            case Post():
                self._post(msg)

    def _subscribe(self, msg: Subscribe) -> None:
        try:
            topic = self._catalog.resolve(msg.channel, msg.params, self.principal)
        except MarketsNotLoaded:
            if self._limits.market_wait <= 0:
                raise
            self.stats["heldForMarkets"] += 1
            self._wait(lambda: self._subscribe_when_loaded(msg), msg)
            return
        self._check_subscription_limit(topic)
        self._join_topic(topic, msg)

    async def _subscribe_when_loaded(self, msg: Subscribe) -> None:
        await self._catalog.markets.wait_loaded(self._limits.market_wait)
        # Resolves again: raises the transient error if the list is still missing.
        topic = self._catalog.resolve(msg.channel, msg.params, self.principal)
        self._check_subscription_limit(topic)
        await self._join_topic_async(topic, msg)

    def _check_subscription_limit(self, topic: Topic) -> None:
        mine = [t for t in self._hub.topics_of(self._out) if t.channel != ROOM]
        if topic not in mine and len(mine) >= self._limits.max_subscriptions:
            self.stats["tooManySubscriptions"] += 1
            raise ProtocolError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"At most {self._limits.max_subscriptions} subscriptions per connection",
            )

    # -- joining a topic: replay, then live ---------------------------------
    def _join_topic(self, topic: Topic, msg: Subscribe | JoinRoom) -> None:
        replay = self._broker.read_now(topic, msg.since)
        if replay is None:
            self._wait(lambda: self._join_topic_async(topic, msg), msg)
            return
        self._attach(topic, replay, msg)

    async def _join_topic_async(self, topic: Topic, msg: Subscribe | JoinRoom) -> None:
        replay = await self._broker.read(topic, msg.since)
        # No await from here on: attached in the turn the replay was taken (broker contract).
        self._attach(topic, replay, msg)

    def _attach(self, topic: Topic, replay: Replay, msg: Subscribe | JoinRoom) -> None:
        if self.closed:
            return
        rid, asked = msg.id, msg.since is not None
        self._hub.subscribe(topic, self._out)
        fields: dict[str, object] = {}
        if replay.position is not None:
            fields["offset"] = replay.position.offset
            fields["epoch"] = replay.position.epoch
            if asked:
                fields["recovered"] = replay.recovered
                self.stats["recovered" if replay.recovered else "notRecovered"] += 1
        if topic.channel == ROOM:
            self._reply("room_joined", rid, room=topic.params["room"], **fields)
        else:
            self._reply("subscribed", rid, channel=topic.channel, params=topic.params, **fields)
        if topic.snapshot:
            for publication in replay.publications:
                self._out.deliver(Frame(publication.payload, self._threshold, topic))
        elif replay.publications:
            # Through the same outbox as live data, at the client's pace: live
            # frames queue behind it under the usual bound (4008 if it cannot keep up).
            threshold = self._threshold
            self._out.replay([Frame(p.payload, threshold) for p in replay.publications])

    # -- waiting ------------------------------------------------------------
    def _wait(
        self, work: Callable[[], Coroutine[None, None, None]], msg: Subscribe | JoinRoom
    ) -> None:
        """Run a join that must wait; the client's next messages are held meanwhile."""
        assert self._waiting is None
        self._waiting = asyncio.get_running_loop().create_task(self._waited(work, msg))

    async def _waited(
        self, work: Callable[[], Coroutine[None, None, None]], msg: Subscribe | JoinRoom
    ) -> None:
        try:
            await work()
        except ProtocolError as exc:
            channel, params = (
                (msg.channel, msg.params) if isinstance(msg, Subscribe) else (None, None)
            )
            self._verdict_after_wait(self._fail(exc.code, exc.message, msg.id, channel, params))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("client %s: internal error joining a topic", self.client_id)
            self.stats["internalErrors"] += 1
            self._verdict_after_wait(Close(CloseCode.INTERNAL, "Internal error"))
        self._waiting = None
        self._release_held()

    def _hold(self, raw: str | bytes) -> Close | None:
        held = self._held
        if held is None:
            held = self._held = deque()
        if len(held) >= self._limits.max_held:
            return self._rate_limited(None, None)
        held.append(raw)
        return None

    def _release_held(self) -> None:
        while self._held and self._waiting is None and not self.closed and self.verdict is None:
            verdict = self.handle(self._held.popleft())
            if verdict is not None:
                self._verdict_after_wait(verdict)

    def _verdict_after_wait(self, verdict: Close | None) -> None:
        if verdict is None or self.closed:
            return
        self.verdict = verdict
        if self._on_verdict is not None:
            self._on_verdict(verdict)

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

    def _join(self, msg: JoinRoom) -> None:
        topic = room_topic(msg.room)
        rooms = [t for t in self._hub.topics_of(self._out) if t.channel == ROOM]
        if topic not in rooms and len(rooms) >= self._limits.max_rooms:
            self.stats["tooManyRooms"] += 1
            raise ProtocolError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"At most {self._limits.max_rooms} rooms"
            )
        self._join_topic(topic, msg)

    def _leave(self, room: str, rid: RequestId) -> None:
        if not self._hub.unsubscribe(room_topic(room), self._out):
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"Not in room {room[:64]!r}")
        self._reply("room_left", rid, room=room)

    def _post(self, msg: Post) -> None:
        """Relay a signed `/exchange` body; `post_result` comes when Hyperliquid answers."""
        if msg.id is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A post needs an id")
        if self._relay is None:
            raise ProtocolError(ErrorCode.UPSTREAM_UNAVAILABLE, "Order entry is not available")
        self._relay.submit(self.principal, msg.id, bytes(msg.request), self._post_answer)

    def _post_answer(self, payload: bytes) -> None:
        if self.closed:  # a client that left learns nothing; the log has it
            return
        if self._urgent is not None:
            self._urgent(Frame(payload))
        else:
            self._send(payload)

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
        self._catalog.directory.learn(principal)
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

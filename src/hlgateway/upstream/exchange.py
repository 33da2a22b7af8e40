"""Hyperliquid's `/exchange` for the gateway: signed actions over WebSocket `post`, or REST.

A post goes out on order entry's own upstream link (`Upstream.open_post_link`),
which carries nothing but posts and pings. When that link is not connected, or
Hyperliquid's per-IP message budget has no room beyond what the data links
keep, it goes to REST `/exchange` inside the weight budget, again beyond what
the data side keeps. Neither way waits: with no room anywhere the post is
refused at once (`NoRoom`), never queued behind market data.

The request body goes out byte for byte as the client sent it (a signature
covers the action's field order), and the answer comes back as it is: its
`status` and, untouched, its `response`. Nothing is retried: an action whose
answer is lost (the link drops, no answer in time, REST fails after sending) is
answered `err` saying so, and the client decides. Hyperliquid's nonces make a
blind retry unsafe to reason about; `cloid` lets the client find out what
happened.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import msgspec

from hlgateway.upstream import wire
from hlgateway.upstream.link import Link, LinkState
from hlgateway.upstream.pool import Upstream

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode

UNKNOWN_FATE = (
    "the action may or may not have been executed and was not retried: "
    "look it up by its cloid before sending it again"
)
LINK_LOST = f"The upstream link was lost before Hyperliquid answered; {UNKNOWN_FATE}"
NO_ANSWER = "Hyperliquid did not answer within {:g} s; " + UNKNOWN_FATE
REST_FAILED = "Hyperliquid's REST /exchange failed ({}); " + UNKNOWN_FATE


class NoRoom(Exception):
    """Hyperliquid's per-IP budget has no room for a post now (nothing was sent)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # Hyperliquid's "ok" | "err" (or "err" when its answer was lost)
    response: bytes  # JSON: Hyperliquid's `response` as it came, or a string saying why
    via: str  # ws | rest


def _reason(text: str) -> bytes:
    return _encode(text)


Done = Callable[[Outcome], None]


@dataclass(slots=True)
class _Waiting:
    done: Done
    timer: asyncio.TimerHandle


class ExchangeClient:
    """Sends posts; each one's `done` is called exactly once with its outcome.

    Over the link, `done` runs straight from the frame that answers it (or from the
    link's loss, or the deadline): no task per post, no hop through the event loop
    between Hyperliquid's answer and the client's `post_result`.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        timeout: float = 10.0,
        keep_messages: int = 200,
        keep_weight: float = 300.0,
    ) -> None:
        self._upstream = upstream
        self.timeout = timeout
        self._keep_messages = keep_messages  # of the minute's messages, left to data links
        self._keep_weight = keep_weight  # of the REST weight budget, left to the data side
        self._ids = itertools.count(1)
        self._pending: dict[int, _Waiting] = {}
        self._rest: dict[asyncio.Task[Outcome], Done] = {}
        self.late_answers = 0

    @property
    def in_flight(self) -> int:
        """Posts sent and not answered yet."""
        return len(self._pending) + len(self._rest)

    def link(self) -> Link | None:
        """Order entry's upstream link, opened on first use."""
        return self._upstream.open_post_link(self._on_event, self._on_state)

    def reserve(self, weight: int) -> Link | None:
        """Take room for one post now: the link to send it on, or None for REST.

        Raises NoRoom when neither the link's message budget nor REST's weight
        budget has room; nothing is taken then.
        """
        link = self.link()
        if (
            link is not None
            and link.state is LinkState.CONNECTED
            and self._upstream.messages.try_take(keep=self._keep_messages)
        ):
            return link
        if self._upstream.budget.try_take(weight, keep=self._keep_weight):
            return None
        raise NoRoom("Hyperliquid's per-IP budget for this gateway has no room for a post now")

    def send(self, route: Link | None, body: bytes, done: Done) -> None:
        """Send one signed request the way `reserve` chose; `done` gets its answer, or
        `err` saying why there is none."""
        if route is None:
            task = asyncio.get_running_loop().create_task(self._over_rest(body))
            self._rest[task] = done
            task.add_done_callback(self._rest_done)
            return
        post_id = next(self._ids)
        frame = b'{"method":"post","id":%d,"request":{"type":"action","payload":%b}}' % (
            post_id,
            body,
        )
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, post_id)
        self._pending[post_id] = _Waiting(done, timer)
        if not route.send_text(frame.decode()):
            self._answer(post_id, Outcome("err", _reason(LINK_LOST), "ws"))

    def stop(self, why: str) -> None:
        """Answer every post still in flight with `err` (`why`), and forget them."""
        for post_id in list(self._pending):
            self._answer(post_id, Outcome("err", _reason(why), "ws"))
        for task, done in list(self._rest.items()):
            del self._rest[task]
            task.cancel()
            done(Outcome("err", _reason(why), "rest"))

    def _answer(self, post_id: int, outcome: Outcome) -> bool:
        waiting = self._pending.pop(post_id, None)
        if waiting is None:
            return False
        waiting.timer.cancel()
        waiting.done(outcome)
        return True

    def _expire(self, post_id: int) -> None:
        self._answer(post_id, Outcome("err", _reason(NO_ANSWER.format(self.timeout)), "ws"))

    def _rest_done(self, task: asyncio.Task[Outcome]) -> None:
        done = self._rest.pop(task, None)
        if done is None or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("REST post failed: %r", exc)
            done(Outcome("err", _reason(f"Internal error; {UNKNOWN_FATE}"), "rest"))
        else:
            done(task.result())

    async def _over_rest(self, body: bytes) -> Outcome:
        session = self._upstream.http
        url = self._upstream.endpoint.exchange_url
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                text = await resp.read()
                if resp.status != 200:
                    detail = text[:500].decode(errors="replace")
                    return Outcome("err", _reason(f"HTTP {resp.status}: {detail}"), "rest")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Outcome("err", _reason(REST_FAILED.format(exc.__class__.__name__)), "rest")
        try:
            answer = wire.parse_action_answer(text)
        except wire.WireError:
            unreadable = f"Hyperliquid answered something unreadable: {text[:200]!r}"
            return Outcome("err", _reason(unreadable), "rest")
        return Outcome(answer.status, bytes(answer.response), "rest")

    # -- the link's side -------------------------------------------------------------
    def _on_event(self, link: Link, event: wire.Event) -> None:
        if not isinstance(event, wire.PostAnswer):
            return
        if not self._answer(event.id, _outcome(event)):
            self.late_answers += 1  # its post was already answered err (deadline)
            log.warning("upstream post %d answered after its deadline", event.id)

    def _on_state(self, link: Link, state: LinkState) -> None:
        if state is not LinkState.CONNECTED:
            for post_id in list(self._pending):
                self._answer(post_id, Outcome("err", _reason(LINK_LOST), "ws"))


def _outcome(event: wire.PostAnswer) -> Outcome:
    if event.kind == "action":
        try:
            answer = wire.parse_action_answer(event.payload)
        except wire.WireError:
            return Outcome("err", _reason("Hyperliquid answered something unreadable"), "ws")
        return Outcome(answer.status, bytes(answer.response), "ws")
    # "error": Hyperliquid's text (what HTTP would have answered), a JSON string already.
    return Outcome("err", event.payload, "ws")

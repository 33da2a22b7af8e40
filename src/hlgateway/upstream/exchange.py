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


class ExchangeClient:
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
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self.late_answers = 0

    @property
    def in_flight(self) -> int:
        """Posts sent on the link and not answered yet."""
        return len(self._pending)

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

    async def send(self, route: Link | None, body: bytes) -> Outcome:
        """Send one signed request the way `reserve` chose; its answer, or `err` saying why
        there is none."""
        if route is None:
            return await self._over_rest(body)
        return await self._over_ws(route, body)

    async def _over_ws(self, link: Link, body: bytes) -> Outcome:
        post_id = next(self._ids)
        frame = b'{"method":"post","id":%d,"request":{"type":"action","payload":%b}}' % (
            post_id,
            body,
        )
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[post_id] = answer
        if not link.send_text(frame.decode()):
            del self._pending[post_id]
            return Outcome("err", _reason(LINK_LOST), "ws")
        try:
            return await asyncio.wait_for(answer, self.timeout)
        except TimeoutError:
            return Outcome("err", _reason(NO_ANSWER.format(self.timeout)), "ws")
        finally:
            self._pending.pop(post_id, None)

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
            return Outcome(
                "err", _reason(f"Hyperliquid answered something unreadable: {text[:200]!r}"), "rest"
            )
        return Outcome(answer.status, bytes(answer.response), "rest")

    # -- the link's side -------------------------------------------------------------
    def _on_event(self, link: Link, event: wire.Event) -> None:
        if not isinstance(event, wire.PostAnswer):
            return
        answer = self._pending.pop(event.id, None)
        if answer is None or answer.done():
            self.late_answers += 1  # its post was already answered err (timeout)
            log.warning("upstream post %d answered after its deadline", event.id)
            return
        answer.set_result(_outcome(event))

    def _on_state(self, link: Link, state: LinkState) -> None:
        if state is LinkState.CONNECTED or not self._pending:
            return
        lost = list(self._pending.values())
        self._pending.clear()
        for answer in lost:
            if not answer.done():
                answer.set_result(Outcome("err", _reason(LINK_LOST), "ws"))


def _outcome(event: wire.PostAnswer) -> Outcome:
    if event.kind == "action":
        try:
            answer = wire.parse_action_answer(event.payload)
        except wire.WireError:
            return Outcome("err", _reason("Hyperliquid answered something unreadable"), "ws")
        return Outcome(answer.status, bytes(answer.response), "ws")
    # "error": Hyperliquid's text (what HTTP would have answered), a JSON string already.
    return Outcome("err", event.payload, "ws")

"""The relay: admitted posts go to Hyperliquid, answers come back as `post_result`.

`submit` decides at once (permission, allowed action, limits, Hyperliquid's
budget) and raises the refusal for the session to answer; an admitted post is
sent in a task of its own, so a client's later messages (and its other posts)
never wait for an answer. Each post is logged once when it ends: user, action,
nonce, status, route, time; never the signature or the body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import msgspec

from hlgateway.auth import Principal
from hlgateway.protocol import encoding
from hlgateway.protocol.errors import ProtocolError
from hlgateway.protocol.messages import RequestId
from hlgateway.trading.policy import PostPolicy, RateLimited, Ticket
from hlgateway.trading.requests import PostRequest, parse_request
from hlgateway.upstream.exchange import UNKNOWN_FATE, ExchangeClient, NoRoom, Outcome
from hlgateway.upstream.link import Link

log = logging.getLogger("hlgateway.trading")

Reply = Callable[[bytes], None]
SHUTTING_DOWN = f"The gateway is shutting down; {UNKNOWN_FATE}"


class PostRelay:
    def __init__(self, client: ExchangeClient, policy: PostPolicy) -> None:
        self.client = client
        self.policy = policy
        self.stats: Counter[str] = Counter()  # posts by outcome: ok, err, and refusal codes
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, principal: Principal, request_id: RequestId, body: bytes, reply: Reply
    ) -> None:
        """Relay one post, or raise the ProtocolError that refuses it (nothing sent)."""
        started = time.monotonic()
        request: PostRequest | None = None
        try:
            self.policy.check_permission(principal)
            request = parse_request(body)
            ticket = self.policy.admit(principal, request)
            try:
                route = self.client.reserve(request.weight)
            except NoRoom as exc:
                self.policy.release(ticket)
                raise RateLimited(f"{exc}; retry shortly") from None
        except ProtocolError as exc:
            self.stats[exc.code.value] += 1
            self._log(principal, request, exc.code.value, "refused", started)
            raise
        task = asyncio.get_running_loop().create_task(
            self._relay(principal, request_id, request, route, ticket, reply, started)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(
        self,
        principal: Principal,
        request_id: RequestId,
        request: PostRequest,
        route: Link | None,
        ticket: Ticket,
        reply: Reply,
        started: float,
    ) -> None:
        via = "rest" if route is None else "ws"
        try:
            outcome = await self.client.send(route, request.body)
        except asyncio.CancelledError:
            outcome = Outcome("err", encoding.encode(SHUTTING_DOWN), via)
            raise
        except Exception:
            log.exception("post from user %s failed", principal.user_id)
            outcome = Outcome("err", encoding.encode(f"Internal error; {UNKNOWN_FATE}"), via)
        finally:
            self.policy.release(ticket)
            # Answered even when the gateway stops: the client must know it is unknown.
            self.stats[outcome.status] += 1
            self.stats[f"via_{outcome.via}"] += 1
            reply(
                encoding.message(
                    "post_result",
                    request_id,
                    status=outcome.status,
                    response=msgspec.Raw(outcome.response),
                )
            )
            self._log(principal, request, outcome.status, outcome.via, started)

    def _log(
        self,
        principal: Principal,
        request: PostRequest | None,
        status: str,
        via: str,
        started: float,
    ) -> None:
        """The one log line of a post. Never its signature (nor the rest of its body)."""
        log.info(
            "post user=%s action=%s nonce=%s cloids=%s status=%s via=%s %.1f ms",
            principal.user_id,
            request.action if request else "?",
            request.nonce if request else "?",
            ",".join(request.cloids[:4]) + ("..." if len(request.cloids) > 4 else "")
            if request and request.cloids
            else "-",
            status,
            via,
            (time.monotonic() - started) * 1000,
        )

    async def stop(self) -> None:
        """Answer what is still in flight (`err`: the gateway stops) and end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

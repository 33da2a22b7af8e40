"""The relay: admitted posts go to Hyperliquid, answers come back as `post_result`.

`submit` decides at once (permission, allowed action, limits, Hyperliquid's
budget) and raises the refusal for the session to answer; an admitted post is
sent at once and answered from the frame that brings Hyperliquid's answer, so a
client's later messages (and its other posts) never wait for an answer. Each
post is logged once when it ends: user, action, nonce, status, route, time;
never the signature or the body.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import msgspec

from hlgateway.auth import Principal
from hlgateway.protocol import encoding
from hlgateway.protocol.errors import ProtocolError
from hlgateway.protocol.messages import RequestId
from hlgateway.trading.policy import PostPolicy, RateLimited
from hlgateway.trading.requests import PostRequest, parse_request
from hlgateway.upstream.exchange import UNKNOWN_FATE, ExchangeClient, NoRoom, Outcome

log = logging.getLogger("hlgateway.trading")

Reply = Callable[[bytes], None]
SHUTTING_DOWN = f"The gateway is shutting down; {UNKNOWN_FATE}"


Observe = Callable[[str, float | None], None]  # (outcome, seconds to the answer or None)


def _ignore(outcome: str, seconds: float | None) -> None:
    return None


class PostRelay:
    def __init__(
        self, client: ExchangeClient, policy: PostPolicy, observe: Observe = _ignore
    ) -> None:
        self.client = client
        self.policy = policy
        self.stats: Counter[str] = Counter()  # posts by outcome and route, refusals by code
        self._observe = observe  # the metrics' side

    def submit(
        self, principal: Principal, request_id: RequestId, body: bytes, reply: Reply
    ) -> None:
        """Relay one post, or raise the ProtocolError that refuses it (nothing sent).

        `reply` gets the `post_result` once, when Hyperliquid answers (or the answer is
        known to be lost); the client's later messages do not wait for it.
        """
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
            self._observe(exc.code.value, None)
            self._log(principal, request, exc.code.value, "refused", started)
            raise
        admitted = request

        def answered(outcome: Outcome) -> None:
            self.policy.release(ticket)
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
            self._observe(outcome.status, time.monotonic() - started)
            self._log(principal, admitted, outcome.status, outcome.via, started)

        self.client.send(route, body, answered)

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
        """Answer what is still in flight: `err`, the gateway stops (its fate unknown)."""
        self.client.stop(SHUTTING_DOWN)

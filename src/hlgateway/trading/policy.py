"""Who may post what, how often and how many at once: order entry's decisions, sans I/O.

- Permission: the `trade` claim, or the admin role (else FORBIDDEN).
- Actions: trading ones (`requests.RELAYED`); anything else (transfers,
  withdrawals, agent approvals) only when the operator allows it by name (else
  INVALID_PARAMS).
- A per-user post rate (a token bucket per user, across their connections) and
  a per-user share of the posts in flight, so that one user's flood cannot
  starve another's; and Hyperliquid's 100 posts in flight per IP for the whole
  node. Beyond any: RATE_LIMITED, at once (a post never waits in a queue).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hlgateway.auth import Principal
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.ratelimit import TokenBucket
from hlgateway.trading.requests import RELAYED, PostRequest

MAX_BUCKETS = 10_000  # idle users' buckets are forgotten beyond this many


@dataclass(frozen=True)
class PostLimits:
    rate: float = 10.0  # posts per second per user (0: unlimited) ...
    burst: int = 20  # ... with bursts of up to this many
    user_in_flight: int = 20  # posts of one user awaiting Hyperliquid's answer
    max_in_flight: int = 100  # Hyperliquid's limit of posts in flight per IP
    also_allowed: frozenset[str] = field(default_factory=frozenset)  # e.g. withdraw3


class RateLimited(ProtocolError):
    """RATE_LIMITED: flow control, not a client mistake (not counted as an error)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, message)


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted post; give it back with `release` when it is answered."""

    user: str


class PostPolicy:
    def __init__(self, limits: PostLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}
        self.in_flight = 0

    def allowed(self, action: str) -> bool:
        return action in RELAYED or action in self.limits.also_allowed

    def check_permission(self, principal: Principal) -> None:
        if not principal.may_trade:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "Posting needs a token with the trade permission"
            )

    def admit(self, principal: Principal, request: PostRequest) -> Ticket:
        """Admit a post or refuse it (ProtocolError); a refusal changes nothing."""
        self.check_permission(principal)
        if not self.allowed(request.action):
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"Action {request.action[:64]!r} is not relayed by this gateway",
            )
        limits = self.limits
        user = principal.user_id
        if self.in_flight >= limits.max_in_flight:
            raise RateLimited(
                f"{limits.max_in_flight} posts are awaiting Hyperliquid's answer; retry shortly"
            )
        if self._in_flight.get(user, 0) >= limits.user_in_flight:
            raise RateLimited(
                f"{limits.user_in_flight} of your posts are awaiting an answer; retry shortly"
            )
        bucket = self._bucket(user)
        if not bucket.take():
            raise RateLimited(f"Too many posts; retry in {bucket.retry_after():.1f} s")
        self._in_flight[user] = self._in_flight.get(user, 0) + 1
        self.in_flight += 1
        return Ticket(user)

    def release(self, ticket: Ticket) -> None:
        self.in_flight -= 1
        left = self._in_flight[ticket.user] - 1
        if left:
            self._in_flight[ticket.user] = left
        else:
            del self._in_flight[ticket.user]

    def _bucket(self, user: str) -> TokenBucket:
        bucket = self._buckets.get(user)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_idle()
            bucket = TokenBucket(self.limits.rate, self.limits.burst, self._clock)
            self._buckets[user] = bucket
        return bucket

    def _forget_idle(self) -> None:
        """Drop the buckets of users who are back to a full bucket (nothing to remember)."""
        for user, bucket in list(self._buckets.items()):
            bucket.take(0)  # brings it up to date
            if bucket.retry_after(bucket.burst) == 0 and user not in self._in_flight:
                del self._buckets[user]


def refusal_counts(code: ErrorCode) -> bool:
    """Whether a refused post counts toward the client's error window.

    Flow control (RATE_LIMITED) does not: a bot that outpaces its post rate backs
    off; it is not misbehaving.
    """
    return code is not ErrorCode.RATE_LIMITED

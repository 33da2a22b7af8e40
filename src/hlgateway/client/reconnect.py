"""When and how `GatewayClient` connects again after a link ends (sans I/O).

Every link ends in `on_closed(code, reason, welcomed, http_status)`, which
answers `Retry(after, fresh_token)` or `Stop(error)`:

- a failover asked for (`failover()`): again at once, to the next URL;
- the token refused (close 4001, or 1008 other than `Too many errors`): with a
  fixed token, stop (`AuthenticationFailed`); with a provider, ask it for a
  fresh token first, and reconnect at once when a welcomed link merely
  outlived its token (4001);
- the WebSocket handshake refused with an HTTP 4xx (an `Origin` not allowed,
  a wrong path; 408 and 429 excepted): the same request will be refused again,
  so after `max_handshake_refusals` of them in a row, stop (`HandshakeRefused`);
- otherwise wait the backoff's delay for this attempt; once past its
  `max_attempts`, stop (`ReconnectAttemptsExhausted`).

A `welcome` resets the attempt count: only failures in a row count. The counting
and the backoff are the gateway's one `Reconnect` policy (hlgateway/reconnect.py);
this class adds the client's rules above, and `GatewayClient` runs it in the one
`Supervisor` loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hlgateway import reconnect
from hlgateway.backoff import Backoff
from hlgateway.client.errors import (
    AuthenticationFailed,
    ClientClosed,
    HandshakeRefused,
    ReconnectAttemptsExhausted,
)

TOKEN_EXPIRED_CLOSE = 4001
POLICY_CLOSE = 1008
TOO_MANY_ERRORS = "Too many errors"
# HTTP answers to the upgrade that a retry may not get again.
_PASSING_HTTP = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Retry(reconnect.Retry):
    fresh_token: bool = False  # ask the token provider for a new token first
    failover: bool = False  # asked for, not a failure: straight to the next URL


@dataclass(frozen=True, slots=True)
class Stop:
    error: ClientClosed


Decision = Retry | Stop


def token_refused(code: int | None, reason: str) -> bool:
    return code == TOKEN_EXPIRED_CLOSE or (code == POLICY_CLOSE and reason != TOO_MANY_ERRORS)


def handshake_refused(http_status: int | None) -> bool:
    return http_status is not None and 400 <= http_status < 500 and http_status not in _PASSING_HTTP


class ReconnectPolicy(reconnect.Reconnect):
    def __init__(
        self,
        backoff: Backoff,
        *,
        has_provider: bool,
        max_handshake_refusals: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(backoff, rng)
        self.has_provider = has_provider
        self.max_handshake_refusals = max_handshake_refusals
        self.handshake_refusals = 0  # consecutive HTTP 4xx answers to the upgrade
        self._failover = False

    def failover(self) -> None:
        """The next end of link was asked for: reconnect at once."""
        self._failover = True

    def on_welcome(self) -> None:
        self.connected()
        self.handshake_refusals = 0
        self._failover = False

    def on_closed(
        self,
        code: int | None,
        reason: str,
        welcomed: bool,
        http_status: int | None = None,
    ) -> Decision:
        """A link ended (or never came up: `welcomed` False, `code` None when no socket)."""
        if self._failover:
            self._failover = False
            return Retry(0.0, self.attempt, reason or "failover", failover=True)
        fresh = False
        if token_refused(code, reason):
            if not self.has_provider:
                return Stop(AuthenticationFailed(f"the gateway refused the token: {reason}", code))
            fresh = True
            if welcomed and code == TOKEN_EXPIRED_CLOSE:
                # A healthy link outlived its token: back at once with a fresh one.
                self.attempt = 1
                return Retry(0.0, self.attempt, reason, fresh_token=True)
        if handshake_refused(http_status):
            self.handshake_refusals += 1
            if self.handshake_refusals >= self.max_handshake_refusals:
                return Stop(
                    HandshakeRefused(
                        f"the gateway answered the WebSocket handshake with HTTP {http_status} "
                        f"{self.handshake_refusals} times in a row (an Origin or path it does "
                        "not accept?); not retrying",
                        http_status,
                    )
                )
        elif welcomed or http_status is not None:
            self.handshake_refusals = 0
        decision = self.ended(reason)
        if isinstance(decision, reconnect.GiveUp):
            return Stop(
                ReconnectAttemptsExhausted(f"gave up after {decision.attempts} reconnect attempts")
            )
        return Retry(decision.after, decision.attempt, reason, fresh_token=fresh)

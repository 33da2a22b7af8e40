"""Exceptions raised by the client."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class of every error the client raises."""


class RequestFailed(GatewayError):
    """The gateway answered a request with `{"type":"error"}`."""

    def __init__(
        self,
        code: str,
        message: str,
        channel: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.channel = channel
        self.params = params


class SubscriptionRefused(RequestFailed):
    """A subscription (or room join) the gateway refused for good: FORBIDDEN,
    INVALID_PARAMS, UNKNOWN_CHANNEL, TOO_MANY_SUBSCRIPTIONS.

    The subscription is forgotten: it is not restored on reconnect. Passing
    refusals (UPSTREAM_UNAVAILABLE, RATE_LIMITED, INTERNAL) are retried instead.
    """


class ConnectionLost(GatewayError):
    """The link dropped while a request was in flight; its outcome is unknown."""


class ClientClosed(GatewayError):
    """The client stopped for good: closed by its owner, out of reconnect attempts,
    or refused by the gateway's authentication with no way to get a fresh token."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason if code is None else f"{reason} (close code {code})")
        self.reason = reason
        self.code = code


class AuthenticationFailed(ClientClosed):
    """The gateway refused the token (close 1008 or 4001) and no token provider is set,
    or the provider failed."""


class HandshakeRefused(ClientClosed):
    """The gateway answered the WebSocket upgrade with an HTTP 4xx several times in a row
    (an `Origin` it does not allow, a wrong path): asking again would not help."""

    def __init__(self, reason: str, http_status: int | None) -> None:
        super().__init__(reason)
        self.http_status = http_status


class ReconnectAttemptsExhausted(ClientClosed):
    """`Backoff.max_attempts` reconnect attempts in a row failed."""


class SendQueueFull(GatewayError):
    """Too many messages are waiting for the link to come back (`max_queue`)."""

"""Error codes of the wire contract and the exception that carries one."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    INVALID_PARAMS = "INVALID_PARAMS"
    FORBIDDEN = "FORBIDDEN"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class CloseCode:
    """WebSocket close codes the gateway uses (spec: Close codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013
    TOKEN_EXPIRED = 4001
    SLOW_CONSUMER = 4008


class ProtocolError(Exception):
    """A client request that gets a coded error reply; never closes the connection by itself."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

"""Access log without secrets: query strings (which carry `?token=`) never reach it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,  # path only: the query may hold a token
            response.status,
            time * 1000,
            extra={"ip": request.remote},  # a field of its own in JSON logs
        )

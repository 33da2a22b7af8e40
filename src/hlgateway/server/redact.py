"""Secrets out of logs: tokens in query strings, Authorization headers and bare JWTs.

The access log already prints paths without query strings. This is the second
line of defence for everything else that logs (aiohttp's own error logging
prints exceptions whose text can quote a request line, and a library may log a
URL): a filter on the log handlers that rewrites each record before it is
written.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS = (
    # ?token=... / &access_token=... / jwt=..., up to the next delimiter.
    (
        re.compile(r"(?i)\b((?:access_)?token|jwt|auth)=[^&\s'\"<>]*"),
        r"\1=" + REDACTED,
    ),
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer)\s+[^\s'\",;]+"), r"\1 " + REDACTED),
    # Anything shaped like a JWT (header.payload.signature, base64url).
    (re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites the message, its arguments and any traceback text of each record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Put one RedactingFilter on every handler of `logger` (the root by default)."""
    target = logger or logging.getLogger()
    found = next(
        (f for h in target.handlers for f in h.filters if isinstance(f, RedactingFilter)), None
    )
    flt = found or RedactingFilter()
    for handler in target.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    return flt

"""Log set-up: plain text lines (the default) or JSON, one object a line.

JSON lines carry the fields an operator filters on: `ts` (UTC, ISO 8601 with
ms), `level`, `logger`, `msg`, and, where the code knows them, `client_id`,
`ip` and `user` (passed as `extra=` to the log call); `exc` holds a traceback.
Either way every handler carries the redacting filter (server/redact.py), so
a token never reaches a line, in the message or in an extra field.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import msgspec

from hlgateway.server import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes that a log call may add with `extra=` and that JSON lines carry.
CONTEXT_FIELDS = ("client_id", "ip", "user")

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = redact.redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return _encoder.encode(line).decode()


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """The root logger's one handler, in `fmt` ("text" or "json"), with redaction."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    redact.install(root)

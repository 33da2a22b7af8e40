"""The opening handshake (RFC 6455 section 4, RFC 7692 negotiation), sans I/O.

The gateway answers `GET /ws` itself instead of through aiohttp's
WebSocketResponse: a connection then costs a transport and a few small objects
instead of a request, a parser, a task and a coroutine stack that live as long
as the socket (see docs/benchmarks.md, idle memory). This module reads the
request head and builds the answers; every decision about *who* may connect is
made in `server/accept/admit.py`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_LIMIT = 16 * 1024  # bytes of request line + headers; aiohttp allows 8 KiB per line
MAX_HEADERS = 100
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class HandshakeError(Exception):
    """Refuse the request with an HTTP status (the connection is closed after it)."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    target: str
    version: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class RequestHead:
    line: RequestLine
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value), in order

    def get(self, name: str) -> str | None:
        """The first value of a header (names in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def query(self, name: str) -> str | None:
        """The first value of a query parameter, percent-decoded."""
        query = urlsplit(self.line.target).query
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == name:
                return value
        return None

    @property
    def host(self) -> str:
        return self.get("host") or ""


def parse_request_line(line: bytes) -> RequestLine | None:
    """`GET /ws?token=.. HTTP/1.1` -> RequestLine; None if it is not one."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1].startswith("/"):
        return None
    method, target, version = parts
    if not version.startswith("HTTP/") or not all(c in _TOKEN_STR for c in method):
        return None
    return RequestLine(method, target, version)


_TOKEN_STR = frozenset(chr(c) for c in _TOKEN_CHARS)


def parse_head(head: bytes) -> RequestHead:
    """The bytes up to (not including) the blank line that ends the head."""
    lines = head.split(b"\r\n")
    line = parse_request_line(lines[0])
    if line is None:
        raise HandshakeError(400, "Bad request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise HandshakeError(431, "Too many headers")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        # No obsolete line folding, no whitespace before the colon (RFC 9112 5.1).
        if not sep or not name or not all(c in _TOKEN_CHARS for c in name):
            raise HandshakeError(400, "Bad header line")
        try:
            text = value.decode("latin-1").strip(" \t")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise HandshakeError(400, "Bad header value") from None
        if any(c in text for c in "\r\n\x00"):
            raise HandshakeError(400, "Bad header value")
        headers.append((name.decode("ascii").lower(), text))
    return RequestHead(line, tuple(headers))


def _tokens(values: list[str]) -> set[str]:
    return {part.strip().lower() for value in values for part in value.split(",")}


def check_upgrade(head: RequestHead) -> str:
    """Validate a WebSocket opening handshake; returns the Sec-WebSocket-Key."""
    if head.line.method != "GET":
        raise HandshakeError(405, "Method not allowed", (("Allow", "GET"),))
    if head.line.version != "HTTP/1.1":
        raise HandshakeError(400, "WebSocket needs HTTP/1.1")
    if "websocket" not in _tokens(head.getall("upgrade")):
        raise HandshakeError(
            426, "WebSocket upgrade expected", (("Upgrade", "websocket"), ("Connection", "Upgrade"))
        )
    if "upgrade" not in _tokens(head.getall("connection")):
        raise HandshakeError(400, "Connection: Upgrade expected")
    if head.get("host") is None:
        raise HandshakeError(400, "Host header expected")
    if head.get("sec-websocket-version") != "13":
        raise HandshakeError(
            426, "Unsupported WebSocket version", (("Sec-WebSocket-Version", "13"),)
        )
    key = head.get("sec-websocket-key") or ""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HandshakeError(400, "Invalid Sec-WebSocket-Key")
    return key


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


@dataclass(frozen=True, slots=True)
class Deflate:
    """A negotiated permessage-deflate: our window, and whether the client resets its own."""

    wbits: int  # window bits of the server's messages (server_max_window_bits, default 15)
    client_no_context_takeover: bool

    @property
    def response(self) -> str:
        # Every server message is compressed with a fresh compressor, so we can
        # always promise not to take context over (RFC 7692 7.1.1.1 allows it unasked).
        parts = ["permessage-deflate", "server_no_context_takeover"]
        if self.wbits != 15:
            parts.append(f"server_max_window_bits={self.wbits}")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        return "; ".join(parts)


def negotiate_deflate(offers: list[str]) -> Deflate | None:
    """The first acceptable permessage-deflate offer of the Sec-WebSocket-Extensions headers."""
    for value in offers:
        for offer in value.split(","):
            name, *params = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            accepted = _deflate_offer(params)
            if accepted is not None:
                return accepted
    return None


def _deflate_offer(params: list[str]) -> Deflate | None:
    seen: set[str] = set()
    wbits, client_reset = 15, False
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key in seen:
            return None  # a parameter twice: decline this offer (RFC 7692 7.1)
        seen.add(key)
        if key == "server_no_context_takeover" and not value:
            continue
        if key == "client_no_context_takeover" and not value:
            client_reset = True
        elif key == "server_max_window_bits" and _window(value, 9):
            # 8 is declined: zlib silently widens an 8-bit raw window to 9.
            wbits = int(value)
        elif key == "client_max_window_bits" and (not value or _window(value, 8)):
            continue  # we inflate with a 15-bit window, which reads any smaller one
        else:
            return None
    return Deflate(wbits, client_reset)


def _window(value: str, smallest: int) -> bool:
    return value.isdigit() and smallest <= int(value) <= 15


def switching_protocols(key: str, deflate: Deflate | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if deflate is not None:
        lines.append(f"Sec-WebSocket-Extensions: {deflate.response}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_response(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete plain-text response after which the server closes the connection."""
    body = text.encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

"""The opening handshake, sans I/O: head parsing, validation, deflate negotiation, answers."""

from __future__ import annotations

import pytest

from hlgateway.websocket.handshake import (
    Deflate,
    HandshakeError,
    RequestHead,
    accept_key,
    check_upgrade,
    http_response,
    negotiate_deflate,
    parse_head,
    parse_request_line,
    switching_protocols,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example


def head(*lines: str, request: str = "GET /ws?token=abc%2Bd HTTP/1.1") -> RequestHead:
    return parse_head("\r\n".join((request, *lines)).encode("latin-1"))


def upgrade_head(*extra: str) -> RequestHead:
    return head(
        "Host: gw.example:8080",
        "Upgrade: WebSocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    )


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_line() -> None:
    line = parse_request_line(b"GET /ws?token=x HTTP/1.1")
    assert line is not None and (line.method, line.path, line.version) == ("GET", "/ws", "HTTP/1.1")
    for bad in (b"GET /ws", b"GET ws HTTP/1.1", b"G(T /ws HTTP/1.1", b"GET /ws FTP/1", b"\xff /ws"):
        assert parse_request_line(bad) is None, bad


def test_headers_query_and_host() -> None:
    h = head("Host: a.example", "X-Forwarded-For: 1.1.1.1", "x-forwarded-for:  2.2.2.2 ")
    assert h.host == "a.example"
    assert h.getall("x-forwarded-for") == ["1.1.1.1", "2.2.2.2"]
    assert h.query("token") == "abc+d"  # percent-decoded
    assert h.query("missing") is None and h.get("origin") is None


@pytest.mark.parametrize(
    "lines",
    [
        ("Host : a",),  # whitespace before the colon
        (" folded: continuation",),  # obsolete line folding
        ("no colon here",),
        (": empty name",),
    ],
)
def test_malformed_header_lines_are_400(lines: tuple[str, ...]) -> None:
    with pytest.raises(HandshakeError) as refused:
        head(*lines)
    assert refused.value.status == 400


def test_too_many_headers_is_431() -> None:
    with pytest.raises(HandshakeError) as refused:
        head(*(f"X-{i}: {i}" for i in range(101)))
    assert refused.value.status == 431


def test_a_valid_upgrade_gives_its_key() -> None:
    assert check_upgrade(upgrade_head()) == KEY


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (("Upgrade: h2c",), 426),
        (("Connection: keep-alive",), 400),
        (("Sec-WebSocket-Version: 8",), 426),
        (("Sec-WebSocket-Key: short",), 400),
        (("Sec-WebSocket-Key: " + "A" * 30 + "==",), 400),  # 22 bytes, not 16
    ],
)
def test_invalid_upgrades(change: tuple[str, ...], status: int) -> None:
    names = {line.split(":")[0].lower() for line in change}
    base = [
        "Host: gw",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    lines = [line for line in base if line.split(":")[0].lower() not in names] + list(change)
    with pytest.raises(HandshakeError) as refused:
        check_upgrade(head(*lines))
    assert refused.value.status == status


def test_method_and_version() -> None:
    with pytest.raises(HandshakeError) as post:
        check_upgrade(head("Host: gw", request="POST /ws HTTP/1.1"))
    assert post.value.status == 405 and ("Allow", "GET") in post.value.headers
    with pytest.raises(HandshakeError) as old:
        check_upgrade(head("Host: gw", request="GET /ws HTTP/1.0"))
    assert old.value.status == 400


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        ([], None),
        (["x-webkit-deflate-frame"], None),
        (["permessage-deflate"], Deflate(15, False)),
        (["permessage-deflate; client_max_window_bits"], Deflate(15, False)),
        (["permessage-deflate; client_no_context_takeover"], Deflate(15, True)),
        (["permessage-deflate; server_max_window_bits=10"], Deflate(10, False)),
        # 8 is declined (zlib widens it); the next offer is taken.
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate"], Deflate(15, False)),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (["permessage-deflate; unknown_param"], None),
        (["foo, permessage-deflate; server_max_window_bits=12"], Deflate(12, False)),
        (["permessage-deflate; server_max_window_bits=x"], None),
    ],
)
def test_deflate_negotiation(offers: list[str], expected: Deflate | None) -> None:
    assert negotiate_deflate(offers) == expected


def test_deflate_response_always_promises_no_server_context() -> None:
    assert Deflate(15, False).response == "permessage-deflate; server_no_context_takeover"
    assert Deflate(10, True).response == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
        "client_no_context_takeover"
    )


def test_answers() -> None:
    ok = switching_protocols(KEY, Deflate(15, False))
    assert ok.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and ok.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in ok
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in ok
    assert b"Extensions" not in switching_protocols(KEY, None)
    refused = http_response(429, "Too many connections", (("Retry-After", "7"),))
    head_part, body = refused.split(b"\r\n\r\n")
    assert head_part.split(b"\r\n")[0] == b"HTTP/1.1 429 Too Many Requests"
    assert b"Retry-After: 7" in head_part and b"Connection: close" in head_part
    assert b"Content-Length: 20" in head_part and body == b"Too many connections"

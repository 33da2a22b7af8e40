"""Client message decoding: every type, and the coded error for every kind of bad input."""

from __future__ import annotations

import pytest

from hlgateway.protocol.errors import ErrorCode
from hlgateway.protocol.messages import (
    Auth,
    DecodeFailure,
    JoinRoom,
    LeaveRoom,
    Ping,
    Subscribe,
    Unsubscribe,
    decode,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"type":"subscribe","channel":"prices","params":{"symbols":["BTC"]},"id":"a1"}',
            Subscribe(channel="prices", params={"symbols": ["BTC"]}, id="a1"),
        ),
        ('{"type":"subscribe","channel":"prices"}', Subscribe(channel="prices")),
        ('{"type":"unsubscribe","channel":"trades","id":7}', Unsubscribe(channel="trades", id=7)),
        ('{"type":"ping","id":1.5}', Ping(id=1.5)),
        ('{"type":"join_room","room":"desk"}', JoinRoom(room="desk")),
        ('{"type":"leave_room","room":"desk","id":"x"}', LeaveRoom(room="desk", id="x")),
        ('{"type":"auth","token":"t"}', Auth(token="t")),
        # Unknown extra fields are tolerated (forward compatibility of clients).
        ('{"type":"ping","extra":true}', Ping()),
    ],
)
def test_decodes_every_message_type(raw: str, expected: object) -> None:
    assert decode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        ("not json", ErrorCode.INVALID_MESSAGE, None),
        (b"\xff\xfe", ErrorCode.INVALID_MESSAGE, None),
        ("[1,2]", ErrorCode.INVALID_MESSAGE, None),
        ('"ping"', ErrorCode.INVALID_MESSAGE, None),
        ('{"id":3}', ErrorCode.INVALID_MESSAGE, 3),
        ('{"type":5,"id":"q"}', ErrorCode.INVALID_MESSAGE, "q"),
        ('{"type":"dance","id":"q"}', ErrorCode.UNKNOWN_TYPE, "q"),
        ('{"type":"subscribe","id":9}', ErrorCode.INVALID_MESSAGE, 9),
        ('{"type":"subscribe","channel":42}', ErrorCode.INVALID_MESSAGE, None),
        ('{"type":"subscribe","channel":"prices","params":[]}', ErrorCode.INVALID_MESSAGE, None),
        ('{"type":"join_room","room":null,"id":1}', ErrorCode.INVALID_MESSAGE, 1),
        ('{"type":"ping","id":true}', ErrorCode.INVALID_MESSAGE, None),
        ('{"type":"ping","id":{"a":1}}', ErrorCode.INVALID_MESSAGE, None),
    ],
)
def test_bad_input_gets_a_coded_failure(
    raw: str | bytes, code: ErrorCode, request_id: object
) -> None:
    with pytest.raises(DecodeFailure) as info:
        decode(raw)
    assert info.value.code is code
    assert info.value.request_id == request_id
    assert info.value.message

"""Order entry's decisions on plain objects: request shape, permission, limits (fake clock)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from hlgateway.auth import Principal
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.trading.policy import PostLimits, PostPolicy, refusal_counts
from hlgateway.trading.requests import parse_request

SIGNATURE = {"r": "0x1", "s": "0x2", "v": 27}
TRADER = Principal("alice", trade=True)
OTHER = Principal("bob", trade=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(action: Mapping[str, object], nonce: int = 5) -> bytes:
    return json.dumps({"action": action, "nonce": nonce, "signature": SIGNATURE}).encode()


ORDER = {
    "type": "order",
    "orders": [
        {
            "a": 1,
            "b": True,
            "p": "1",
            "s": "1",
            "r": False,
            "t": {"limit": {"tif": "Gtc"}},
            "c": "0x" + "ab" * 16,
        }
    ],
    "grouping": "na",
}


def test_a_request_is_read_without_being_changed() -> None:
    raw = body(ORDER, nonce=77)
    request = parse_request(raw)
    assert (request.body, request.action, request.nonce) == (raw, "order", 77)
    assert request.cloids == ("0x" + "ab" * 16,)
    assert request.weight == 1


def test_the_rest_weight_grows_with_the_batch() -> None:
    cancels = {"type": "cancel", "cancels": [{"a": 1, "o": i} for i in range(85)]}
    assert parse_request(body(cancels)).weight == 1 + 85 // 40


def test_permission_comes_from_the_trade_claim_or_admin() -> None:
    policy = PostPolicy(PostLimits())
    request = parse_request(body(ORDER))
    with pytest.raises(ProtocolError) as refused:
        policy.admit(Principal("reader"), request)
    assert refused.value.code is ErrorCode.FORBIDDEN
    policy.admit(Principal("root", role="admin"), request)
    policy.admit(TRADER, request)


def test_only_trading_actions_unless_allowed_by_name() -> None:
    transfer = parse_request(
        body({"type": "usdSend", "destination": "0x", "amount": "1", "time": 5})
    )
    with pytest.raises(ProtocolError) as refused:
        PostPolicy(PostLimits()).admit(TRADER, transfer)
    assert refused.value.code is ErrorCode.INVALID_PARAMS
    PostPolicy(PostLimits(also_allowed=frozenset({"usdSend"}))).admit(TRADER, transfer)


def test_each_user_has_a_rate_of_their_own() -> None:
    clock = Clock()
    policy = PostPolicy(PostLimits(rate=1.0, burst=2, user_in_flight=100), clock)
    request = parse_request(body(ORDER))
    for _ in range(2):
        policy.release(policy.admit(TRADER, request))
    with pytest.raises(ProtocolError) as refused:
        policy.admit(TRADER, request)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert not refusal_counts(refused.value.code)  # flow control, not a client error
    policy.admit(OTHER, request)  # another user is not held back
    clock.now += 1.0
    policy.admit(TRADER, request)


def test_in_flight_posts_are_capped_per_user_and_in_all() -> None:
    policy = PostPolicy(PostLimits(rate=0, user_in_flight=2, max_in_flight=3))
    request = parse_request(body(ORDER))
    first = policy.admit(TRADER, request)
    policy.admit(TRADER, request)
    with pytest.raises(ProtocolError, match="2 of your posts"):
        policy.admit(TRADER, request)
    policy.admit(OTHER, request)
    with pytest.raises(ProtocolError, match="3 posts are awaiting"):
        policy.admit(Principal("carol", trade=True), request)
    policy.release(first)
    assert policy.in_flight == 2
    policy.admit(TRADER, request)


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"action":{"type":"order"},"nonce":1}',
        b'{"action":{"type":"order"},"nonce":1,"signature":{"r":"0x1","s":"0x2","v":27,"w":1}}',
        b'{"action":{"type":1},"nonce":1,"signature":{"r":"0x1","s":"0x2","v":27}}',
        b'{"action":{"type":"noop"},"nonce":1.5,"signature":{"r":"0x1","s":"0x2","v":27}}',
    ],
)
def test_malformed_requests_get_invalid_params(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_request(raw)
    assert refused.value.code is ErrorCode.INVALID_PARAMS

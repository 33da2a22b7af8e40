"""Property-based fuzzing of the decoder and the session (hypothesis).

Any bytes, any text, any JSON, and messages built from the grammar with hostile
values: the answer is a coded error or a valid reply, never an exception, and a
refused request changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlgateway.auth import Principal, TokenVerifier, issue_token
from hlgateway.config import AuthSettings
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Catalog
from hlgateway.protocol.errors import ErrorCode
from hlgateway.protocol.markets import Markets
from hlgateway.protocol.messages import KNOWN_TYPES, DecodeFailure, decode
from hlgateway.session import Close, Session, SessionLimits
from tests.helpers import Inbox

SECRET = "f" * 32
WALLET = "0x" + "d4" * 20
CODES = {code.value for code in ErrorCode}
REPLIES = {"subscribed", "unsubscribed", "pong", "room_joined", "room_left", "authenticated"}

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
hostile = json_values | st.sampled_from(
    ["BTC", "btc", "kPEPE", "u1", "U1", WALLET, WALLET.upper(), "0x" + "e5" * 20, "", "a" * 200]
)
channels = st.sampled_from(
    [
        "prices",
        "orderbook",
        "trades",
        "user_orders",
        "user_fills",
        "account_updates",
        "system",
        "room",
        "candles",
        "bbo",
        "asset_context",
        "user_ledger",
        "klines",
        "",
    ]
)
params = st.dictionaries(
    st.sampled_from(
        ["symbols", "symbol", "depth", "throttle", "userId", "wallet", "interval", "x"]
    ),
    hostile,
    max_size=4,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(KNOWN_TYPES)) | hostile},
    optional={
        "channel": channels | hostile,
        "params": params | hostile,
        "id": hostile,
        "room": st.sampled_from(["desk", "a" * 65, "bad room"]) | hostile,
        "token": hostile,
    },
)


@FUZZ
@given(st.binary(max_size=300))
def test_decode_any_bytes(raw: bytes) -> None:
    try:
        decode(raw)
    except DecodeFailure as exc:
        assert exc.code.value in CODES


@FUZZ
@given(st.text(max_size=300))
def test_decode_any_text(raw: str) -> None:
    try:
        decode(raw)
    except DecodeFailure as exc:
        assert exc.code.value in CODES


@FUZZ
@given(json_values | messages)
def test_decode_any_json(value: Any) -> None:
    try:
        decode(json.dumps(value))
    except DecodeFailure as exc:
        assert exc.code.value in CODES


def new_session(hub: Hub) -> tuple[Session, Inbox]:
    inbox = Inbox()
    session = Session(
        "fz",
        Principal("u1", "one", None, frozenset({WALLET})),
        catalog=Catalog(Markets(["BTC", "ETH", "kPEPE"])),
        hub=hub,
        out=inbox,
        verifier=TokenVerifier(AuthSettings(secret=SECRET)),
        limits=SessionLimits(max_subscriptions=5, max_rooms=3, error_limit=1000, message_rate=0),
        clock=lambda: 0.0,
        stats=Counter(),
    )
    return session, inbox


def state(session: Session, hub: Hub, inbox: Inbox) -> tuple[Any, ...]:
    return (
        sorted((t.channel, t.params_json, t.wallets) for t in hub.topics_of(inbox)),
        hub.subscription_count,
        session.principal,
    )


def check_frame(raw: str | bytes, session: Session, hub: Hub, inbox: Inbox) -> None:
    before = state(session, hub, inbox)
    verdict = session.handle(raw)
    assert verdict is None or isinstance(verdict, Close)
    assert len(inbox.frames) == 1  # exactly one reply per message
    reply = msgspec.json.decode(inbox.frames.pop().payload)
    assert isinstance(reply, dict) and isinstance(reply["timestamp"], int)
    if reply["type"] == "error":
        assert reply["code"] in CODES and isinstance(reply["message"], str)
        assert state(session, hub, inbox) == before  # a refusal changes nothing
    else:
        assert reply["type"] in REPLIES


@FUZZ
@given(st.lists(messages | json_values, min_size=1, max_size=8))
def test_session_handles_any_json(values: list[Any]) -> None:
    hub = Hub()
    session, inbox = new_session(hub)
    for value in values:
        check_frame(json.dumps(value), session, hub, inbox)
    session.close()
    assert hub.topic_count == 0  # closing leaves nothing behind


@FUZZ
@given(st.lists(st.binary(max_size=120) | st.text(max_size=120), min_size=1, max_size=8))
def test_session_handles_any_bytes(frames: list[bytes | str]) -> None:
    hub = Hub()
    session, inbox = new_session(hub)
    for raw in frames:
        check_frame(raw, session, hub, inbox)


@FUZZ
@given(
    st.sampled_from(["u1", "u2"]),
    st.lists(st.sampled_from([WALLET, "0x" + "e5" * 20]), max_size=2),
    st.sampled_from([None, "admin", "Admin"]),
    st.integers(min_value=-100, max_value=600),
    hostile,
)
def test_auth_replies_never_echo_the_token(
    user: str, wallets: list[str], role: str | None, ttl: int, rid: Any
) -> None:
    hub = Hub()
    session, inbox = new_session(hub)
    tok = issue_token(SECRET, user, wallets=wallets or None, role=role, ttl_seconds=ttl)
    session.handle(json.dumps({"type": "auth", "token": tok, "id": rid}))
    (raw,) = inbox.payloads
    assert tok.encode() not in raw
    assert tok.split(".")[1].encode() not in raw


# Found by the properties above, kept as plain regressions.
REGRESSIONS = [
    "0:",  # a type error is reported before the trailing garbage
    '{"type":"ping"} x',
    "[" * 100_000,  # deep nesting
    '{"type":"subscribe","channel":"x","params":{"a":' + "[" * 100_000,
    '{"type":"ping","id":1e400}',  # id overflows to infinity
    '{"type":"ping","id":123456789012345678901234567890}',
    '{"type":"subscribe","channel":"prices","params":{"symbols":["\\ud800"]}}',  # lone surrogate
    '{"type":"join_room","room":"\\u0000"}',
    '{"type":"auth","token":{"$ne":null}}',
]


def test_regressions() -> None:
    hub = Hub()
    session, inbox = new_session(hub)
    for raw in REGRESSIONS:
        check_frame(raw, session, hub, inbox)
        check_frame(raw.encode("utf-8", "surrogatepass"), session, hub, inbox)

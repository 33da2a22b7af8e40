"""The session's limits without sockets: message rate, refusals change nothing, refresh revokes."""

from __future__ import annotations

import json
from collections import Counter

from hlgateway.auth import Principal, TokenVerifier, issue_token
from hlgateway.config import AuthSettings
from hlgateway.hub import Hub
from hlgateway.protocol.channels import Catalog
from hlgateway.protocol.errors import CloseCode, ErrorCode
from hlgateway.protocol.markets import Markets
from hlgateway.session import Close, Session, SessionLimits
from tests.helpers import Inbox

SECRET = "s" * 32
W1 = "0x" + "c1" * 20
W2 = "0x" + "c2" * 20
BOB_W = "0x" + "b0" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    limits: SessionLimits,
    principal: Principal | None = None,
    hub: Hub | None = None,
    clock: Clock | None = None,
) -> tuple[Session, Inbox, Hub, Counter[str]]:
    inbox, hub, stats = Inbox(), hub or Hub(), Counter[str]()
    session = Session(
        "c1",
        principal or Principal("u1", "one", None, frozenset({W1, W2})),
        catalog=Catalog(Markets(["BTC", "ETH"])),
        hub=hub,
        out=inbox,
        verifier=TokenVerifier(AuthSettings(secret=SECRET)),
        limits=limits,
        clock=clock or Clock(),
        stats=stats,
    )
    return session, inbox, hub, stats


def test_over_the_budget_requests_are_refused_with_rate_limited_and_change_nothing() -> None:
    clock = Clock()
    limits = SessionLimits(message_rate=1, message_burst=3, error_limit=100)
    session, inbox, hub, stats = make(limits, clock=clock)
    for i in range(3):
        assert session.handle(json.dumps({"type": "ping", "id": i})) is None
    sub = {"type": "subscribe", "channel": "trades", "params": {"symbol": "BTC"}, "id": "s"}
    assert session.handle(json.dumps(sub)) is None
    replies = inbox.pop()
    assert [r["type"] for r in replies] == ["pong"] * 3 + ["error"]
    refused = replies[-1]
    assert refused["code"] == "RATE_LIMITED" and refused["id"] == "s"
    assert refused["channel"] == "trades"
    assert hub.subscription_count == 0  # nothing was done
    assert stats["rateLimited"] == 1
    clock.now += 1  # one token back
    session.handle(json.dumps(sub))
    assert inbox.pop()[0]["type"] == "subscribed"


def test_a_flood_gets_rate_limited_errors_then_1008() -> None:
    limits = SessionLimits(message_rate=1, message_burst=5, error_limit=10)
    session, inbox, _, stats = make(limits)
    verdicts = [session.handle('{"type":"ping"}') for _ in range(100)]
    close_at = next(i for i, v in enumerate(verdicts) if v is not None)
    assert close_at == 5 + 10  # burst, then ten refusals, the eleventh closes
    assert verdicts[close_at] == Close(CloseCode.POLICY, "Rate limit exceeded")
    replies = inbox.pop()
    assert [r["type"] for r in replies[:5]] == ["pong"] * 5
    assert {r["code"] for r in replies[5:]} == {"RATE_LIMITED"}
    assert stats["closedRateLimited"] == 1


def test_binary_frames_and_pings_spend_the_same_budget() -> None:
    session, inbox, _, _ = make(SessionLimits(message_rate=1, message_burst=2, error_limit=100))
    assert session.allow_control()
    session.handle('{"type":"ping"}')
    assert not session.allow_control()  # budget spent: the protocol ping goes unanswered
    session.reject(ErrorCode.INVALID_MESSAGE, "Messages must be JSON text frames")
    assert inbox.pop()[-1]["code"] == "RATE_LIMITED"


def test_nothing_is_handled_after_the_close_verdict() -> None:
    session, inbox, hub, _ = make(SessionLimits(error_limit=0))
    assert session.handle("junk") == Close(CloseCode.POLICY, "Too many errors")
    inbox.pop()
    assert session.handle('{"type":"subscribe","channel":"prices"}') is None
    assert inbox.pop() == [] and hub.subscription_count == 0


def test_rooms_limit() -> None:
    session, inbox, hub, stats = make(SessionLimits(max_rooms=2))
    for room in ("a", "b", "c", "a"):
        session.handle(json.dumps({"type": "join_room", "room": room}))
    replies = inbox.pop()
    assert [r.get("code", r["type"]) for r in replies] == [
        "room_joined",
        "room_joined",
        "TOO_MANY_SUBSCRIPTIONS",
        "room_joined",  # joining one already held is no new room
    ]
    assert hub.subscription_count == 2 and stats["tooManyRooms"] == 1


def test_the_auth_error_never_echoes_the_token() -> None:
    session, inbox, _, _ = make(SessionLimits())
    tokens = [
        issue_token(SECRET, "someone-else", ttl_seconds=60),
        issue_token(SECRET, "u1", ttl_seconds=-10),
        issue_token("another-secret-another-secret-00", "u1", ttl_seconds=60),
        "eyJhbGciOiJub25lIn0.eyJpZCI6InUxIn0.",
        "not-a-token-SECRET-VALUE",
    ]
    for tok in tokens:
        session.handle(json.dumps({"type": "auth", "token": tok, "id": 1}))
        (raw,) = inbox.payloads
        reply = inbox.pop()[0]
        assert reply["code"] == "FORBIDDEN"
        assert tok.encode() not in raw
        assert tok.split(".")[0].encode() not in raw or tok.count(".") < 2


def test_refresh_with_fewer_wallets_revokes_their_subscriptions() -> None:
    session, inbox, hub, stats = make(SessionLimits())
    session.handle('{"type":"subscribe","channel":"user_fills","params":{"userId":"u1"}}')
    session.handle(
        json.dumps(
            {
                "type": "subscribe",
                "channel": "user_orders",
                "params": {"userId": "u1", "wallet": W1},
            }
        )
    )
    session.handle(
        json.dumps(
            {
                "type": "subscribe",
                "channel": "user_orders",
                "params": {"userId": "u1", "wallet": W2},
            }
        )
    )
    session.handle('{"type":"subscribe","channel":"trades","params":{"symbol":"BTC"}}')
    inbox.pop()
    narrower = issue_token(SECRET, "u1", wallets=[W1], ttl_seconds=600)
    session.handle(json.dumps({"type": "auth", "token": narrower, "id": "r"}))
    replies = inbox.pop()
    assert replies[0]["type"] == "authenticated"
    revoked = {(r["channel"], json.dumps(r["params"], sort_keys=True)) for r in replies[1:]}
    assert all(r["code"] == "FORBIDDEN" for r in replies[1:])
    assert revoked == {
        ("user_fills", '{"userId": "u1"}'),  # read W1 and W2
        ("user_orders", json.dumps({"userId": "u1", "wallet": W2}, sort_keys=True)),
    }
    kept = sorted(t.channel for t in hub.topics_of(inbox))
    assert kept == ["trades", "user_orders"]
    assert stats["revoked"] == 2


def test_refresh_without_the_admin_role_revokes_other_users_channels() -> None:
    admin = Principal("root", "root", "admin", frozenset())
    session, inbox, hub, _ = make(SessionLimits(), principal=admin)
    session.handle(
        json.dumps(
            {
                "type": "subscribe",
                "channel": "user_fills",
                "params": {"userId": "bob", "wallet": BOB_W},
            }
        )
    )
    assert inbox.pop()[0]["type"] == "subscribed"
    session.handle(json.dumps({"type": "auth", "token": issue_token(SECRET, "root")}))
    replies = inbox.pop()
    assert [r["type"] for r in replies] == ["authenticated", "error"]
    assert hub.subscription_count == 0

"""Reply matching by id, the send queue bound, tokens, typed messages (no sockets)."""

from __future__ import annotations

import time

import jwt
import pytest

from hlgateway.claims import unverified_claims
from hlgateway.client import messages as m
from hlgateway.client.errors import SendQueueFull
from hlgateway.client.requests import Requests
from hlgateway.client.sendqueue import SendQueue
from hlgateway.client.tokens import Tokens, refresh_delay, token_expiry
from tests.helpers import alice_token


def test_requests_match_by_id_once() -> None:
    reqs: Requests[str] = Requests()
    a, b = reqs.new_id(), reqs.new_id()
    assert a != b
    reqs.add(a, "ping")
    reqs.add(b, "subscribe")
    assert reqs.pop(b) == "subscribe"
    assert reqs.pop(b) is None  # a second reply to the same id is not ours
    assert reqs.pop(7) is None  # nor a foreign id
    assert reqs.drain() == ["ping"] and len(reqs) == 0


def test_send_queue_bound_refuses_instead_of_dropping() -> None:
    queue: SendQueue[int] = SendQueue(2)
    queue.put(1)
    queue.put(2)
    with pytest.raises(SendQueueFull):
        queue.put(3)
    queue.put_front([0])  # never written on a dropped link: goes back first
    assert queue.drain() == [0, 1, 2] and len(queue) == 0


def test_token_expiry_is_read_without_verifying() -> None:
    exp = token_expiry(alice_token(ttl_seconds=120))
    assert exp is not None and abs(exp - (time.time() + 120)) < 5
    assert token_expiry("not.a.jwt") is None
    assert token_expiry("plain") is None
    # Signed with a key the client does not have, expired, for another audience: still read.
    other = jwt.encode({"id": "u", "exp": 1, "aud": "x"}, "k" * 64, algorithm="HS512")
    assert token_expiry(other) == 1.0
    assert unverified_claims(other) == {"id": "u", "exp": 1, "aud": "x"}
    assert token_expiry(jwt.encode({"exp": "soon"}, "k" * 40, algorithm="HS256")) is None


def test_refresh_delay() -> None:
    assert refresh_delay(1000.0, 900.0, 30) == 70.0  # 30 s before expiry
    assert refresh_delay(1000.0, 990.0, 30) == 5.0  # short-lived: half-way
    assert refresh_delay(1000.0, 1001.0, 30) == 0.0


async def test_token_provider_sync_and_async() -> None:
    calls: list[int] = []

    def sync_provider() -> str:
        calls.append(1)
        return f"t{len(calls)}"

    tokens = Tokens(sync_provider)
    assert await tokens.get() == "t1"
    assert await tokens.get() == "t1"  # reused until refused
    assert await tokens.get(fresh=True) == "t2"

    async def async_provider() -> str:
        return "async"

    assert await Tokens(async_provider).get() == "async"
    fixed = Tokens("fixed")
    assert not fixed.has_provider and await fixed.get(fresh=True) == "fixed"


def test_typed_server_messages() -> None:
    msg = m.decode(
        '{"type":"data","channel":"orderbook","params":{"depth":2,"symbol":"BTC"},'
        '"data":{"symbol":"BTC","bids":[[1.0,2.0]],"asks":[[1.5,1.0]],"timestamp":5},'
        '"timestamp":6}'
    )
    assert isinstance(msg, m.DataMessage)
    book = msg.payload()
    assert isinstance(book, m.OrderBook) and book.bids == [(1.0, 2.0)]
    err = m.decode('{"type":"error","code":"FORBIDDEN","message":"no","id":"c3","timestamp":1}')
    assert isinstance(err, m.ErrorMessage) and m.request_id_of(err) == "c3"
    future = m.decode('{"type":"maintenance","at":5,"id":"c9"}')
    assert isinstance(future, m.UnknownMessage) and m.request_id_of(future) == "c9"
    with pytest.raises(m.MalformedMessage):
        m.decode("[1, 2]")
    with pytest.raises(m.MalformedMessage):
        m.decode("not json")
    prices = m.decode(
        '{"type":"data","channel":"prices","params":{},"data":{"BTC":{"price":1,'
        '"change24h":0.5,"volume24h":2,"timestamp":3}},"timestamp":4}'
    )
    assert isinstance(prices, m.DataMessage)
    assert prices.payload()["BTC"] == m.PriceQuote(1.0, 0.5, 2.0, 3)

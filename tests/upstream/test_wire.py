"""Hyperliquid frames become normalized events with numbers, not strings."""

from __future__ import annotations

import pytest

from hlgateway.upstream import wire


def test_all_mids() -> None:
    event = wire.parse('{"channel":"allMids","data":{"mids":{"BTC":"69172.5","@107":"69.4"}}}')
    assert event == wire.Mids({"BTC": 69172.5, "@107": 69.4})


def test_l2_book() -> None:
    frame = (
        '{"channel":"l2Book","data":{"coin":"BTC","time":1751427259657,"levels":'
        '[[{"px":"106217.0","sz":"0.001","n":1}],[{"px":"106218.0","sz":"0.5","n":3}]]}}'
    )
    assert wire.parse(frame) == wire.Book(
        "BTC", 1751427259657, [(106217.0, 0.001)], [(106218.0, 0.5)]
    )


def test_trades() -> None:
    frame = (
        '{"channel":"trades","data":[{"coin":"SOL","side":"A","px":"150.1","sz":"2",'
        '"hash":"0x1","time":5,"tid":77,"users":["0x1","0x2"]}]}'
    )
    event = wire.parse(frame)
    assert event == wire.Trades("SOL", [wire.Trade(77, 150.1, 2.0, "sell", 5)])


def test_user_fills_snapshot_flag_and_wallet_lower_case() -> None:
    frame = (
        '{"channel":"userFills","data":{"isSnapshot":true,"user":"0xABCDEF0000000000000000000000000000000001",'
        '"fills":[{"coin":"BTC","px":"100","sz":"0.1","side":"B","time":9,"startPosition":"0",'
        '"dir":"Open Long","closedPnl":"0.0","hash":"0xh","oid":12,"crossed":true,"fee":"0.01",'
        '"tid":99,"feeToken":"USDC","twapId":null}]}}'
    )
    event = wire.parse(frame)
    assert isinstance(event, wire.Fills)
    assert event.is_snapshot and event.wallet == "0xabcdef0000000000000000000000000000000001"
    (fill,) = event.fills
    assert (fill.id, fill.orderId, fill.side, fill.price, fill.size, fill.fee) == (
        99,
        12,
        "buy",
        100.0,
        0.1,
        0.01,
    )


def test_order_updates() -> None:
    frame = (
        '{"channel":"orderUpdates","data":[{"order":{"coin":"BTC","side":"B","limitPx":"87000",'
        '"sz":"0.4","oid":1000001,"timestamp":1,"origSz":"1.0","cloid":null},'
        '"status":"open","statusTimestamp":2}]}'
    )
    event = wire.parse(frame)
    assert isinstance(event, wire.OrderUpdates)
    (order,) = event.orders
    assert (order.id, order.amount, order.remaining, order.filled, order.status) == (
        1000001,
        1.0,
        0.4,
        0.6,
        "open",
    )


def test_clearinghouse_state() -> None:
    frame = (
        '{"channel":"clearinghouseState","data":{"dex":"","user":"0xAA00000000000000000000000000000000000000",'
        '"clearinghouseState":{"marginSummary":{"accountValue":"1000.5","totalNtlPos":"10",'
        '"totalRawUsd":"1","totalMarginUsed":"20"},"withdrawable":"900","crossMaintenanceMarginUsed":"1",'
        '"assetPositions":[{"type":"oneWay","position":{"coin":"ETH","szi":"-1.5",'
        '"leverage":{"type":"cross","value":10},"entryPx":"3000","positionValue":"4500",'
        '"unrealizedPnl":"-3","returnOnEquity":"0","liquidationPx":null,"marginUsed":"450",'
        '"maxLeverage":50,"cumFunding":{"allTime":"0","sinceOpen":"0","sinceChange":"0"}}}],"time":7}}}'
    )
    event = wire.parse(frame)
    assert isinstance(event, wire.Account)
    assert (event.wallet, event.accountValue, event.marginUsed, event.withdrawable) == (
        "0xaa00000000000000000000000000000000000000",
        1000.5,
        20.0,
        900.0,
    )
    (position,) = event.positions
    assert (position.size, position.leverage, position.liquidationPrice) == (-1.5, 10.0, None)


def test_control_frames() -> None:
    assert wire.parse('{"channel":"pong"}') == wire.Pong()
    ack = wire.parse(
        '{"channel":"subscriptionResponse","data":{"method":"subscribe",'
        '"subscription":{"type":"trades","coin":"SOL"}}}'
    )
    assert ack == wire.Ack("subscribe", {"type": "trades", "coin": "SOL"})
    assert wire.parse('{"channel":"error","data":"Already subscribed"}') == wire.UpstreamError(
        "Already subscribed"
    )
    assert wire.parse('{"channel":"webData2","data":{}}') is None  # a channel we do not use


@pytest.mark.parametrize(
    "frame",
    [
        "Websocket connection established.",
        "{",
        '{"channel":"l2Book","data":{"coin":"BTC"}}',
        '{"channel":"allMids","data":{"mids":{"BTC":"not a number"}}}',
        '{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[]}}',
    ],
)
def test_malformed_frames_raise_wire_error(frame: str) -> None:
    with pytest.raises(wire.WireError):
        wire.parse(frame)

"""Canonical topics and the permission matrix, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from hlgateway.auth import Principal
from hlgateway.protocol.channels import Catalog, room_topic
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import Markets

A_WALLET = "0x" + "a" * 40
A_WALLET_2 = "0x" + "a1" * 20
B_WALLET = "0x" + "b" * 40

ALICE = Principal("alice", "alice", None, frozenset({A_WALLET, A_WALLET_2}))
BOB = Principal("bob", "bob", None, frozenset({B_WALLET}))
ADMIN = Principal("root", "root", "admin", frozenset())
NOBODY = Principal("carol", "carol", None, frozenset())


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(Markets(["BTC", "ETH", "SOL", "kPEPE"]))


def test_symbols_are_canonical(catalog: Catalog) -> None:
    a = catalog.resolve("prices", {"symbols": ["eth", "BTC", "btc"]}, ALICE)
    b = catalog.resolve("prices", {"symbols": ["BTC", "ETH"]}, BOB)
    assert a == b
    assert a.params == {"symbols": ["BTC", "ETH"]}
    assert a.params_json == b'{"symbols":["BTC","ETH"]}'


def test_exchange_spelling_wins_over_upper_case(catalog: Catalog) -> None:
    assert catalog.resolve("trades", {"symbol": "KPEPE"}, ALICE).params == {"symbol": "kPEPE"}


def test_defaults_are_filled_and_keys_sorted(catalog: Catalog) -> None:
    book = catalog.resolve("orderbook", {"symbol": "sol"}, ALICE)
    assert book.params_json == b'{"depth":10,"symbol":"SOL"}'
    assert book == catalog.resolve("orderbook", {"depth": 10, "symbol": "SOL"}, ALICE)
    assert catalog.resolve("prices", None, ALICE) == catalog.resolve(
        "prices", {"symbols": []}, ALICE
    )


@pytest.mark.parametrize(
    ("channel", "params", "code"),
    [
        ("klines", {}, ErrorCode.UNKNOWN_CHANNEL),
        ("candles", {"symbol": "BTC"}, ErrorCode.INVALID_PARAMS),
        ("candles", {"symbol": "BTC", "interval": "2m"}, ErrorCode.INVALID_PARAMS),
        ("bbo", {}, ErrorCode.INVALID_PARAMS),
        ("asset_context", {"symbol": "BTC", "depth": 1}, ErrorCode.INVALID_PARAMS),
        ("user_ledger", {}, ErrorCode.INVALID_PARAMS),
        ("prices", {"symbols": ["DOGEZILLA"]}, ErrorCode.INVALID_PARAMS),
        ("prices", {"symbols": "BTC"}, ErrorCode.INVALID_PARAMS),
        ("prices", {"throttle": -1}, ErrorCode.INVALID_PARAMS),
        ("prices", {"colour": "red"}, ErrorCode.INVALID_PARAMS),
        ("orderbook", {}, ErrorCode.INVALID_PARAMS),
        ("orderbook", {"symbol": "BTC", "depth": 0}, ErrorCode.INVALID_PARAMS),
        ("orderbook", {"symbol": "BTC", "depth": 51}, ErrorCode.INVALID_PARAMS),
        ("orderbook", {"symbol": "BTC", "depth": "10"}, ErrorCode.INVALID_PARAMS),
        ("trades", {"symbol": 1}, ErrorCode.INVALID_PARAMS),
        ("user_orders", {}, ErrorCode.INVALID_PARAMS),
        ("user_fills", {"userId": "alice", "wallet": "0x12"}, ErrorCode.INVALID_PARAMS),
        ("system", {"x": 1}, ErrorCode.INVALID_PARAMS),
    ],
)
def test_bad_params(
    catalog: Catalog, channel: str, params: dict[str, Any], code: ErrorCode
) -> None:
    with pytest.raises(ProtocolError) as info:
        catalog.resolve(channel, params, ALICE)
    assert info.value.code is code


def test_markets_not_loaded_is_upstream_unavailable() -> None:
    with pytest.raises(ProtocolError) as info:
        Catalog(Markets()).resolve("trades", {"symbol": "BTC"}, ALICE)
    assert info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE


USER_CHANNELS = ["user_orders", "user_fills", "account_updates"]


@pytest.mark.parametrize("channel", USER_CHANNELS)
@pytest.mark.parametrize(
    ("principal", "params", "allowed", "wallets"),
    [
        # own channel: all wallets of the token
        (ALICE, {"userId": "alice"}, True, (A_WALLET_2, A_WALLET)),  # sorted
        # own channel, one of own wallets, named in mixed case
        (
            ALICE,
            {"userId": "alice", "wallet": A_WALLET.upper().replace("0X", "0x")},
            True,
            (A_WALLET,),
        ),
        # own userId but someone else's wallet
        (ALICE, {"userId": "alice", "wallet": B_WALLET}, False, ()),
        # someone else's userId, with or without their wallet
        (ALICE, {"userId": "bob"}, False, ()),
        (ALICE, {"userId": "bob", "wallet": B_WALLET}, False, ()),
        (ALICE, {"userId": "bob", "wallet": A_WALLET}, False, ()),
        (BOB, {"userId": "alice"}, False, ()),
        # a token without wallets reads nothing
        (NOBODY, {"userId": "carol"}, False, ()),
        # admin reads anyone's, naming the wallet
        (ADMIN, {"userId": "bob", "wallet": B_WALLET}, True, (B_WALLET,)),
        (ADMIN, {"userId": "alice", "wallet": A_WALLET_2}, True, (A_WALLET_2,)),
    ],
)
def test_permission_matrix(
    catalog: Catalog,
    channel: str,
    principal: Principal,
    params: dict[str, Any],
    allowed: bool,
    wallets: tuple[str, ...],
) -> None:
    if allowed:
        topic = catalog.resolve(channel, params, principal)
        assert topic.wallets == wallets
        assert topic.params["userId"] == params["userId"]
    else:
        with pytest.raises(ProtocolError) as info:
            catalog.resolve(channel, params, principal)
        assert info.value.code is ErrorCode.FORBIDDEN
        assert channel in info.value.message


def test_admin_must_name_the_wallet_of_another_user(catalog: Catalog) -> None:
    with pytest.raises(ProtocolError) as info:
        catalog.resolve("user_fills", {"userId": "bob"}, ADMIN)
    assert info.value.code is ErrorCode.INVALID_PARAMS


def test_same_params_different_wallets_are_different_topics(catalog: Catalog) -> None:
    other_alice = Principal("alice", "alice", None, frozenset({A_WALLET}))
    one = catalog.resolve("user_fills", {"userId": "alice"}, ALICE)
    two = catalog.resolve("user_fills", {"userId": "alice"}, other_alice)
    assert one.params_json == two.params_json
    assert one != two


def test_room_names() -> None:
    assert room_topic("desk-1").params == {"room": "desk-1"}
    for bad in ("", "a" * 65, "has space", "ünï"):
        with pytest.raises(ProtocolError):
            room_topic(bad)

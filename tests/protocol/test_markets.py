"""The market list: symbols, aliases, coins, delistings (sans I/O)."""

from __future__ import annotations

import pytest

from hlgateway.auth import Principal
from hlgateway.protocol.channels import Catalog
from hlgateway.protocol.errors import ErrorCode, ProtocolError
from hlgateway.protocol.markets import SPOT, Market, Markets, perp

HYPE = Market("HYPE/USDC", SPOT, "@107", "", 2, None, ("@107",), 10_107)
PURR = Market("PURR/USDC", SPOT, "PURR/USDC", "", 0, None, (), 10_000)
ALICE = Principal(user_id="alice", username="alice", role="user", wallets=frozenset())


def listing() -> list[Market]:
    return [perp("BTC", 5, 40, 0), perp("kPEPE", 0, 10, 1), HYPE, PURR, perp("xyz:TSLA", 3, 10)]


def test_every_spelling_resolves_to_the_canonical_symbol() -> None:
    markets = Markets(listing())
    assert markets.names == ("BTC", "kPEPE", "HYPE/USDC", "PURR/USDC", "xyz:TSLA")
    for name in ("HYPE/USDC", "hype/usdc", "@107"):
        assert markets.resolve(name) == "HYPE/USDC"
    assert markets.resolve("KPEPE") == "kPEPE" and markets.resolve("XYZ:tsla") == "xyz:TSLA"
    assert markets.resolve("@108") is None and markets.resolve("HYPE") is None
    assert markets.coin_of("HYPE/USDC") == "@107" and markets.symbol_of("@107") == "HYPE/USDC"
    assert markets.symbol_of("@999") == "@999"  # unknown coins keep their name
    assert markets.dexes() == ("xyz",)
    tsla = markets.get("xyz:TSLA")
    assert tsla is not None and tsla.kind == "dex-perp" and tsla.dex == "xyz"


def test_a_market_gone_from_the_list_is_refused_as_delisted() -> None:
    markets = Markets(listing())
    catalog = Catalog(markets)
    markets.load([m for m in listing() if m.symbol != "HYPE/USDC"], delisted=["MATIC"])
    for name in ("@107", "HYPE/USDC", "matic"):
        with pytest.raises(ProtocolError) as info:
            catalog.resolve("trades", {"symbol": name}, ALICE)
        assert info.value.code is ErrorCode.INVALID_PARAMS
        assert "delisted" in info.value.message
    with pytest.raises(ProtocolError, match="Unknown symbol"):
        catalog.resolve("trades", {"symbol": "NOPE"}, ALICE)
    markets.load(listing())  # listed again
    assert catalog.resolve("trades", {"symbol": "@107"}, ALICE).symbol == "HYPE/USDC"


def test_new_channels_have_canonical_params() -> None:
    catalog = Catalog(Markets(listing()))
    candles = catalog.resolve("candles", {"symbol": "@107", "interval": "1h"}, ALICE)
    assert candles.params_json == b'{"interval":"1h","symbol":"HYPE/USDC"}'
    assert candles.interval == "1h" and candles.snapshot and not candles.lossless
    assert catalog.resolve("bbo", {"symbol": "btc"}, ALICE).params == {"symbol": "BTC"}
    ctx = catalog.resolve("asset_context", {"symbol": "xyz:tsla"}, ALICE)
    assert ctx.params == {"symbol": "xyz:TSLA"} and ctx.snapshot
    prices = catalog.resolve("prices", {"symbols": ["@107", "HYPE/USDC", "btc"]}, ALICE)
    assert prices.symbols == ("BTC", "HYPE/USDC")

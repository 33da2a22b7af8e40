"""--upstream mainnet|testnet|URL resolve to Hyperliquid's documented endpoints."""

from __future__ import annotations

import pytest

from hlgateway.upstream.networks import endpoint_for


def test_mainnet_and_testnet() -> None:
    main = endpoint_for("mainnet")
    assert (main.ws_url, main.info_url) == (
        "wss://api.hyperliquid.xyz/ws",
        "https://api.hyperliquid.xyz/info",
    )
    test = endpoint_for("testnet")
    assert (test.ws_url, test.info_url) == (
        "wss://api.hyperliquid-testnet.xyz/ws",
        "https://api.hyperliquid-testnet.xyz/info",
    )


def test_custom_url_derives_rest_like_the_official_sdk() -> None:
    ep = endpoint_for("ws://127.0.0.1:9000/ws")
    assert (ep.ws_url, ep.info_url) == ("ws://127.0.0.1:9000/ws", "http://127.0.0.1:9000/info")
    assert endpoint_for("wss://example.test/ws").info_url == "https://example.test/info"


@pytest.mark.parametrize("bad", ["http://x/ws", "moon", "ws://"])
def test_bad_upstream(bad: str) -> None:
    with pytest.raises(ValueError, match="upstream"):
        endpoint_for(bad)


def test_host_override_changes_only_the_host() -> None:
    ep = endpoint_for("mainnet", "127.0.0.1:9443")
    assert (ep.name, ep.ws_url, ep.info_url) == (
        "mainnet",
        "wss://127.0.0.1:9443/ws",
        "https://127.0.0.1:9443/info",
    )

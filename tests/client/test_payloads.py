"""The payload shapes (hlgateway.protocol.payloads) against a running gateway on the
simulator: what the gateway really sends decodes through the client's types, and
encodes back to exactly the same JSON (no field the types miss, none they invent)."""

from __future__ import annotations

from typing import Any

import msgspec

from hlgateway.client import (
    AccountState,
    Backoff,
    DataMessage,
    FillsData,
    GatewayClient,
    Item,
    OrderBook,
    OrderUpdate,
    PriceQuote,
    Subscription,
    TradesData,
)
from hlgateway.protocol import payloads
from hlgateway.upstream import wire
from tests.client.support import PortGateway
from tests.helpers import alice_token

FAST = Backoff(initial=0.05, max_delay=0.5)


async def first_data(sub: Subscription[Item], timeout: float = 20) -> DataMessage:
    while True:
        item = await sub.next(timeout)
        if isinstance(item, DataMessage):
            return item


def same_json(typed: Any, raw: Any) -> None:
    assert msgspec.json.decode(msgspec.json.encode(typed)) == raw


def test_the_upstream_edge_and_the_client_share_one_definition() -> None:
    assert wire.Fill is payloads.Fill and wire.Order is payloads.Order
    assert wire.Trade is payloads.Trade and wire.Account is payloads.AccountState is AccountState


async def test_real_user_payloads_decode_through_the_client_types(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        orders = await client.user_orders("alice")
        fills = await client.user_fills("alice")
        account = await client.account_updates("alice")

        order_msg = await first_data(orders)
        update = order_msg.payload()
        assert isinstance(update, OrderUpdate) and update.order.wallet.startswith("0x")
        assert update.action in ("created", "updated", "cancelled", "filled")
        same_json(update, order_msg.data)

        fill_msg = await first_data(fills)
        batch = fill_msg.payload()
        assert isinstance(batch, FillsData) and batch.fills
        assert all(f.size > 0 and f.side in ("buy", "sell") for f in batch.fills)
        same_json(batch, fill_msg.data)

        account_msg = await account.next(20)
        state = account_msg.payload()
        assert isinstance(state, AccountState) and state.wallet.startswith("0x")
        same_json(state, account_msg.data)


async def test_real_market_payloads_decode_through_the_client_types(gateway: PortGateway) -> None:
    async with GatewayClient(gateway.ws, alice_token(), backoff=FAST) as client:
        prices = await (await client.prices(["BTC"])).next(10)
        quotes = prices.payload()
        assert isinstance(quotes["BTC"], PriceQuote)
        same_json(quotes, prices.data)
        book_msg = await (await client.orderbook("BTC", depth=3)).next(10)
        book = book_msg.payload()
        assert isinstance(book, OrderBook) and len(book.bids) == 3
        same_json(book, book_msg.data)
        trades_msg = await first_data(await client.trades("BTC"))
        trades = trades_msg.payload()
        assert isinstance(trades, TradesData) and trades.trades
        same_json(trades, trades_msg.data)

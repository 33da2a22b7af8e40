"""hlgateway's Python client: `GatewayClient` (one logical connection that survives
reconnects) and `ConnectionManager` (several gateways, health checks, failover).

```python
from hlgateway.client import GatewayClient

async with GatewayClient("ws://127.0.0.1:8080/ws", token) as client:
    async for update in client.prices(["BTC", "ETH"]):
        print(update.data)
```

Lossless streams (`user_orders`, `user_fills`, `user_ledger`, `trades`, rooms) resume where they
stopped after every reconnect; when they cannot, the iterator yields a `Resync`
(and the `resync` event fires) so the application reloads its state.

See docs/clients.md.
"""

from hlgateway.backoff import Backoff
from hlgateway.client.connection import (
    Disconnected,
    GatewayClient,
    LinkState,
    Reconnecting,
    UrlSource,
)
from hlgateway.client.errors import (
    AuthenticationFailed,
    ClientClosed,
    ConnectionLost,
    GatewayError,
    HandshakeRefused,
    ReconnectAttemptsExhausted,
    RequestFailed,
    SendQueueFull,
    SubscriptionRefused,
)
from hlgateway.client.manager import ConnectionManager, NoServers, Server, ServerHealth
from hlgateway.client.messages import (
    AccountPosition,
    AccountState,
    AssetContext,
    Authenticated,
    Bbo,
    Candle,
    CandlesData,
    DataMessage,
    ErrorMessage,
    Fill,
    FillLiquidation,
    FillsData,
    LedgerData,
    LedgerEvent,
    Order,
    OrderBook,
    OrderUpdate,
    Pong,
    PostResult,
    PriceQuote,
    PricesData,
    RoomJoined,
    RoomLeft,
    ServerMessage,
    Shutdown,
    Subscribed,
    SystemNotice,
    Trade,
    TradesData,
    UnknownMessage,
    Unsubscribed,
    Welcome,
)
from hlgateway.client.positions import Recovered, Resync
from hlgateway.client.reconnect import ReconnectPolicy, Retry, Stop
from hlgateway.client.refusals import is_transient
from hlgateway.client.subscription import Item, Subscription
from hlgateway.client.tokens import TokenProvider, TokenSource
from hlgateway.protocol.positions import Position

__all__ = [
    "AccountPosition",
    "AccountState",
    "AssetContext",
    "Authenticated",
    "AuthenticationFailed",
    "Backoff",
    "Bbo",
    "Candle",
    "CandlesData",
    "ClientClosed",
    "ConnectionLost",
    "ConnectionManager",
    "DataMessage",
    "Disconnected",
    "ErrorMessage",
    "Fill",
    "FillLiquidation",
    "FillsData",
    "GatewayClient",
    "GatewayError",
    "HandshakeRefused",
    "Item",
    "LedgerData",
    "LedgerEvent",
    "LinkState",
    "NoServers",
    "Order",
    "OrderBook",
    "OrderUpdate",
    "Pong",
    "Position",
    "PostResult",
    "PriceQuote",
    "PricesData",
    "ReconnectAttemptsExhausted",
    "ReconnectPolicy",
    "Reconnecting",
    "Recovered",
    "RequestFailed",
    "Resync",
    "Retry",
    "RoomJoined",
    "RoomLeft",
    "SendQueueFull",
    "Server",
    "ServerHealth",
    "ServerMessage",
    "Shutdown",
    "Stop",
    "Subscribed",
    "Subscription",
    "SubscriptionRefused",
    "SystemNotice",
    "TokenProvider",
    "TokenSource",
    "Trade",
    "TradesData",
    "UnknownMessage",
    "Unsubscribed",
    "UrlSource",
    "Welcome",
    "is_transient",
]

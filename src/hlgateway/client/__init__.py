"""hlgateway's Python client: `GatewayClient` (one logical connection that survives
reconnects) and `ConnectionManager` (several gateways, health checks, failover).

```python
from hlgateway.client import GatewayClient

async with GatewayClient("ws://127.0.0.1:8080/ws", token) as client:
    async for update in client.prices(["BTC", "ETH"]):
        print(update.data)
```

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
    ReconnectAttemptsExhausted,
    RequestFailed,
    SendQueueFull,
    SubscriptionRefused,
)
from hlgateway.client.manager import ConnectionManager, NoServers, Server, ServerHealth
from hlgateway.client.messages import (
    AccountState,
    Authenticated,
    DataMessage,
    ErrorMessage,
    Fill,
    FillsData,
    Order,
    OrderBook,
    OrderUpdate,
    Pong,
    Position,
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
from hlgateway.client.subscription import Subscription
from hlgateway.client.tokens import TokenProvider, TokenSource

__all__ = [
    "AccountState",
    "Authenticated",
    "AuthenticationFailed",
    "Backoff",
    "ClientClosed",
    "ConnectionLost",
    "ConnectionManager",
    "DataMessage",
    "Disconnected",
    "ErrorMessage",
    "Fill",
    "FillsData",
    "GatewayClient",
    "GatewayError",
    "LinkState",
    "NoServers",
    "Order",
    "OrderBook",
    "OrderUpdate",
    "Pong",
    "Position",
    "PriceQuote",
    "PricesData",
    "ReconnectAttemptsExhausted",
    "Reconnecting",
    "RequestFailed",
    "RoomJoined",
    "RoomLeft",
    "SendQueueFull",
    "Server",
    "ServerHealth",
    "ServerMessage",
    "Shutdown",
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
]

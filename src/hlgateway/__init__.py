"""hlgateway: a real-time WebSocket gateway for Hyperliquid trading bots."""

__version__ = "0.1.0"

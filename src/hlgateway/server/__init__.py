"""The HTTP/WebSocket edge: aiohttp routes, connections, and the serve life cycle."""

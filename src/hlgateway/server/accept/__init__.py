"""The accept path: every accepted socket, until it is a WebSocket `Connection` or aiohttp's.

In the order a socket meets them:

listener.py       the listening socket (TCP or TLS); each accepted socket starts in ...
request_head.py   ... a protocol that reads the request head: `GET /ws` goes on here, anything
                  else is handed to aiohttp with the bytes read so far; the head deadline
admit.py          who may open a WebSocket, cheapest check first: 503, Origin 403, per-IP 429,
                  handshake 400/426, then after the 101 the token and the per-user limit (1008)
client_counts.py  per-IP and per-user connection counts and the client IP behind trusted
                  proxies (sans I/O)
defences.py       `Edge`: the above built once from the settings, the refusal counters that
                  /health shows, and the head deadline of sockets handed to aiohttp

Then server/connection.py holds the socket as an `asyncio.Protocol`.
"""

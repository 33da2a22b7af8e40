"""The same echo on the `websockets` library, the field's reference implementation in Python.

python -m bench.conformance.library --port 9002 [--max-message-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.conformance.echo import DEFAULT_MAX_MESSAGE


async def echo(websocket: ServerConnection) -> None:
    # The suite breaks the protocol on purpose: a connection ending badly is the
    # expected end of many cases, not a failure of this server to log.
    with contextlib.suppress(ConnectionClosed):
        async for message in websocket:
            await websocket.send(message)


async def run(host: str, port: int, max_message_bytes: int) -> None:
    async with serve(echo, host, port, max_size=max_message_bytes, compression="deflate") as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.host, args.port, args.max_message_bytes))


if __name__ == "__main__":
    main()

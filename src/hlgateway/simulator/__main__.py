"""``python -m hlgateway.simulator``: run the simulator standalone until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from hlgateway.simulator import SimConfig, run_simulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Offline Hyperliquid WebSocket/REST simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--book-interval", type=float, default=SimConfig.book_interval)
    parser.add_argument("--order-interval", type=float, default=SimConfig.order_interval)
    parser.add_argument("--max-fill-gap", type=float, default=SimConfig.max_fill_gap)
    parser.add_argument("--track-grace", type=float, default=SimConfig.track_grace)
    parser.add_argument("--control", action="store_true", help="serve the /control/* API")
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=SimConfig.clock_offset,
        help="seconds the exchange's clock runs from the wall clock (negative: behind)",
    )
    parser.add_argument(
        "--max-messages-per-minute",
        type=int,
        default=SimConfig.max_messages_per_minute,
        help="Hyperliquid's per-IP message limit (raise it for benchmarks from one IP)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SimConfig(
        seed=args.seed,
        book_interval=args.book_interval,
        order_interval=args.order_interval,
        max_fill_gap=args.max_fill_gap,
        track_grace=args.track_grace,
        control=args.control,
        clock_offset=args.clock_offset,
        max_messages_per_minute=args.max_messages_per_minute,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(args.host, args.port, config))


if __name__ == "__main__":
    main()

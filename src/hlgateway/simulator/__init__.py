"""Embedded Hyperliquid simulator: Hyperliquid's WebSocket and REST protocol, offline.

``Simulator`` serves ``GET /ws`` and ``POST /info`` on one port, fed by a
deterministic, seeded model of perp markets (``market``) and of the order flow
of every wallet a client subscribes to (``accounts``).
"""

from __future__ import annotations

from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.server import Simulator, run_simulator

__all__ = ["SimConfig", "Simulator", "run_simulator"]

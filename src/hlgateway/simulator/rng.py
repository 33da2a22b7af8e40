"""Deterministic randomness derived from the simulator seed.

Every independent stream (a coin's price path, a wallet's order flow, one book
snapshot) gets its own generator derived from ``(seed, *labels)`` with SHA-256.
``hash()`` is salted per process, so it would break reproducibility across runs;
independent streams mean one wallet's data does not depend on which other
wallets or coins happen to be active.
"""

from __future__ import annotations

import hashlib
import random


def _digest(seed: int, labels: tuple[str | int, ...]) -> bytes:
    material = "\x1f".join(str(part) for part in (seed, *labels))
    return hashlib.sha256(material.encode()).digest()


def derive_rng(seed: int, *labels: str | int) -> random.Random:
    """A generator whose stream depends only on the seed and the labels."""
    return random.Random(int.from_bytes(_digest(seed, labels), "big"))


def derive_int(seed: int, *labels: str | int, bits: int = 64) -> int:
    """A non-negative integer of at most ``bits`` bits derived from the labels."""
    return int.from_bytes(_digest(seed, labels), "big") >> (256 - bits)


def derive_hash(seed: int, *labels: str | int) -> str:
    """A 0x-prefixed 32-byte hex string, shaped like a Hyperliquid tx hash."""
    return "0x" + _digest(seed, labels).hex()


def derive_address(seed: int, *labels: str | int) -> str:
    """A lowercase 0x-prefixed 20-byte hex string, shaped like a wallet address."""
    return "0x" + _digest(seed, labels).hex()[:40]

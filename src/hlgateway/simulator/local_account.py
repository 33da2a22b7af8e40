"""The simulator's funded local account: a key for trading on the simulator.

Derived from the seed, so ``hlgateway simulate`` and ``hlgateway serve`` print
the same account on every run and the docs can show how to use it. The key is
public by construction: it holds simulated dollars on this simulator and must
never hold anything real.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_utils.crypto import keccak

WARNING = "a key for this simulator only: never use it, or send funds to it, anywhere else"


@dataclass(frozen=True)
class LocalAccount:
    address: str  # lower-case
    key: str  # 0x + 64 hex

    def __repr__(self) -> str:  # a repr in a log line shows the address only
        return f"LocalAccount(address={self.address!r})"


def local_account(seed: int) -> LocalAccount:
    key = "0x" + keccak(f"hlgateway simulator local account {seed}".encode()).hex()
    address: str = Account.from_key(key).address
    return LocalAccount(address=address.lower(), key=key)

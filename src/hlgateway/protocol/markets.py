"""The symbols the exchange lists: the gateway accepts only these."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Markets:
    """Listed perp symbols, looked up case-insensitively.

    Canonical spelling is the exchange's own: almost every coin is upper case,
    but a few are not (Hyperliquid lists `kPEPE`), so upper-casing alone would
    name a coin that does not exist.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._by_upper: dict[str, str] = {}
        self._names: tuple[str, ...] = ()
        self._loaded = False
        self._ready: asyncio.Event | None = None  # made by the first waiter
        if names:
            self.load(names)

    def load(self, names: Iterable[str]) -> None:
        self._names = tuple(names)
        self._by_upper = {name.upper(): name for name in self._names}
        self._loaded = True
        if self._ready is not None:
            self._ready.set()

    async def wait_loaded(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for the list; True once it is loaded."""
        if not self._loaded and timeout > 0:
            if self._ready is None:
                self._ready = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                pass
        return self._loaded

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def resolve(self, symbol: str) -> str | None:
        return self._by_upper.get(symbol.upper())

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol in self._names

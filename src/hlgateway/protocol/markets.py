"""The symbols the exchange lists: the gateway accepts only these."""

from __future__ import annotations

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
        if names:
            self.load(names)

    def load(self, names: Iterable[str]) -> None:
        self._names = tuple(names)
        self._by_upper = {name.upper(): name for name in self._names}
        self._loaded = True

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

"""Requests awaiting their reply, matched by `id` (sans I/O).

The gateway echoes canonical params, not the ones sent, so replies are matched
by the `id` the client puts on every request. Ids are unique for the client's
whole life (across reconnects), so a late reply from an old connection can
never be taken for the answer to a new request.
"""

from __future__ import annotations

import itertools
from typing import Generic, TypeVar

P = TypeVar("P")


class Requests(Generic[P]):
    def __init__(self, prefix: str = "c") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._pending: dict[str, P] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter)}"

    def add(self, request_id: str, pending: P) -> None:
        self._pending[request_id] = pending

    def pop(self, request_id: object) -> P | None:
        """The pending request a reply answers; None if the id is not ours (or stale)."""
        if not isinstance(request_id, str):
            return None
        return self._pending.pop(request_id, None)

    def drain(self) -> list[P]:
        """Every pending request, removed (the link dropped)."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending

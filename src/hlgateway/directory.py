"""The user directory: which wallets each user id has. Sans I/O.

An admin may read a user's channels by `userId` alone (the seed's client does);
the gateway then reads every wallet it knows for that user. It knows them from
the signed tokens it has accepted (the latest token of each user wins) and from
configured sources - a file, a PostgreSQL table - loaded by directory_sync.py.
Lookups are synchronous reads of this in-memory map: a subscribe never waits
on a database.
"""

from __future__ import annotations

import json
import tomllib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hlgateway.auth import WALLET_RE, Principal

TOKENS = "tokens"


class DirectoryError(ValueError):
    """A directory source that cannot be read as user -> wallets."""


class UserDirectory:
    def __init__(self, max_learned: int = 100_000) -> None:
        self._max_learned = max_learned
        # Learned from tokens, least recently seen first (bounded: one entry per user).
        self._learned: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._sources: dict[str, dict[str, tuple[str, ...]]] = {}

    def learn(self, principal: Principal) -> None:
        """A token was accepted: remember its user's wallets."""
        if not principal.wallets:
            return
        user = principal.user_id
        self._learned[user] = tuple(sorted(principal.wallets))
        self._learned.move_to_end(user)
        while len(self._learned) > self._max_learned:
            self._learned.popitem(last=False)

    def load(self, source: str, users: Mapping[str, Iterable[str]]) -> None:
        """Replace everything a configured source said with `users`."""
        self._sources[source] = {user: _wallets(user, wallets) for user, wallets in users.items()}

    def wallets_of(self, user_id: str) -> tuple[str, ...]:
        """Every wallet known for the user, sorted; empty when the user is unknown."""
        found: set[str] = set(self._learned.get(user_id, ()))
        for users in self._sources.values():
            found.update(users.get(user_id, ()))
        return tuple(sorted(found))

    def stats(self) -> dict[str, int]:
        return {
            "learnedUsers": len(self._learned),
            **{f"{name}Users": len(users) for name, users in self._sources.items()},
        }


def _wallets(user: str, wallets: Iterable[str]) -> tuple[str, ...]:
    result = []
    for wallet in wallets:
        if not isinstance(wallet, str) or not WALLET_RE.match(wallet.lower()):
            raise DirectoryError(f"user {user!r}: {wallet!r} is not a 0x wallet address")
        result.append(wallet.lower())
    return tuple(sorted(set(result)))


def parse_file(path: Path) -> dict[str, list[str]]:
    """A directory file: JSON or TOML, `{"users": {"alice": ["0x...", ...]}}`."""
    text = path.read_text(encoding="utf-8")
    try:
        doc: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DirectoryError(f"{path}: {exc}") from None
    users = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(users, dict):
        raise DirectoryError(f'{path}: expected {{"users": {{"<user id>": ["0x...", ...]}}}}')
    parsed: dict[str, list[str]] = {}
    for user, wallets in users.items():
        if not isinstance(wallets, list):
            raise DirectoryError(f"{path}: user {user!r}: wallets must be a list")
        _wallets(user, wallets)  # validate
        parsed[str(user)] = wallets
    return parsed

"""Numbered, forward-only schema migrations: which to run, decided without I/O.

A store lists its migrations as `Migration(version, summary, step)`, numbered from 1
with no gap, and keeps the version it has reached in its own database. At start it
reads that version and asks `pending()`: the migrations after it, in order, to run
in one transaction that also writes the new version. A database written by a newer
program (a version above the last one known) is refused with `SchemaTooNew`, before
anything is changed: a downgrade would read columns it does not know and could drop
what it does not understand.

What `step` is belongs to the store (SQL for one engine, a function of a
connection, ...); this module only orders and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class Migration(Generic[S]):
    version: int
    summary: str  # what it changes, for the log
    step: S


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this program; the message says why."""


class SchemaTooNew(SchemaError):
    def __init__(self, what: str, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"{what} is at schema version {found}, newer than this hlgateway knows ({known}): "
            "it was written by a newer release. Run that release (or newer), or point this one "
            "at another database; nothing was changed."
        )


def latest(migrations: Sequence[Migration[S]]) -> int:
    return migrations[-1].version if migrations else 0


def pending(current: int, migrations: Sequence[Migration[S]], what: str) -> list[Migration[S]]:
    """The migrations to run on a database at version `current` (0: empty), in order.

    Raises SchemaTooNew for a database beyond the last migration, and ValueError for a
    list that is not numbered 1, 2, 3, ... (a programming error)."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migrations must be numbered 1..n: {migration.version} at {expected}")
    if current < 0:
        raise SchemaError(f"{what} has a negative schema version ({current})")
    if current > latest(migrations):
        raise SchemaTooNew(what, current, latest(migrations))
    return list(migrations[current:])

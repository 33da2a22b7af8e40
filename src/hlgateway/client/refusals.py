"""Which refusals of a subscription are final, and which pass (sans I/O).

A gateway that has just (re)started may refuse a subscription because its
market list is not loaded yet (`UPSTREAM_UNAVAILABLE`), because the client asks
too fast (`RATE_LIMITED`), or because of its own passing trouble (`INTERNAL`).
Asking again a little later works: the client keeps such a subscription and
retries it with backoff. A refusal about the request itself (`FORBIDDEN`,
`INVALID_PARAMS`, `UNKNOWN_CHANNEL`, `TOO_MANY_SUBSCRIPTIONS`) would be the
same next time: the subscription fails and is forgotten. So does any code this
client does not know, rather than loop on it.
"""

from __future__ import annotations

from typing import Final

TRANSIENT: Final = frozenset({"UPSTREAM_UNAVAILABLE", "RATE_LIMITED", "INTERNAL"})
FINAL: Final = frozenset(
    {"FORBIDDEN", "INVALID_PARAMS", "UNKNOWN_CHANNEL", "TOO_MANY_SUBSCRIPTIONS"}
)


def is_transient(code: str) -> bool:
    """True when the same subscribe may succeed if sent again later."""
    return code in TRANSIENT

"""The cyclic garbage collector in a long-lived server.

Everything `serve` builds before it listens (modules, settings, the market list,
the app, the upstream links: ~108k objects on the embedded simulator) lives as
long as the process, yet every full collection walked all of it: 27-49 ms of a
quiet 2-core machine, 94-295 ms on a loaded one, with the event loop held the
whole time (a post or a broadcast that came meanwhile waited: docs/benchmarks.md,
"Order entry: where the p99 goes"). `settle()` collects once after start-up and
moves the survivors to the collector's permanent generation (`gc.freeze()`), so
later collections walk only what came after: the connections, their
subscriptions, what is in flight.

Memory: a frozen object is still freed when its last reference goes (reference
counting is untouched); only a reference cycle among frozen objects that becomes
garbage later is never reclaimed. Start-up garbage is collected before the
freeze, so that is bounded by what start-up built and later drops in cycles
(a market list reload replaces its objects; the old ones are freed by reference
counting unless they form cycles). The process's resident size is unchanged by
the freeze itself.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """After start-up, before serving: collect, then freeze the survivors. Returns how
    many objects the collector will no longer walk."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def health() -> dict[str, int]:
    """For /health: the objects frozen at start-up (0: not settled). Cheap: no walk."""
    return {"frozenObjects": gc.get_freeze_count()}

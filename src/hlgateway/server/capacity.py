"""How many clients one process may hold: its open-file limit, raised, minus a reserve.

Every client is a socket, and a process may hold no more open files than its
RLIMIT_NOFILE. The soft limit is often far below the hard one (1,024 against
hundreds of thousands on common distributions), so a server first raises it
to the hard limit, which needs no privilege. Past that, `accept` fails with
EMFILE and the event loop closes the next client without a word; instead the
gateway stops upgrading at `capacity` connections, a reserve below the limit
(the listening socket, the event loop's own files, Redis and upstream
connections, HTTP requests, handshakes in progress), and answers the rest
`503 server full` with `Retry-After`: a clear refusal a client can act on (with
`--workers`, a retry usually lands on another worker), never a crash.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

RESERVE = 512  # descriptors kept for everything that is not a client
RETRY_AFTER = 5  # seconds a refused client is asked to wait


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (no privilege needed); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (hard, soft) or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    log.info("open-file limit raised from %d to %d", soft, hard)
    return hard


def connection_capacity(configured: int, soft_limit: int | None = None) -> int:
    """`configured` (HLGATEWAY_MAX_CONNECTIONS) if set, else the open-file limit less RESERVE."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        soft_limit = 1 << 20
    automatic = max(1, soft_limit - RESERVE)
    return configured if configured > 0 else automatic

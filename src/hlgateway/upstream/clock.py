"""Where a wallet's user stream starts, on the exchange's clock. Sans I/O.

Hyperliquid stamps every fill, order transition and ledger event with its own
clock; the gateway decides with its own when a stream starts (a subscribe) and
when a gap began (the last frame a link heard, the last poll). The two clocks
differ by some milliseconds, or by seconds on a badly kept host, either way.

The rule (docs/upstream.md, "Where a stream starts"): a stream delivers every
event stamped at or after its *start*, an exchange time, and none before it.

- A stream started by a subscribe (no position kept) starts a margin before the
  gateway's clock said the subscribe happened: an event that happened after it is
  stamped later than that even if the exchange's clock runs behind ours by up to
  the margin. The margin is `CLOCK_MARGIN_MS`, or more when what the exchange
  pushes shows its clock may lag ours by more (`ExchangeClock`). A subscriber may
  therefore also get events up to the margin older than its subscribe; never one
  twice (the ledgers key by id).
- A stream started again where it had been delivered to (a restart, a handover,
  a topic subscribed again) starts at that position: the exchange's time of the
  last event delivered, itself included (another event of the same millisecond
  may not have been), so no margin; the ledgers drop what was given before.
- What Hyperliquid pushes live after a subscription is active happened after the
  start, whatever its stamp: the start bounds only what is read back (a
  snapshot, REST after a gap, a poll).
- Reading back after a gap or for the next poll reaches the margin before the
  last moment heard (our clock), never before the stream's start.
"""

from __future__ import annotations

# How far the exchange's clock may run behind ours (ms) with nothing lost, at least.
CLOCK_MARGIN_MS = 2_000
# And at most, however far behind its frames say it is: a lag beyond a minute is a
# broken clock to fix, not to follow (a fresh stream would start minutes back).
MAX_MARGIN_MS = 60_000


def start_from(now_ms: int, margin_ms: int = CLOCK_MARGIN_MS) -> int:
    """The start (exchange time) of a stream subscribed at `now_ms` (our clock)."""
    return now_ms - margin_ms


def reach_back(heard_ms: int, start_ms: int, margin_ms: int = CLOCK_MARGIN_MS) -> int:
    """Where reading back from a moment last heard (`heard_ms`, our clock, or an
    exchange time) starts: the margin before it, never before the stream's start."""
    return max(heard_ms - margin_ms, start_ms)


class ExchangeClock:
    """How far the exchange's clock may run behind ours, read from what it pushes.

    A frame the exchange stamped `t` (a book, a bbo, a live fill: its own clock) and
    that we received at `r` (ours) says r - t = the time it was in flight plus how
    far the exchange's clock is behind ours. The least such difference is therefore
    a bound on that lag (reached by a frame in flight for no time at all). Kept as
    one least value per minute over `window_minutes`, so that a clock corrected
    since is forgotten. Only frames pushed as things happen count: a replay or a
    snapshot of history is old and would only widen the bound.

    `margin_ms` is the rule's margin (module docstring): `CLOCK_MARGIN_MS`, or that
    bound when it is more: a host whose clock runs ahead of Hyperliquid's by more
    than the margin still loses nothing once the exchange has pushed anything.
    """

    def __init__(self, window_minutes: int = 10, floor_ms: int = CLOCK_MARGIN_MS) -> None:
        self._window = window_minutes
        self._floor = floor_ms
        self._minutes: dict[int, int] = {}  # minute (ours) -> least r - t in it
        self._bound: int | None = None

    def observe(self, received_ms: int, stamped_ms: int) -> bool:
        """One frame pushed as it happened (a book, a bbo, a live fill or order
        update: never a replay); True if it widens the margin beyond `floor_ms`."""
        was_wide = self.margin_ms() > self._floor
        minute = received_ms // 60_000
        lag = received_ms - stamped_ms
        least = self._minutes.get(minute)
        if least is not None and lag >= least:
            return False
        self._minutes[minute] = lag
        if least is None:  # a new minute: forget those beyond the window
            for old in [m for m in self._minutes if m <= minute - self._window]:
                del self._minutes[old]
        self._bound = min(self._minutes.values())
        return not was_wide and self.margin_ms() > self._floor

    def behind_at_most_ms(self) -> int | None:
        """The bound over the window (negative: the exchange's clock is ahead of ours
        by at least that much); None before any frame."""
        return self._bound

    def margin_ms(self) -> int:
        bound = self._bound
        return self._floor if bound is None else min(max(self._floor, bound), MAX_MARGIN_MS)

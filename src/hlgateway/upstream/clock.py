"""Where a wallet's user stream starts, on the exchange's clock. Sans I/O.

Hyperliquid stamps every fill, order transition and ledger event with its own
clock; the gateway decides with its own when a stream starts (a subscribe) and
when a gap began (the last frame a link heard, the last poll). The two clocks
differ by some milliseconds, or by seconds on a badly kept host, either way.

The rule (docs/upstream.md, "Where a stream starts"): a stream delivers every
event stamped at or after its *start*, an exchange time, and none before it.

- A stream started by a subscribe (no position kept) starts `CLOCK_MARGIN_MS`
  before the gateway's clock said the subscribe happened: an event that happened
  after it is stamped later than that even if the exchange's clock runs behind
  ours by up to the margin. A subscriber may therefore also get events up to the
  margin older than its subscribe; never one twice (the ledgers key by id).
- A stream started again where it had been delivered to (a restart, a handover,
  a topic subscribed again) starts at that position: the exchange's time of the
  last event delivered, itself included (another event of the same millisecond
  may not have been), so no margin; the ledgers drop what was given before.
- What Hyperliquid pushes live after a subscription is active happened after the
  start, whatever its stamp: the start bounds only what is read back (a
  snapshot, REST after a gap, a poll).
- Reading back after a gap or for the next poll reaches `CLOCK_MARGIN_MS` before
  the last moment heard (our clock), never before the stream's start.
"""

from __future__ import annotations

# How far the exchange's clock may run behind ours (ms) with nothing lost.
CLOCK_MARGIN_MS = 2_000


def start_from(now_ms: int, margin_ms: int = CLOCK_MARGIN_MS) -> int:
    """The start (exchange time) of a stream subscribed at `now_ms` (our clock)."""
    return now_ms - margin_ms


def reach_back(heard_ms: int, start_ms: int, margin_ms: int = CLOCK_MARGIN_MS) -> int:
    """Where reading back from a moment last heard (`heard_ms`, our clock, or an
    exchange time) starts: the margin before it, never before the stream's start."""
    return max(heard_ms - margin_ms, start_ms)

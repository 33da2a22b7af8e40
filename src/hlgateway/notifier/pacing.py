"""Telegram's flood limits as a plain object with an injected clock (sans I/O).

Telegram allows about one message per second to a private chat, 20 a minute to a
group (spread out: one every 3 s) and 30 a second across the bot. A 429 answer
names `retry_after`: nothing more goes to that chat before it has passed. Every
request is counted when it starts, whatever its outcome, so a failed request
still spends its slot (Telegram counts it too).
"""

from __future__ import annotations

from dataclasses import dataclass

from hlgateway.ratelimit import SlidingWindow


@dataclass(frozen=True)
class Limits:
    private_interval: float = 1.0  # seconds between two messages to one private chat
    group_interval: float = 3.0  # 20 per minute, evenly
    global_per_second: int = 30
    # Kept on top of every interval and window: Telegram counts when requests
    # arrive, and two requests started 1 s apart may arrive a little closer.
    margin: float = 0.1


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; private chats positive."""
    return chat_id < 0


class Pacer:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._last: dict[int, float] = {}  # chat -> start of its last request
        self._held: dict[int, float] = {}  # chat -> no request before this (429)
        # Starts of requests within the last second (and the margin), bot-wide.
        self._recent = SlidingWindow(self.limits.global_per_second, 1.0 + self.limits.margin)

    def interval(self, chat_id: int) -> float:
        base = self.limits.group_interval if is_group(chat_id) else self.limits.private_interval
        return base + self.limits.margin

    def ready_at(self, chat_id: int, now: float) -> float:
        """The earliest time a request to `chat_id` may start."""
        at = now
        last = self._last.get(chat_id)
        if last is not None:
            at = max(at, last + self.interval(chat_id))
        held = self._held.get(chat_id)
        if held is not None:
            at = max(at, held)
        return max(at, self.global_ready_at(now))

    def global_ready_at(self, now: float) -> float:
        return self._recent.free_at(now)

    def start(self, chat_id: int, now: float) -> None:
        """A request to `chat_id` starts now (the caller checked `ready_at`)."""
        self._last[chat_id] = now
        self._recent.add(now)

    def restore(self, chat_id: int, last_start: float) -> None:
        """A request to `chat_id` started at `last_start` in an earlier run."""
        self._last[chat_id] = max(last_start, self._last.get(chat_id, last_start))

    def hold(self, chat_id: int, until: float) -> None:
        """A 429: nothing to this chat before `until`."""
        self._held[chat_id] = max(until, self._held.get(chat_id, until))

    def held_until(self, chat_id: int) -> float | None:
        return self._held.get(chat_id)

    def forget(self, chat_id: int) -> None:
        self._last.pop(chat_id, None)
        self._held.pop(chat_id, None)

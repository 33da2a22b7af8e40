"""Which wallets the simulator tracks (runs order flow for), and for how long.

A wallet is tracked while any link subscribes to one of its user streams, and
for ``track_grace`` seconds after the last one went away. With
``track_rest_queries``, an ``/info`` request about a wallet also tracks it for
the grace (a gateway polling over REST must see the wallet trade too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hlgateway.simulator.config import SimConfig
from hlgateway.simulator.subscriptions import ADDRESS, USER_KINDS, Subscription
from hlgateway.simulator.world import SimWorld

# Info requests about one wallet; with ``track_rest_queries`` they count as watching it.
USER_INFO_TYPES = frozenset(
    {
        "clearinghouseState",
        "openOrders",
        "frontendOpenOrders",
        "userFills",
        "userFillsByTime",
        "orderStatus",
        "historicalOrders",
        "userFunding",
        "userNonFundingLedgerUpdates",
        "spotClearinghouseState",
    }
)


class Tracking:
    def __init__(
        self, config: SimConfig, world: Callable[[], SimWorld], now: Callable[[], float]
    ) -> None:
        self._config = config
        self._world = world
        self._now = now
        self._user_refs: dict[str, int] = {}
        self._released: dict[str, float] = {}  # user -> loop time its last subscription went

    def retain(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0)
        self._user_refs[sub.user] = count + 1
        self._released.pop(sub.user, None)
        if count == 0:
            world = self._world()
            world.accounts.track(sub.user, world.now_ms)  # no-op within grace

    def release(self, sub: Subscription) -> None:
        if sub.user is None or sub.kind not in USER_KINDS:
            return
        count = self._user_refs.get(sub.user, 0) - 1
        if count > 0:
            self._user_refs[sub.user] = count
            return
        self._user_refs.pop(sub.user, None)
        if self._config.track_grace > 0:
            self._released[sub.user] = self._now()
        else:
            self._world().accounts.untrack(sub.user)

    def watch_query(self, body: Any) -> None:
        """With ``track_rest_queries``, an info request about a wallet tracks it for the grace."""
        if not self._config.track_rest_queries or not isinstance(body, dict):
            return
        user = body.get("user")
        if body.get("type") not in USER_INFO_TYPES or not isinstance(user, str):
            return
        if not ADDRESS.fullmatch(user):
            return  # handle_info answers the malformed request
        user = user.lower()
        if self._user_refs.get(user, 0) > 0:
            return  # subscribed: tracked anyway
        world = self._world()
        world.accounts.track(user, world.now_ms)
        self._released[user] = self._now()  # (re)start its grace

    def expire(self, now: float) -> None:
        grace = self._config.track_grace
        for user, since in list(self._released.items()):
            if now - since >= grace:
                del self._released[user]
                self._world().accounts.untrack(user)

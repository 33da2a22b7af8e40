"""What a client is subscribed to, keyed by channel + canonical params (sans I/O).

The seed's client keys its subscriptions by channel alone, so a second
`orderbook` subscription replaces the first and only one comes back after a
reconnect. Here every subscription is an `Entry` keyed by `(channel, params)`
in a normal form. Until the gateway confirms it, an entry is keyed by the params
as requested (normalized: keys sorted, empty values dropped, symbol lists sorted
and de-duplicated); the `subscribed` reply carries the gateway's canonical
params (symbols resolved, defaults filled), and the entry is re-keyed to them.
Two requests that turn out to be the same subscription (`["eth"]` and `["ETH"]`)
are merged then, since the gateway holds just one. Data messages carry the
canonical params, so they are routed by the same key.

Rooms are entries too, on channel `room` with params `{"room": R}`: the
gateway's room messages look like that, and rooms are restored the same way.

Each entry has handles (one per `subscribe()` call, or any hashable token);
the gateway is asked to unsubscribe when the last handle goes. Each entry also
has a `Cursor`: its place in a lossless stream, sent as `since` when the entry
is restored, and seeded from the application's stored position if it gave one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from hlgateway.client.positions import Cursor
from hlgateway.protocol.positions import Position

ROOM = "room"
# Channels whose every message is a full snapshot: the latest one is all that a
# late joiner of an entry needs. (`candles` too, once its updates are folded into
# the last whole series: `latest_candles`.)
SNAPSHOT_CHANNELS = frozenset(
    {"prices", "orderbook", "account_updates", "bbo", "asset_context", "candles"}
)
CANDLES_KEPT = 500


def latest_candles(whole: Any, update: Any) -> Any:
    """A `candles` series (the data of the first message) with an update folded in:
    a candle replaces the one that opened at the same time, or comes after."""
    if not isinstance(whole, dict) or not isinstance(update, dict):
        return update
    by_open = {c["t"]: c for c in whole.get("candles", ())}
    by_open.update({c["t"]: c for c in update.get("candles", ())})
    series = [by_open[t] for t in sorted(by_open)][-CANDLES_KEPT:]
    return {**update, "candles": series}


Json = dict[str, Any]
SubKey = tuple[str, str]
H = TypeVar("H")

_encoder = msgspec.json.Encoder(order="sorted")


def normalize(channel: str, params: Json | None) -> Json:
    """The client's normal form of a request's params (not resolved against the exchange)."""
    out: Json = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if name == "symbols" and isinstance(value, list | tuple):
            if not value:
                continue  # no symbols = every market, the same as none
            out[name] = sorted({str(s) for s in value})
            continue
        if name == "throttle" and value == 0:
            continue  # 0 is no throttle
        out[name] = value
    return dict(sorted(out.items()))


def key_of(channel: str, params: Json | None) -> SubKey:
    return channel, _encoder.encode(normalize(channel, params)).decode()


@dataclass(eq=False)
class Entry(Generic[H]):
    """One subscription as the gateway sees it."""

    channel: str
    params: Json  # sent on (re)subscribe: as requested, then the gateway's canonical form
    key: SubKey
    handles: list[H] = field(default_factory=list)
    confirmed: bool = False  # the gateway has answered `subscribed` at least once
    live: bool = False  # subscribed on the current connection
    in_flight: bool = False  # a subscribe request awaits its reply on this connection
    latest: Any = None  # last data message, for snapshot channels
    cursor: Cursor = field(default_factory=Cursor)  # place in a lossless stream
    refusals: int = 0  # passing refusals in a row (UPSTREAM_UNAVAILABLE, ...)

    @property
    def is_room(self) -> bool:
        return self.channel == ROOM

    @property
    def orphan(self) -> bool:
        """Released by every handle while its subscribe was in flight."""
        return not self.handles


@dataclass(frozen=True, slots=True)
class Added(Generic[H]):
    entry: Entry[H]
    send: bool  # a new entry: ask the gateway (now if connected, else on reconnect)


class Registry(Generic[H]):
    def __init__(self) -> None:
        self._entries: dict[SubKey, Entry[H]] = {}
        self._orphans: list[Entry[H]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry[H]]:
        return iter(list(self._entries.values()))

    def get(self, channel: str, params: Json | None) -> Entry[H] | None:
        return self._entries.get(key_of(channel, params))

    def add(
        self, channel: str, params: Json | None, handle: H, since: Position | None = None
    ) -> Added[H]:
        """Add a handle. `since` seeds a new entry's position (ignored for one held already:
        it has its own place in the stream)."""
        key = key_of(channel, params)
        entry = self._entries.get(key)
        if entry is not None:
            entry.handles.append(handle)
            return Added(entry, send=False)
        entry = Entry(channel, normalize(channel, params), key, [handle])
        entry.cursor.position = since
        self._entries[key] = entry
        return Added(entry, send=True)

    def confirm(self, entry: Entry[H], canonical: Json) -> Entry[H] | None:
        """The gateway answered `subscribed` with `canonical` params.

        Returns the entry that now holds the handles (this one, or the one it
        merged into), or None for an orphan (see `orphan_confirmed`).
        """
        entry.in_flight = False
        if entry.orphan:
            return None
        new_key = key_of(entry.channel, canonical)
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        other = self._entries.get(new_key)
        if other is not None and other is not entry:
            # Positions: the surviving entry keeps its own (the two were one stream).
            other.handles.extend(entry.handles)
            entry.handles.clear()
            other.confirmed = True
            other.live = True
            return other
        entry.key = new_key
        entry.params = normalize(entry.channel, canonical)
        entry.confirmed = True
        entry.live = True
        self._entries[new_key] = entry
        return entry

    def orphan_confirmed(self, entry: Entry[H], canonical: Json) -> bool:
        """An orphan's subscribe went through: True if the gateway must be asked to drop it
        (no live entry shares its canonical params)."""
        if entry in self._orphans:
            self._orphans.remove(entry)
        other = self._entries.get(key_of(entry.channel, canonical))
        return other is None

    def refuse(self, entry: Entry[H]) -> list[H]:
        """The gateway refused the entry: forget it; returns its handles."""
        entry.in_flight = False
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        if entry in self._orphans:
            self._orphans.remove(entry)
        handles = list(entry.handles)
        entry.handles.clear()
        return handles

    def release(self, handle: H) -> Entry[H] | None:
        """Drop a handle. Returns the entry if that was its last handle and the gateway
        should be asked to unsubscribe now (it is live and confirmed)."""
        for entry in self._entries.values():
            if handle in entry.handles:
                entry.handles.remove(handle)
                if entry.handles:
                    return None
                del self._entries[entry.key]
                if entry.in_flight:
                    # The reply will say which canonical subscription this was.
                    self._orphans.append(entry)
                    return None
                return entry if entry.live else None
        return None

    def holding(self, handle: H) -> Entry[H] | None:
        """The entry `handle` belongs to, if it is still subscribed."""
        return next((e for e in self._entries.values() if handle in e.handles), None)

    def route(self, channel: str, params: Json | None) -> Entry[H] | None:
        """The entry a data message (carrying canonical params) belongs to."""
        return self._entries.get(key_of(channel, params))

    def disconnected(self) -> None:
        """The link dropped: nothing is live, nothing is in flight, orphans are moot."""
        for entry in self._entries.values():
            entry.live = False
            entry.in_flight = False
            entry.cursor.disconnected()
        self._orphans.clear()

    def clear(self) -> list[Entry[H]]:
        entries = list(self._entries.values())
        self._entries.clear()
        self._orphans.clear()
        return entries

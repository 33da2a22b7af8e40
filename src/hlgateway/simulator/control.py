"""``/control/*``: the simulator's chaos and inspection API over HTTP (JSON).

Served only with ``SimConfig(control=True)`` (``hlgateway simulate --control``).
Each endpoint calls the ``Simulator`` method of the same name; see those for
the semantics. Every answer is JSON; a malformed or unknown request gets 400
``{"error": "..."}``, and nothing sent here can take the simulator down.

- ``GET /control/links`` -> ``{"links": [{id, remote, port, subscriptions, stalled,
  silent}]}``
- ``POST /control/drop`` ``{}`` or ``{"link": id}`` -> ``{"dropped": n}``
- ``POST /control/stall`` ``{<subscription fields>, "seconds": s, "link"?: id}`` or
  ``{"all": true, "seconds": s, "link"?: id}`` (pongs too) -> ``{"stalled": n, "links": k}``
- ``POST /control/garbage`` ``{"count"?: n (default 4), "link"?: id}`` -> ``{"sent": n}``
- ``POST /control/refuse`` ``{"seconds": s}`` -> ``{"until": ms}``
- ``POST /control/restart`` ``{"down"?: s (default 1.0)}`` -> ``{"dropped": n, "until": ms}``
- ``GET /control/ledger?user=0x..`` -> ``{user, tracked, trackedSince, fills, orders}``
- ``GET /control/stats`` -> counters (``Simulator.stats``)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from hlgateway.simulator.server import Simulator

log = logging.getLogger("hlgateway.simulator.control")

MAX_BODY = 64 * 1024
DEFAULT_GARBAGE = 4  # one of each kind the brief names
DEFAULT_DOWN = 1.0
_decode = msgspec.json.Decoder().decode


class ControlError(ValueError):
    """A bad control request; ``str()`` is the message answered with 400."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(unknown)}")


def _link(body: Mapping[str, Any]) -> int | None:
    link = body.get("link")
    if link is not None and (isinstance(link, bool) or not isinstance(link, int)):
        raise ControlError("link must be an integer link id")
    return link


def _seconds(body: Mapping[str, Any], name: str, default: float | None = None) -> float:
    if name not in body:
        if default is None:
            raise ControlError(f"missing field: {name}")
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{name} must be a number of seconds")
    return float(value)


Route = Callable[["Simulator", Mapping[str, Any], Mapping[str, str]], Any]


def _links(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    return {"links": sim.links()}


def _drop(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    _only(body, {"link"})
    return {"dropped": sim.drop(_link(body))}


def _stall(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    seconds = _seconds(body, "seconds")
    link = _link(body)
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise ControlError("all must be true or false")
    match = {k: v for k, v in body.items() if k not in ("seconds", "link", "all")}
    for key, value in match.items():
        if isinstance(value, dict | list):
            raise ControlError(f"match field {key} must be a string, number, bool or null")
    if everything and match:
        raise ControlError('"all" stalls every stream: give no subscription fields with it')
    if not everything and not match:
        raise ControlError('give subscription fields to match (e.g. "type"), or "all": true')
    return sim.stall_report(match, seconds, link, silence_pongs=everything)


def _garbage(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    _only(body, {"link", "count"})
    count = body.get("count", DEFAULT_GARBAGE)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ControlError("count must be an integer")
    return {"sent": sim.garbage(count, _link(body))}


def _refuse(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    _only(body, {"seconds"})
    return {"until": sim.refuse(_seconds(body, "seconds"))}


def _restart(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    _only(body, {"down"})
    return sim.restart(_seconds(body, "down", DEFAULT_DOWN))


def _ledger(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    _only(query, {"user"})
    user = query.get("user")
    if user is None:
        raise ControlError("missing query parameter: user")
    return sim.ledger(user)


def _stats(sim: Simulator, body: Mapping[str, Any], query: Mapping[str, str]) -> Any:
    return sim.stats()


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "links"): _links,
    ("POST", "drop"): _drop,
    ("POST", "stall"): _stall,
    ("POST", "garbage"): _garbage,
    ("POST", "refuse"): _refuse,
    ("POST", "restart"): _restart,
    ("GET", "ledger"): _ledger,
    ("GET", "stats"): _stats,
}


async def _body(request: web.Request) -> Mapping[str, Any]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ControlError("request body too large")
    if not raw.strip():
        return {}
    try:
        body = _decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ControlError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


async def control_handler(sim: Simulator, request: web.Request) -> web.Response:
    op = request.match_info.get("op", "")
    try:
        route = ROUTES.get((request.method, op))
        if route is None:
            known = ", ".join(f"{m} /control/{o}" for m, o in ROUTES)
            raise ControlError(
                f"unknown control request {request.method} /control/{op[:100]}; known: {known}"
            )
        body = await _body(request) if request.method == "POST" else {}
        return _json(route(sim, body, request.query))
    except ValueError as exc:  # ControlError, and the Simulator methods' own checks
        return _json({"error": str(exc)}, status=400)
    except Exception:
        log.exception("control request %s /control/%.100s failed", request.method, op)
        return _json({"error": "internal error"}, status=500)

"""The ledger of a wallet: everything the simulator produced for it, for checking
a gateway's exactly-once delivery against (``/control/ledger``)."""

from __future__ import annotations

from typing import Any

from hlgateway.simulator import wire
from hlgateway.simulator.subscriptions import ADDRESS
from hlgateway.simulator.world import SimWorld


def wallet_ledger(world: SimWorld, user: str) -> dict[str, Any]:
    """Every fill, orderUpdates transition, funding payment and ledger update the
    simulator produced for ``user``.

    Entries are oldest first and recorded whether or not anyone was subscribed.
    The invented pre-history of a wallet's first tracking is included and
    marked: fills with ``time <= trackedSince`` and orders with
    ``"prehistory": true``. Caps: the newest 10000 fills and 20000 transitions.
    """
    if not isinstance(user, str) or not ADDRESS.fullmatch(user):
        raise ValueError("user must be an address: 0x and 40 hex digits")
    wallet = world.accounts.wallet(user)
    if wallet is None:
        return {
            "user": user.lower(),
            "tracked": False,
            "trackedSince": None,
            "fills": [],
            "orders": [],
            "fundings": [],
            "ledgerUpdates": [],
        }
    since = wallet.tracked_since_ms
    orders = []
    for update in wallet.order_history():
        row = wire.ledger_order(update)
        row["prehistory"] = update.status_timestamp <= since
        orders.append(row)
    return {
        "user": wallet.address,
        "tracked": wallet.tracked,
        "trackedSince": since,
        "fills": [wire.fill(f) for f in wallet.fills()],
        "orders": orders,
        "fundings": [wire.ws_funding(p) for p in wallet.fundings()],
        "ledgerUpdates": [wire.ledger_update(u) for u in wallet.ledger_updates()],
    }

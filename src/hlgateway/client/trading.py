"""A small trading helper: orders signed with the official SDK's signing functions,
relayed by the gateway's `post`.

The application holds an agent (API wallet) key that its account approved on
Hyperliquid; `Trader` signs with it here, and the key never leaves the process:
only the signature travels, inside the `post`. Every order carries a `cloid`
(made here when not given), so an order whose answer was lost can be found again
(`user_orders` carries each order's cloid). Nonces are milliseconds, never
twice. Needs the official SDK: `pip install 'hlgateway[trading]'`.

```python
trader = await Trader.create(client, AGENT_KEY, "http://127.0.0.1:8080")
placed = await trader.order("ETH", True, 0.1, 3000.0)          # Gtc, with a fresh cloid
await trader.modify(placed.cloid, "ETH", True, 0.1, 3001.0)   # by cloid or oid
await trader.cancel_by_cloid("ETH", placed.cloid)
```
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from hlgateway.client.connection import GatewayClient
from hlgateway.client.errors import ConnectionLost
from hlgateway.client.messages import PostResult

try:  # the official SDK: signing exactly as Hyperliquid expects it
    import eth_account
    from hyperliquid.utils.signing import (
        float_to_wire,
        order_type_to_wire,
        order_wires_to_order_action,
        sign_l1_action,
    )
except ImportError as exc:  # pragma: no cover - the SDK is in requirements.lock
    raise ImportError(
        "hlgateway.client.trading needs Hyperliquid's SDK: pip install 'hlgateway[trading]'"
    ) from exc

Tif = Literal["Gtc", "Ioc", "Alo"]
ANSWER_LOST = (
    "the link to the gateway dropped before the answer: the order may or may not have "
    "been placed; look it up by its cloid"
)


@dataclass(frozen=True)
class Sent:
    """What a signed action came to: the gateway's `post_result` (status, response), and
    for an order, the cloid it carries (look it up by it when the answer was lost)."""

    status: str
    response: Any
    cloid: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def statuses(self) -> list[Any]:
        return PostResult(status=self.status, response=self.response).statuses

    @property
    def oid(self) -> int | None:
        """The order's id when it rests or filled."""
        for status in self.statuses:
            if isinstance(status, dict):
                for key in ("resting", "filled"):
                    body = status.get(key)
                    if isinstance(body, dict) and isinstance(body.get("oid"), int):
                        oid: int = body["oid"]
                        return oid
        return None

    @property
    def error(self) -> str | None:
        """Why it failed: the action's error, or its first order's."""
        if not self.ok:
            return str(self.response)
        for status in self.statuses:
            if isinstance(status, dict) and "error" in status:
                return str(status["error"])
        return None


class Trader:
    def __init__(
        self,
        client: GatewayClient,
        agent_key: str,
        *,
        assets: Mapping[str, int],
        mainnet: bool,
        vault_address: str | None = None,
    ) -> None:
        self._client = client
        self._agent = eth_account.Account.from_key(agent_key)
        self._assets = dict(assets)
        self._mainnet = mainnet
        self._vault = vault_address
        self._last_nonce = 0

    @classmethod
    async def create(cls, client: GatewayClient, agent_key: str, gateway_http: str) -> Trader:
        """A trader for the gateway at `gateway_http` (network and assets: `/api/trading`)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(gateway_http.rstrip("/") + "/api/trading") as resp,
        ):
            resp.raise_for_status()
            info = await resp.json()
        return cls(client, agent_key, assets=info["assets"], mainnet=bool(info["mainnet"]))

    @property
    def agent_address(self) -> str:
        """The address the agent key signs as (what the account approved)."""
        address: str = self._agent.address
        return address

    @staticmethod
    def new_cloid() -> str:
        return "0x" + secrets.token_hex(16)

    def next_nonce(self) -> int:
        """Milliseconds since the epoch, and never the same one twice."""
        self._last_nonce = max(self._last_nonce + 1, time.time_ns() // 1_000_000)
        return self._last_nonce

    def asset(self, coin: str) -> int:
        try:
            return self._assets[coin]
        except KeyError:
            raise ValueError(f"{coin!r} is not listed by this gateway's upstream") from None

    # -- orders ---------------------------------------------------------------------
    def order_wire(
        self,
        coin: str,
        is_buy: bool,
        sz: float,
        px: float,
        *,
        tif: Tif = "Gtc",
        reduce_only: bool = False,
        cloid: str | None = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One order in Hyperliquid's wire form (the SDK's field order)."""
        order_type: Any = {"trigger": dict(trigger)} if trigger else {"limit": {"tif": tif}}
        return {
            "a": self.asset(coin),
            "b": is_buy,
            "p": float_to_wire(px),
            "s": float_to_wire(sz),
            "r": reduce_only,
            "t": order_type_to_wire(order_type),
            "c": cloid or self.new_cloid(),
        }

    async def order(
        self,
        coin: str,
        is_buy: bool,
        sz: float,
        px: float,
        *,
        tif: Tif = "Gtc",
        reduce_only: bool = False,
        cloid: str | None = None,
        nonce: int | None = None,
        expires_after: int | None = None,
    ) -> Sent:
        """A limit order (Gtc, Ioc for a marketable one, Alo to only add liquidity).
        `nonce` and `expires_after`: see `send`."""
        wire = self.order_wire(coin, is_buy, sz, px, tif=tif, reduce_only=reduce_only, cloid=cloid)
        action = order_wires_to_order_action([wire])
        return await self.send(action, cloid=wire["c"], nonce=nonce, expires_after=expires_after)

    async def modify(
        self,
        oid_or_cloid: int | str,
        coin: str,
        is_buy: bool,
        sz: float,
        px: float,
        *,
        tif: Tif = "Gtc",
        reduce_only: bool = False,
        cloid: str | None = None,
    ) -> Sent:
        """Replace an open order (Hyperliquid gives it a new oid). It keeps its cloid when
        modified by cloid and no other is given."""
        if cloid is None and isinstance(oid_or_cloid, str):
            cloid = oid_or_cloid
        wire = self.order_wire(coin, is_buy, sz, px, tif=tif, reduce_only=reduce_only, cloid=cloid)
        action = {"type": "batchModify", "modifies": [{"oid": oid_or_cloid, "order": wire}]}
        return await self.send(action, cloid=wire["c"])

    async def cancel(self, coin: str, oid: int) -> Sent:
        return await self.send({"type": "cancel", "cancels": [{"a": self.asset(coin), "o": oid}]})

    async def cancel_by_cloid(self, coin: str, cloid: str) -> Sent:
        cancel = {"asset": self.asset(coin), "cloid": cloid}
        return await self.send({"type": "cancelByCloid", "cancels": [cancel]})

    async def update_leverage(self, coin: str, leverage: int, *, cross: bool = True) -> Sent:
        action = {
            "type": "updateLeverage",
            "asset": self.asset(coin),
            "isCross": cross,
            "leverage": leverage,
        }
        return await self.send(action)

    async def schedule_cancel(self, at_ms: int | None) -> Sent:
        """Cancel every open order at `at_ms` (at least 5 s ahead); None unsets it."""
        action: dict[str, Any] = {"type": "scheduleCancel"}
        if at_ms is not None:
            action["time"] = at_ms
        return await self.send(action)

    async def send(
        self,
        action: dict[str, Any],
        *,
        cloid: str | None = None,
        nonce: int | None = None,
        expires_after: int | None = None,
    ) -> Sent:
        """Sign an L1 action with the agent key and relay it. A refusal by the gateway
        raises RequestFailed (nothing was sent).

        `nonce`: the caller's own (ms), to send the very same action again safely: the
        exchange takes a nonce once per signer. `expires_after` (ms): the exchange refuses
        the action after it, so a copy that arrives late is never executed."""
        nonce = self.next_nonce() if nonce is None else nonce
        signature = sign_l1_action(
            self._agent, action, self._vault, nonce, expires_after, self._mainnet
        )
        request: dict[str, Any] = {"action": action, "nonce": nonce, "signature": signature}
        if self._vault is not None:
            request["vaultAddress"] = self._vault
        if expires_after is not None:
            request["expiresAfter"] = expires_after
        try:
            result = await self._client.post(request)
        except ConnectionLost:
            return Sent("err", ANSWER_LOST, cloid)
        return Sent(result.status, result.response, cloid)

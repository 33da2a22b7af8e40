"""What trading needs to know from the exchange and the gateway (reads only).

Reads go to the exchange's info API (the one the notifier reloads fills from):
who an agent belongs to (`userRole`), the perps' size steps and leverage caps
(`meta`), the spot pairs' tokens and size steps (`spotMeta`), a wallet's spot
balances (`spotClearinghouseState`), its open orders, an order by its cloid
(`orderStatus`). What the
gateway signs for (the asset ids and the network) comes from the gateway's own
`GET /api/trading`. Orders themselves go through the gateway's `post` (trading.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from hlgateway.notifier.preview import Market

MARKETS_TTL = 600.0  # s: listings change rarely


class ExchangeError(RuntimeError):
    """The info API or the gateway could not be asked; the message is for the chat."""


class ExchangeInfo:
    def __init__(self, gateway_http: str, info_url: Callable[[], str | None]) -> None:
        self.gateway_http = gateway_http.rstrip("/")
        self._info_url = info_url  # the one given, else the gateway's (its welcome)
        self._session: aiohttp.ClientSession | None = None
        self._markets: dict[str, Market] = {}
        self._aliases: dict[str, str] = {}  # the exchange's spot names (@107) -> symbols
        self._mainnet = False
        self._fetched = 0.0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, body: dict[str, Any]) -> Any:
        info_url = self._info_url()
        if info_url is None:
            raise ExchangeError("the exchange's info API is not known yet; try again shortly")
        return await self._request("POST", info_url, body)

    async def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method, url, json=body, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                resp.raise_for_status()
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ExchangeError(f"the exchange could not be asked ({type(exc).__name__})") from None

    # -- markets ----------------------------------------------------------------------
    async def markets(self) -> dict[str, Market]:
        if not self._markets or time.monotonic() - self._fetched > MARKETS_TTL:
            trading = await self._request("GET", self.gateway_http + "/api/trading")
            meta = await self._post({"type": "meta"})
            spot_meta = await self._post({"type": "spotMeta"})
            assets: dict[str, int] = trading["assets"]
            self._mainnet = bool(trading["mainnet"])
            markets = {
                coin["name"]: Market(
                    coin["name"],
                    assets[coin["name"]],
                    int(coin["szDecimals"]),
                    int(coin.get("maxLeverage", 50)),
                )
                for coin in meta["universe"]
                if coin["name"] in assets and not coin.get("isDelisted")
            }
            aliases: dict[str, str] = {}
            for pair, market in _spot_markets(spot_meta, assets):
                markets[market.name] = market
                aliases[pair] = market.name
            self._markets, self._aliases = markets, aliases
            self._fetched = time.monotonic()
        return self._markets

    async def market(self, coin: str) -> Market:
        found = (await self.markets()).get(coin)
        if found is None:
            raise ExchangeError(
                f"Unknown market: {coin} (a perp like ETH, or a spot pair like HYPE/USDC)"
            )
        return found

    def symbol(self, coin: str) -> str:
        """The gateway's name for what the exchange calls `coin` (`@107` -> `HYPE/USDC`)."""
        return self._aliases.get(coin, coin)

    @property
    def mainnet(self) -> bool:
        return self._mainnet

    def assets(self) -> dict[str, int]:
        return {m.name: m.asset for m in self._markets.values()}

    # -- accounts and orders ----------------------------------------------------------
    async def agent_owner(self, agent: str) -> str | None:
        """The account that approved `agent` as its API wallet, if any."""
        role = await self._post({"type": "userRole", "user": agent})
        if isinstance(role, dict) and role.get("role") == "agent":
            owner = (role.get("data") or {}).get("user")
            return str(owner).lower() if owner else None
        return None

    async def spot_available(self, wallet: str, token: str) -> Decimal:
        """What of `token` the wallet can spend: its spot balance less what its resting
        orders hold."""
        state = await self._post({"type": "spotClearinghouseState", "user": wallet})
        for row in state.get("balances", []) if isinstance(state, dict) else []:
            if isinstance(row, dict) and row.get("coin") == token:
                try:
                    return Decimal(str(row.get("total"))) - Decimal(str(row.get("hold", "0")))
                except InvalidOperation:
                    break
        return Decimal(0)

    async def open_orders(self, wallet: str) -> list[dict[str, Any]]:
        orders = await self._post({"type": "frontendOpenOrders", "user": wallet})
        return [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []

    async def order_status(self, wallet: str, cloid: str) -> dict[str, Any] | None:
        """The order `cloid` names, if the exchange knows it (placed, whatever came of it)."""
        found = await self._post({"type": "orderStatus", "user": wallet, "oid": cloid})
        if isinstance(found, dict) and found.get("status") == "order":
            order = found.get("order")
            return order if isinstance(order, dict) else None
        return None


def _spot_markets(spot_meta: Any, assets: dict[str, int]) -> Iterator[tuple[str, Market]]:
    """(the exchange's pair name, the market) for every spot pair the gateway signs for,
    named BASE/QUOTE from the pair's tokens as the gateway names it."""
    if not isinstance(spot_meta, dict):
        return
    tokens = {t.get("index"): t for t in spot_meta.get("tokens", []) if isinstance(t, dict)}
    for pair in spot_meta.get("universe", []):
        ids = pair.get("tokens") if isinstance(pair, dict) else None
        if not isinstance(ids, list) or len(ids) != 2:
            continue
        base, quote = tokens.get(ids[0]), tokens.get(ids[1])
        if base is None or quote is None:
            continue
        symbol = f"{base['name']}/{quote['name']}"
        if symbol in assets:
            market = Market(
                symbol, assets[symbol], int(base["szDecimals"]), 0, spot=True, base=base["name"]
            )
            yield str(pair.get("name", symbol)), market

"""``POST /exchange`` request handling, shared by REST and WebSocket ``post``. Sans I/O.

The checks run in Hyperliquid's order: the body and its action must
deserialize (else HTTP 422, "Failed to deserialize the JSON body into the
target type: ..."); the signature recovers a signer; the signer must be an
account or an API wallet an account approved ("User or API Wallet 0x... does
not exist."); the nonce must be fresh for that signer and ``expiresAfter`` not
passed. Only then does the action run and its nonce count as used: a request
refused before that changes nothing. Answers have Hyperliquid's shapes:
``{"status": "ok", "response": {"type": "order" | "cancel" | "default", ...}}``
or ``{"status": "err", "response": "<text>"}``.

An API wallet (agent) acts for the account that approved it: its L1 actions
trade that account, and its nonces are its own. Approving a new unnamed agent
(or a named one of the same name) retires the previous one and forgets its
nonces, as Hyperliquid prunes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hlgateway.simulator.accounts import AccountsEngine, Wallet, WalletActivity
from hlgateway.simulator.actions import (
    ActionError,
    ApproveAgent,
    CancelByCloid,
    CancelOrders,
    ModifyOrders,
    Noop,
    ParsedAction,
    PlaceOrders,
    Request,
    ScheduleCancel,
    TwapCancel,
    TwapOrder,
    Unsupported,
    UpdateIsolatedMargin,
    UpdateLeverage,
    UsdSend,
    Withdraw,
    parse_action,
)
from hlgateway.simulator.market import CoinSpec, MarketModel, Trade
from hlgateway.simulator.matching import Events, Matcher, Status
from hlgateway.simulator.nonces import NonceError, Nonces
from hlgateway.simulator.signing import (
    ADDRESS,
    Signature,
    SignatureError,
    recover_l1,
    recover_user_signed,
)

DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
WITHDRAW_FEE = Decimal(1)
USD_UNITS = Decimal(1_000_000)  # updateIsolatedMargin's ntli: USDC with 6 decimals
ZERO = Decimal(0)
_BODY_FIELDS = frozenset({"action", "nonce", "signature", "vaultAddress", "expiresAfter"})


@dataclass(frozen=True)
class ExchangeResult:
    """An answer: HTTP status and body (JSON for 200, text otherwise), and what changed."""

    status: int
    body: Any
    activities: list[WalletActivity] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)


def ok(response: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "response": response}


def err(text: str) -> dict[str, Any]:
    return {"status": "err", "response": text}


DEFAULT = ok({"type": "default"})


class _Refused(Exception):
    """An action refused as a whole: ``{"status": "err"}`` with this text."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    parsed: ParsedAction
    nonce: int
    signature: Signature
    vault: str | None
    expires_after: int | None


class Exchange:
    def __init__(
        self,
        market: MarketModel,
        accounts: AccountsEngine,
        matcher: Matcher,
        *,
        mainnet: bool = False,
        assets: Mapping[int, CoinSpec] | None = None,
    ) -> None:
        self._market = market
        # Hyperliquid's asset numbers (builder-dex perps from 110000); by default
        # the market's coins in listing order.
        self._assets = dict(enumerate(market.coins)) if assets is None else dict(assets)
        self._accounts = accounts
        self._matcher = matcher
        self.mainnet = mainnet  # which network signatures are checked for
        self.nonces = Nonces()
        self._agents: dict[str, tuple[str, str]] = {}  # agent -> (account, name)

    def agents_of(self, account: str) -> dict[str, str]:
        """``account``'s API wallets: address -> name ("" for the unnamed one)."""
        account = account.lower()
        return {agent: name for agent, (owner, name) in self._agents.items() if owner == account}

    def owner_of(self, agent: str) -> str | None:
        """The account that approved ``agent`` as its API wallet, if any."""
        approved = self._agents.get(agent.lower())
        return None if approved is None else approved[0]

    def handle(self, body: Any, now_ms: int) -> ExchangeResult:
        """Answer one ``/exchange`` body at model time ``now_ms``."""
        try:
            envelope = _envelope(body)
        except (ActionError, SignatureError) as exc:
            return ExchangeResult(422, f"{DESERIALIZE_ERROR}: {exc}")
        try:
            account, signer = self._authorize(envelope, now_ms)
            self._check_request(envelope.parsed.request)
        except _Refused as exc:
            return ExchangeResult(200, err(str(exc)))
        self.nonces.use(signer, envelope.nonce)
        events = Events()
        try:
            answer = self._run(envelope.parsed.request, account, now_ms, events)
        except _Refused as exc:
            answer = err(str(exc))
        return ExchangeResult(200, answer, events.activities(), events.trades)

    # -- who is asking -------------------------------------------------------------
    def _authorize(self, envelope: _Envelope, now_ms: int) -> tuple[Wallet, str]:
        """The account that acts and the signer whose nonce is spent; or _Refused."""
        parsed = envelope.parsed
        try:
            if parsed.user_signed:
                kind = str(parsed.canonical["type"])
                signer = recover_user_signed(
                    kind, parsed.canonical, envelope.signature, mainnet=self.mainnet
                )
            else:
                signer = recover_l1(
                    parsed.canonical,
                    envelope.signature,
                    vault_address=envelope.vault,
                    nonce=envelope.nonce,
                    expires_after=envelope.expires_after,
                    mainnet=self.mainnet,
                )
        except SignatureError as exc:
            raise _Refused(f"Invalid signature: {exc}") from None
        agent = self._agents.get(signer)
        owner = agent[0] if agent is not None and not parsed.user_signed else signer
        wallet = self._accounts.wallet(owner)
        if wallet is None:
            raise _Refused(f"User or API Wallet {signer} does not exist.")
        if envelope.vault is not None:
            raise _Refused(f"Vault not registered: {envelope.vault} (vaults are not simulated)")
        if envelope.expires_after is not None:
            if parsed.user_signed:
                raise _Refused("expiresAfter is not supported for user-signed actions")
            if envelope.expires_after < now_ms:
                raise _Refused("Action already expired")
        if parsed.nonce_field is not None and parsed.nonce_field != envelope.nonce:
            raise _Refused("Invalid nonce: the action's nonce differs from the request's")
        try:
            self.nonces.check(signer, envelope.nonce, now_ms)
        except NonceError as exc:
            raise _Refused(str(exc)) from None
        return wallet, signer

    def _coin(self, asset: int) -> CoinSpec:
        coin = self._assets.get(asset)
        if coin is not None:
            return coin
        raise _Refused(f"Unknown asset: {asset} is not listed")

    def _check_request(self, request: Request) -> None:
        """Refusals that depend on the world, not on the account: before the nonce is spent."""
        assets: list[int] = []
        match request:
            case PlaceOrders(orders=orders):
                if not orders:
                    raise _Refused("Empty batch of orders")
                assets = [o.asset for o in orders]
            case CancelOrders(cancels=cancels) | CancelByCloid(cancels=cancels):
                if not cancels:
                    raise _Refused("Empty batch of cancels")
                assets = [a for a, _ in cancels]
            case ModifyOrders(modifies=modifies):
                if not modifies:
                    raise _Refused("Empty batch of modifies")
                assets = [spec.asset for _, spec in modifies]
            case UpdateLeverage(asset=asset) | UpdateIsolatedMargin(asset=asset):
                assets = [asset]
            case TwapOrder(asset=asset) | TwapCancel(asset=asset):
                assets = [asset]
            case Unsupported(kind=kind):
                raise _Refused(f"The simulator does not support {kind} actions")
        for asset in assets:
            self._coin(asset)

    # -- what it does ---------------------------------------------------------------
    def _run(self, request: Request, wallet: Wallet, now_ms: int, events: Events) -> dict[str, Any]:
        matcher = self._matcher
        match request:
            case PlaceOrders(orders=orders, grouping=grouping):
                statuses: list[Status] = []
                parent_filled = False
                for spec in orders:
                    status = matcher.place(wallet, spec, self._coin(spec.asset), now_ms, events)
                    if grouping != "na" and spec.trigger is not None and isinstance(status, dict):
                        if "resting" in status:  # a TP/SL child of a grouped order
                            status = "waitingForTrigger" if parent_filled else "waitingForFill"
                    elif isinstance(status, dict) and "filled" in status:
                        parent_filled = True
                    statuses.append(status)
                return ok({"type": "order", "data": {"statuses": statuses}})
            case CancelOrders(cancels=cancels):
                statuses = [
                    matcher.cancel(wallet, self._coin(a).name, oid, now_ms, events)
                    for a, oid in cancels
                ]
                return ok({"type": "cancel", "data": {"statuses": statuses}})
            case CancelByCloid(cancels=by_cloid):
                statuses = [
                    matcher.cancel(wallet, self._coin(a).name, cloid, now_ms, events)
                    for a, cloid in by_cloid
                ]
                return ok({"type": "cancel", "data": {"statuses": statuses}})
            case ModifyOrders(modifies=modifies, batch=batch):
                statuses = [
                    matcher.modify(wallet, key, spec, self._coin(spec.asset), now_ms, events)
                    for key, spec in modifies
                ]
                if batch:
                    return ok({"type": "order", "data": {"statuses": statuses}})
                status = statuses[0]
                if isinstance(status, dict) and "error" in status:
                    return err(str(status["error"]))
                return DEFAULT
            case UpdateLeverage(asset=asset, is_cross=is_cross, leverage=leverage):
                self._update_leverage(wallet, self._coin(asset), is_cross, leverage, now_ms)
                return DEFAULT
            case UpdateIsolatedMargin(asset=asset, ntli=ntli):
                self._update_isolated_margin(wallet, self._coin(asset), ntli, now_ms)
                return DEFAULT
            case TwapOrder(asset=asset):
                status = matcher.place_twap(wallet, request, self._coin(asset), now_ms, events)
                return ok({"type": "twapOrder", "data": {"status": status}})
            case TwapCancel(asset=asset, twap_id=twap_id):
                coin = self._coin(asset).name
                status = matcher.cancel_twap(wallet, coin, twap_id, now_ms, events)
                return ok({"type": "twapCancel", "data": {"status": status}})
            case ScheduleCancel(time=when):
                problem = matcher.schedule_cancel(wallet, when, now_ms)
                if problem is not None:
                    raise _Refused(problem)
                return DEFAULT
            case Noop():
                return DEFAULT
            case ApproveAgent(agent=agent, name=name):
                return self._approve(wallet, agent, name)
            case UsdSend(destination=destination, amount=amount):
                self._debit(wallet, amount, now_ms)
                self._accounts.fund(destination, amount, now_ms)
                return DEFAULT
            case Withdraw(amount=amount):
                if amount <= WITHDRAW_FEE:
                    raise _Refused("Withdrawal amount must exceed the $1 fee")
                self._debit(wallet, amount, now_ms)
                return DEFAULT
        raise _Refused(f"The simulator does not support {type(request).__name__}")

    def _update_leverage(
        self, wallet: Wallet, coin: CoinSpec, is_cross: bool, leverage: int, now_ms: int
    ) -> None:
        """Cross or isolated, and the leverage. An open position keeps its margin mode;
        an isolated one that gets less leverage takes the extra margin from free USDC."""
        if coin.spot:
            raise _Refused(f"Leverage is for perps: {coin.name} is a spot pair")
        if not 1 <= leverage <= coin.max_leverage:
            raise _Refused(f"Invalid leverage value: {coin.name} allows 1 to {coin.max_leverage}")
        pos = wallet.positions.get(coin.name)
        szi = ZERO if pos is None else pos.szi
        isolated = coin.name in wallet.isolated
        if szi != 0 and isolated == is_cross:
            raise _Refused("Cannot switch leverage type with open position.")
        if szi != 0 and not is_cross and pos is not None:
            needed = abs(szi) * pos.entry_px / leverage - wallet.isolated[coin.name]
            if needed > 0 and needed > self._matcher.free_usdc(wallet, now_ms):
                raise _Refused("Insufficient margin to decrease leverage.")
            if needed > 0:
                wallet.isolated[coin.name] += needed
        if is_cross:
            wallet.isolated.pop(coin.name, None)
        else:
            wallet.isolated.setdefault(coin.name, ZERO)
        wallet.leverages[coin.name] = leverage

    def _update_isolated_margin(
        self, wallet: Wallet, coin: CoinSpec, ntli: int, now_ms: int
    ) -> None:
        """Move ``ntli`` micro-USDC into (positive) or out of (negative) the isolated
        margin of ``coin``'s open position. What stays must cover the larger of the
        position's initial margin and 10% of its notional, unrealized pnl counted."""
        if coin.spot:
            raise _Refused(f"Margin is for perps: {coin.name} is a spot pair")
        pos = wallet.positions.get(coin.name)
        if coin.name not in wallet.isolated or pos is None or pos.szi == 0:
            raise _Refused(f"Cannot update margin: no isolated position in {coin.name}.")
        amount = Decimal(ntli) / USD_UNITS
        margin = wallet.isolated[coin.name]
        if amount > 0 and amount > self._matcher.free_usdc(wallet, now_ms):
            raise _Refused("Insufficient margin to add to isolated position.")
        if amount < 0:
            mark = self._market.mark_px(coin.name)
            notional = abs(pos.szi) * mark
            floor = max(notional / wallet.leverage_for(coin.name, coin.max_leverage), notional / 10)
            upnl = pos.szi * (mark - pos.entry_px)
            if margin + amount + upnl < floor or margin + amount <= 0:
                raise _Refused("Insufficient margin to remove from isolated position.")
        wallet.isolated[coin.name] = margin + amount

    def _approve(self, wallet: Wallet, agent: str, name: str) -> dict[str, Any]:
        if agent == wallet.address or self._accounts.wallet(agent) is not None:
            raise _Refused("Agent address is already a user")
        for old, (owner, old_name) in list(self._agents.items()):
            if owner == wallet.address and old_name == name:
                del self._agents[old]  # replaced: its nonce state goes with it
                self.nonces.forget(old)
        self._agents[agent] = (wallet.address, name)
        return DEFAULT

    def _debit(self, wallet: Wallet, amount: Decimal, now_ms: int) -> None:
        if amount <= 0:
            raise _Refused("Amount must be positive")
        view = self._accounts.account_view(wallet.address, now_ms)
        # USDC that resting spot buys hold is not the account's to send.
        if amount > view.withdrawable - self._matcher.spot_holds(wallet).get("USDC", Decimal(0)):
            raise _Refused("Insufficient balance for this transfer")
        wallet.balance -= amount


def _envelope(body: Any) -> _Envelope:
    """The request's fields, type-checked (ActionError/SignatureError: HTTP 422)."""
    if not isinstance(body, Mapping):
        raise ActionError("invalid type: expected an object")
    for name in ("action", "nonce", "signature"):
        if name not in body:
            raise ActionError(f"missing field `{name}`")
    unknown = set(body) - _BODY_FIELDS
    if unknown:
        raise ActionError(f"unknown field `{sorted(unknown)[0]}`")
    nonce = body["nonce"]
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < 1 << 64:
        raise ActionError("invalid value for field `nonce`: expected an unsigned integer")
    vault = body.get("vaultAddress")
    if vault is not None and not (isinstance(vault, str) and ADDRESS.fullmatch(vault)):
        raise ActionError("invalid value for field `vaultAddress`: expected an address")
    expires = body.get("expiresAfter")
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < 1 << 64
    ):
        raise ActionError("invalid value for field `expiresAfter`: expected an unsigned integer")
    return _Envelope(
        parsed=parse_action(body["action"]),
        nonce=nonce,
        signature=Signature.parse(body["signature"]),
        vault=None if vault is None else vault.lower(),
        expires_after=expires,
    )

"""What a chat typed: a command, or a clear reason why not (sans I/O).

`parse("/watch 0xabc.. my label")` -> `Watch(wallet, label)`; bad input ->
`BadCommand(reply)`. `/cmd@BotName` (groups) is accepted for this bot's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hlgateway.notifier.alerts import Direction
from hlgateway.notifier.vault import find_key

WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
SYMBOL_RE = re.compile(r"^[A-Za-z0-9@:/_\-]{1,24}$")
MAX_LABEL = 64
MAX_MUTE_MINUTES = 7 * 24 * 60
COIN_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")
# What a trading command names: a perp (ETH) or a spot pair as the gateway names it (HYPE/USDC).
MARKET_RE = re.compile(r"^[A-Za-z0-9]{1,12}(/[A-Za-z0-9]{1,12})?$")


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Watch:
    wallet: str  # lower case
    label: str | None


@dataclass(frozen=True)
class Unwatch:
    wallet: str


@dataclass(frozen=True)
class Wallets:
    pass


@dataclass(frozen=True)
class Positions:
    pass


@dataclass(frozen=True)
class Alert:
    symbol: str  # upper case
    direction: Direction
    price: Decimal


@dataclass(frozen=True)
class Alerts:
    pass


@dataclass(frozen=True)
class DelAlert:
    number: int  # 1-based, as /alerts lists them


@dataclass(frozen=True)
class Mute:
    minutes: int


@dataclass(frozen=True)
class Unmute:
    pass


@dataclass(frozen=True)
class Orders:
    on: bool


@dataclass(frozen=True)
class Ledger:
    on: bool


@dataclass(frozen=True)
class Dashboard:
    pass


@dataclass(frozen=True)
class OpenOrders:
    """`/orders` alone: the connected wallet's open orders, with Cancel buttons."""


# -- trading (private chats; docs/notifier.md "Trading") ---------------------------------


@dataclass(frozen=True)
class Connect:
    wallet: str  # lower case; the key comes in the next message


@dataclass(frozen=True)
class Disconnect:
    pass


@dataclass(frozen=True)
class Trade:
    is_buy: bool
    coin: str  # upper case
    size: Decimal  # in the coin, or in USDC when `in_usdc`
    in_usdc: bool
    price: Decimal | None  # None: market


@dataclass(frozen=True)
class Close:
    coin: str
    percent: Decimal  # of the position, 0 < p <= 100


@dataclass(frozen=True)
class Cancel:
    coin: str | None  # None: all


@dataclass(frozen=True)
class Leverage:
    coin: str
    leverage: int


@dataclass(frozen=True)
class Limit:
    max_notional: Decimal | None  # None: show; 0: back to the operator's limit


@dataclass(frozen=True)
class SecretPasted:
    """A message holding something shaped like a private key (never the key itself)."""


TRADING = (Connect, Disconnect, Trade, Close, Cancel, Leverage, Limit, OpenOrders)


# -- buttons pressed (callback data) -------------------------------------------------


@dataclass(frozen=True)
class ConfirmPreview:
    preview_id: int


@dataclass(frozen=True)
class DropPreview:
    preview_id: int


@dataclass(frozen=True)
class ClosePressed:
    coin: str  # the Close button under /positions


@dataclass(frozen=True)
class CancelPressed:
    coin: str  # a Cancel button under /orders
    oid: int


Pressed = ConfirmPreview | DropPreview | ClosePressed | CancelPressed


def parse_button(data: str) -> Pressed | BadCommand:
    """Callback data as the bot's own buttons write it (Telegram sends it back as is)."""
    kind, _, rest = data.partition(":")
    arg, _, more = rest.partition(":")
    if kind in ("ok", "no") and arg.isdigit() and not more:
        return ConfirmPreview(int(arg)) if kind == "ok" else DropPreview(int(arg))
    if kind == "close" and COIN_RE.match(arg):
        return ClosePressed(arg.upper())
    if kind == "cancel" and MARKET_RE.match(arg) and more.isdigit():
        return CancelPressed(arg.upper(), int(more))
    return BadCommand("That button is not one of mine.")


@dataclass(frozen=True)
class BadCommand:
    reply: str  # plain text; escaped when sent


@dataclass(frozen=True)
class NotACommand:
    pass


Command = (
    Start
    | Help
    | Watch
    | Unwatch
    | Wallets
    | Positions
    | Alert
    | Alerts
    | DelAlert
    | Mute
    | Unmute
    | Orders
    | Ledger
    | Dashboard
    | OpenOrders
    | Connect
    | Disconnect
    | Trade
    | Close
    | Cancel
    | Leverage
    | Limit
    | SecretPasted
)

HELP = """/watch <0x wallet> [label] - notify every fill of a wallet
/unwatch <0x wallet> - stop
/wallets - what this chat watches
/positions - open positions of the watched wallets
/alert <SYMBOL> above|below <price> - price alert
/alerts - this chat's alerts
/delalert <n> - delete alert n (from /alerts)
/mute <minutes> - hold notifications (delivered when the mute ends)
/unmute - deliver now
/orders on|off - also notify order events (placed, cancelled)
/ledger on|off - also notify deposits, withdrawals and liquidations
/dashboard - the live dashboard of the watched wallets, inside Telegram

Trading (private chat, an agent wallet of yours):
/connect <0x wallet> - then send the agent (API wallet) key; I delete it at once
/disconnect - forget the key
/buy <COIN|BASE/QUOTE> <size|$usdc> [price], /sell ... - market, or limit with a price
/close <COIN> [percent] - close a position (all by default); /close HYPE/USDC sells the HYPE
/orders - open orders, with Cancel buttons; /cancel <COIN>|all
/leverage <COIN> <n>; /limit [<usdc>|off] - this chat's largest order"""

USAGE = {
    "watch": "Usage: /watch <0x wallet> [label]",
    "unwatch": "Usage: /unwatch <0x wallet>",
    "alert": "Usage: /alert <SYMBOL> above|below <price>",
    "delalert": "Usage: /delalert <n> (the number from /alerts)",
    "mute": f"Usage: /mute <minutes> (1..{MAX_MUTE_MINUTES})",
    "orders": "Usage: /orders [on|off]",
    "connect": "Usage: /connect <0x wallet> (then send the agent key in the next message)",
    "buy": "Usage: /buy <COIN> <size|$usdc> [price]",
    "sell": "Usage: /sell <COIN> <size|$usdc> [price]",
    "close": "Usage: /close <COIN> [percent]",
    "cancel": "Usage: /cancel <COIN>|all",
    "leverage": "Usage: /leverage <COIN> <n>",
    "limit": "Usage: /limit [<usdc>|off]",
    "ledger": "Usage: /ledger on|off",
}


def parse(text: str, bot_username: str | None = None) -> Command | BadCommand | NotACommand:
    if find_key(text) is not None:
        return SecretPasted()  # whatever came with it: never parsed, never echoed
    text = text.strip()
    if not text.startswith("/"):
        return NotACommand()
    head, _, rest = text.partition(" ")
    name, _, target = head[1:].partition("@")
    if target and bot_username is not None and target.lower() != bot_username.lower():
        return NotACommand()  # a command for another bot in the same group
    name = name.lower()
    args = rest.split()
    match name:
        case "start":
            return Start()
        case "help":
            return Help()
        case "watch":
            if not args:
                return BadCommand(USAGE["watch"])
            if not WALLET_RE.match(args[0]):
                return BadCommand(
                    f"Not a wallet address: {args[0][:50]} (expected 0x and 40 hex digits)"
                )
            label = rest.strip()[len(args[0]) :].strip() or None
            if label is not None and len(label) > MAX_LABEL:
                return BadCommand(f"Label too long (at most {MAX_LABEL} characters)")
            return Watch(args[0].lower(), label)
        case "unwatch":
            if len(args) != 1:
                return BadCommand(USAGE["unwatch"])
            if not WALLET_RE.match(args[0]):
                return BadCommand(f"Not a wallet address: {args[0][:50]}")
            return Unwatch(args[0].lower())
        case "wallets":
            return Wallets()
        case "positions":
            return Positions()
        case "alert":
            if len(args) != 3:
                return BadCommand(USAGE["alert"])
            symbol, direction, raw = args
            if not SYMBOL_RE.match(symbol):
                return BadCommand(f"Unknown symbol: {symbol[:30]}")
            if direction.lower() not in ("above", "below"):
                return BadCommand(USAGE["alert"])
            try:
                price = Decimal(raw)
            except InvalidOperation:
                return BadCommand(f"Not a price: {raw[:30]}")
            if not price.is_finite() or price <= 0:
                return BadCommand(f"Not a price: {raw[:30]}")
            return Alert(symbol.upper(), Direction(direction.lower()), price)
        case "alerts":
            return Alerts()
        case "delalert":
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
                return BadCommand(USAGE["delalert"])
            return DelAlert(int(args[0]))
        case "mute":
            if len(args) != 1 or not args[0].isdigit():
                return BadCommand(USAGE["mute"])
            minutes = int(args[0])
            if not 1 <= minutes <= MAX_MUTE_MINUTES:
                return BadCommand(USAGE["mute"])
            return Mute(minutes)
        case "unmute":
            return Unmute()
        case "dashboard":
            return Dashboard()
        case "orders":
            if not args:
                return OpenOrders()
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                return BadCommand(USAGE["orders"])
            return Orders(args[0].lower() == "on")
        case "ledger":
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                return BadCommand(USAGE["ledger"])
            return Ledger(args[0].lower() == "on")
        case "connect" | "disconnect" | "buy" | "sell" | "close" | "cancel" | "leverage" | "limit":
            return _trading(name, args)
    return BadCommand(f"Unknown command /{name[:30]}. /help lists them.")


def _trading(name: str, args: list[str]) -> Command | BadCommand:
    match name:
        case "connect":
            if len(args) != 1 or not WALLET_RE.match(args[0]):
                return BadCommand(USAGE["connect"])
            return Connect(args[0].lower())
        case "disconnect":
            return Disconnect()
        case "buy" | "sell":
            if len(args) not in (2, 3):
                return BadCommand(USAGE[name])
            coin = _coin(args[0])
            size = _amount(args[1].removeprefix("$"))
            price = _amount(args[2]) if len(args) == 3 else None
            if coin is None:
                return BadCommand(f"Not a coin: {args[0][:30]}")
            if size is None:
                return BadCommand(f"Not a size: {args[1][:30]}")
            if len(args) == 3 and price is None:
                return BadCommand(f"Not a price: {args[2][:30]}")
            return Trade(name == "buy", coin, size, args[1].startswith("$"), price)
        case "close":
            if len(args) not in (1, 2):
                return BadCommand(USAGE["close"])
            coin = _coin(args[0])
            percent = _amount(args[1].removesuffix("%")) if len(args) == 2 else Decimal(100)
            if coin is None:
                return BadCommand(f"Not a coin: {args[0][:30]}")
            if percent is None or percent > 100:
                return BadCommand("Percent: more than 0, at most 100")
            return Close(coin, percent)
        case "cancel":
            if len(args) != 1:
                return BadCommand(USAGE["cancel"])
            if args[0].lower() == "all":
                return Cancel(None)
            coin = _coin(args[0])
            return Cancel(coin) if coin is not None else BadCommand(f"Not a coin: {args[0][:30]}")
        case "leverage":
            if len(args) != 2 or not args[1].removesuffix("x").isdigit():
                return BadCommand(USAGE["leverage"])
            coin, leverage = _coin(args[0]), int(args[1].removesuffix("x"))
            if coin is None:
                return BadCommand(f"Not a coin: {args[0][:30]}")
            if not 1 <= leverage <= 100:
                return BadCommand("Leverage: 1 to 100 (and at most what the coin allows)")
            return Leverage(coin, leverage)
    # limit
    if not args:
        return Limit(None)
    if len(args) == 1 and args[0].lower() == "off":
        return Limit(Decimal(0))
    value = _amount(args[0].removeprefix("$")) if len(args) == 1 else None
    return Limit(value) if value is not None else BadCommand(USAGE["limit"])


def _coin(text: str) -> str | None:
    return text.upper() if MARKET_RE.match(text) else None


def _amount(text: str) -> Decimal | None:
    """A positive, finite decimal number, or None."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None

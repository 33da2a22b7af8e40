"""What a chat typed: a command, or a clear reason why not (sans I/O).

`parse("/watch 0xabc.. my label")` -> `Watch(wallet, label)`; bad input ->
`BadCommand(reply)`. `/cmd@BotName` (groups) is accepted for this bot's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hlgateway.notifier.alerts import Direction

WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
SYMBOL_RE = re.compile(r"^[A-Za-z0-9@:/_\-]{1,24}$")
MAX_LABEL = 64
MAX_MUTE_MINUTES = 7 * 24 * 60


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
/dashboard - the live dashboard of the watched wallets, inside Telegram"""

USAGE = {
    "watch": "Usage: /watch <0x wallet> [label]",
    "unwatch": "Usage: /unwatch <0x wallet>",
    "alert": "Usage: /alert <SYMBOL> above|below <price>",
    "delalert": "Usage: /delalert <n> (the number from /alerts)",
    "mute": f"Usage: /mute <minutes> (1..{MAX_MUTE_MINUTES})",
    "orders": "Usage: /orders on|off",
    "ledger": "Usage: /ledger on|off",
}


def parse(text: str, bot_username: str | None = None) -> Command | BadCommand | NotACommand:
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
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                return BadCommand(USAGE["orders"])
            return Orders(args[0].lower() == "on")
        case "ledger":
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                return BadCommand(USAGE["ledger"])
            return Ledger(args[0].lower() == "on")
    return BadCommand(f"Unknown command /{name[:30]}. /help lists them.")

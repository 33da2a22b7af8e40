"""The Telegram notifier: a bot that is a client of hlgateway (`hlgateway notifier`).

Sans-I/O parts (plain objects, injected clock): `commands` (what a chat typed),
`format` (HTML lines and messages), `pacing` (Telegram's flood limits and 429
holds), `alerts` (price alerts with hysteresis, liquidation tiers), `inbox` (the
gateway's events, bounded and conflating). The bot: `handlers` (one function a
command, through `router`), `updates` (Telegram updates in), `consumer` (gateway
events in), `sender` (the outbox out), `service` (the process's life cycle).
Edges: `repository` (every SQL statement; `schema` its migrations; `database`
SQLite or PostgreSQL), `telegram` (the Bot API, python-telegram-bot), `feed`
(the gateway), `history` (the fills a stream lost, from the exchange's info
API). See docs/notifier.md.
"""

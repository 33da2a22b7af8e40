"""The Telegram notifier: a bot that is a client of hlgateway (`hlgateway notifier`).

Sans-I/O parts (plain objects, injected clock): `format` (HTML lines and
messages), `pacing` (Telegram's flood limits and 429 holds), `alerts` (price
alerts with hysteresis, liquidation tiers), `commands` (what a chat typed).
Edges: `store` (SQLite / PostgreSQL, the outbox and stream positions),
`telegram` (the Bot API, python-telegram-bot), `feed` (the gateway),
`history` (the fills a stream lost, from the exchange's info API).
`service` wires them. See docs/notifier.md.
"""

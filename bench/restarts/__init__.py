"""Restart run: the gateway killed and stopped under its clients, against the ledger."""

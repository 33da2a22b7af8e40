"""Recovery run: clients forced to reconnect over and over must still end with the
simulator's ledger of fills and order transitions, exactly once, in order."""

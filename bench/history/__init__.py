"""Memory of the in-memory history: bytes per retained message, and for 1,000 busy streams."""

"""Socket-level fuzzer: malformed WebSocket frames at a running gateway (see docs/security.md)."""

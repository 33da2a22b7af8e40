"""RFC 6455 / 7692 server side, sans I/O: what clients send, and the server's control frames."""

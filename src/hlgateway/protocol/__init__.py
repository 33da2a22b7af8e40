"""The wire contract, sans I/O: client message decoding, server message encoding, channels."""

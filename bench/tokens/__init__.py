"""What one uncached JWT check costs, with the key prepared once and with plain `jwt.decode`."""

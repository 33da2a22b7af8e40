"""The Hyperliquid side: links, REST, wire parsing, and the feeds that map it to topics."""

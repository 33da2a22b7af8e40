"""Order entry: signed `/exchange` requests relayed from clients to Hyperliquid.

`requests` checks a `post`'s shape and names its action; `policy` decides who
may post what, how often and how many at once (sans I/O); `relay` sends what
the policy admits through `upstream.exchange` and answers `post_result`. The
gateway never holds or sees a private key: clients sign.
"""

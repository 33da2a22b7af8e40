"""The `hlgateway` command (commands.py) and its terminal screens (watch.py).

`main` is the console script's entry point (pyproject.toml).
"""

from hlgateway.cli.commands import DEMO_USER, DEMO_WALLET, build_parser, main

__all__ = ["DEMO_USER", "DEMO_WALLET", "build_parser", "main"]

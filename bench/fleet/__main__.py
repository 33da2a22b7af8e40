"""`python -m bench.fleet`: see bench/fleet/run.py."""

from __future__ import annotations

import sys

from bench.fleet.run import main

sys.exit(main())

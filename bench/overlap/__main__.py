"""`python -m bench.overlap`: see bench/overlap/run.py."""

from __future__ import annotations

import sys

from bench.overlap.run import main

sys.exit(main())

"""`python -m bench.fanout [--quick] [--label NAME]`: see run.py and docs/benchmarks.md."""

import sys

from bench.fanout.run import main

sys.exit(main())

import sys

from bench.conformance.run import main

sys.exit(main())

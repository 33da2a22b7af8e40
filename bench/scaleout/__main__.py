import sys

from bench.scaleout.run import main

sys.exit(main())

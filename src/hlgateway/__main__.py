import sys

from hlgateway.cli import main

sys.exit(main())

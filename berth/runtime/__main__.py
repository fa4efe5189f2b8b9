"""`python -m berth.runtime` is `berth-runtime`."""

import sys

from berth.runtime.cli import main

sys.exit(main())

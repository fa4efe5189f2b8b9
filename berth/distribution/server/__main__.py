import sys

from berth.distribution.server.main import main

sys.exit(main())

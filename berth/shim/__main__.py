"""``python3 -S -m berth.shim run OPTIONS...`` or ``... zygote SOCKET`` (see berth.shim.launch)."""

from berth.shim.launch import main

raise SystemExit(main())

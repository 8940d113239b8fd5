"""``python -m runner.plugins``: the listing (runner.plugins.listing)."""

import sys

from runner.plugins.listing import main

try:
    sys.exit(main())
except BrokenPipeError:  # e.g. piped into head
    sys.stdout = None
    sys.exit(0)

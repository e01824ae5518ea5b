"""``python -m noether_sim`` is the ``noether-sim`` command."""

import sys

from .cli import main

sys.exit(main())

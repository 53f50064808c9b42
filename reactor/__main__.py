"""``python -m reactor``: the command line (see reactor.cli)."""

import sys

from .cli import main

sys.exit(main())

"""``python -m reactor``: the command line (see reactor.tools.cli)."""

import sys

from .tools.cli import main

sys.exit(main())

"""Moved to ``reactor/tools/peers/asyncio_server.py`` (see README here): this
stub runs it, so the old path keeps working until it is deleted."""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's reactor
runpy.run_module("reactor.tools.peers.asyncio_server", run_name="__main__", alter_sys=True)

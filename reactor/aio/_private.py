"""The parts of asyncio's internals that ``reactor.aio`` reuses, in one place.

Reusing asyncio's own Future, Task, TLS state machine and Unix pipe and
subprocess transports (as uvloop does) means naming a few private helpers.
They are gathered here, typed as the stdlib uses them, because typeshed does
not declare them -- and so that a new Python version that moves one breaks
this file, visibly, rather than a line deep in the loop.
"""

from __future__ import annotations

import logging
from asyncio import futures, unix_events
from typing import Any

__all__ = ["logger", "set_result_unless_cancelled", "UnixReadPipeTransport", "UnixWritePipeTransport",
           "UnixSubprocessTransport"]

#: asyncio logs under "asyncio"; so does its loop here
logger = logging.getLogger("asyncio")

#: futures._set_result_unless_cancelled(fut, result): a waiter cancelled meanwhile stays cancelled
set_result_unless_cancelled: Any = futures._set_result_unless_cancelled  # type: ignore[attr-defined]
#: the Unix pipe and subprocess transports: they need only the loop's _add_reader/_add_writer
UnixReadPipeTransport: Any = unix_events._UnixReadPipeTransport  # type: ignore[attr-defined]
UnixWritePipeTransport: Any = unix_events._UnixWritePipeTransport  # type: ignore[attr-defined]
UnixSubprocessTransport: Any = unix_events._UnixSubprocessTransport  # type: ignore[attr-defined]

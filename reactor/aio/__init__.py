"""asyncio on reactor: an event loop for any asyncio program, whose I/O is
reactor's listeners, accept drain and transports.

One line to try it::

    asyncio.run(main(), loop_factory=reactor.aio.new_event_loop)   # Python 3.12+
    with asyncio.Runner(loop_factory=reactor.aio.new_event_loop) as runner:   # 3.11
        runner.run(main())
    reactor.aio.run(main())                                         # any version
    # uvicorn app:app --loop reactor.aio:new_event_loop

``REACTOR_BACKEND`` (select, poll, epoll) and ``REACTOR_NATIVE`` (0, 1) pick
the backend and the accept path when the arguments do not.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._private.policy import DEPRECATED as POLICY_DEPRECATED
from ._private.policy import DefaultPolicy
from .loop import ReactorEventLoop
from .servers import ReactorServer

__all__ = ["ReactorEventLoop", "ReactorServer", "new_event_loop", "run"]
if not POLICY_DEPRECATED:  # (from 3.14 a star import would warn, as asyncio's leaves its policies out)
    __all__ += ["EventLoopPolicy"]

T = TypeVar("T")


def new_event_loop(*, backend: str | None = None, native: bool | str = "auto") -> ReactorEventLoop:
    """A new asyncio event loop on reactor (callable with no arguments, so it
    serves as a ``loop_factory``)."""
    return ReactorEventLoop(backend=backend, native=native)


def run(main: Coroutine[Any, Any, T], *, backend: str | None = None, native: bool | str = "auto",
        debug: bool | None = None) -> T:
    """Like ``asyncio.run``: run ``main`` on a new reactor loop, then shut
    down async generators and the default executor, and close the loop."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(backend=backend, native=native)) as runner:
        return runner.run(main)


class _EventLoopPolicy(DefaultPolicy):
    """A policy whose new loops are reactor loops, for code that calls
    ``asyncio.new_event_loop()`` itself (``asyncio.set_event_loop_policy``).
    Deprecated from Python 3.14, as asyncio's policies are (use
    ``loop_factory=reactor.aio.new_event_loop``)."""

    def new_event_loop(self) -> ReactorEventLoop:
        return new_event_loop()


_EventLoopPolicy.__name__ = _EventLoopPolicy.__qualname__ = "EventLoopPolicy"

if TYPE_CHECKING or not POLICY_DEPRECATED:
    EventLoopPolicy = _EventLoopPolicy
else:
    def __getattr__(name: str) -> Any:
        # Warns on each use, as asyncio.DefaultEventLoopPolicy does on 3.14+
        if name == "EventLoopPolicy":
            warnings.warn("reactor.aio.EventLoopPolicy is deprecated, as asyncio's event loop policies are "
                          "(slated for removal in Python 3.16): use asyncio.run(main(), "
                          "loop_factory=reactor.aio.new_event_loop)", DeprecationWarning, stacklevel=2)
            return _EventLoopPolicy
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

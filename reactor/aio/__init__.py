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
from collections.abc import Coroutine
from typing import Any, TypeVar

from .loop import ReactorEventLoop
from .servers import ReactorServer

__all__ = ["ReactorEventLoop", "ReactorServer", "new_event_loop", "run", "EventLoopPolicy"]

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


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """A policy whose new loops are reactor loops, for code that calls
    ``asyncio.new_event_loop()`` itself (``asyncio.set_event_loop_policy``)."""

    def new_event_loop(self) -> ReactorEventLoop:
        return new_event_loop()

"""The asyncio loop seen as a reactor: what ``reactor._net`` needs of its loop.

reactor's listeners, transports and connector run on a ``Reactor``; here they
run on the asyncio loop of ``reactor.aio`` instead, through this small face.
It exists because the two faces disagree on one point: asyncio's public
``add_reader`` refuses an fd that a transport owns ("File descriptor ... is
used by transport"), and a transport watching its own fd is exactly what the
net floor does. So the net objects get this face, whose ``add_reader`` is the
loop's internal one, and users keep asyncio's checks.

Everything else is the loop's own: ``call_soon`` and ``call_later`` give
asyncio handles (the net floor only cancels them), the exception handler is
asyncio's, and the clock is the loop's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.resources import Resource
from ..errors import ReactorStateError

if TYPE_CHECKING:
    from .loop import ReactorEventLoop

__all__ = ["LoopHost", "ContextHost"]


class LoopHost:
    """The reactor interface of one ``ReactorEventLoop``."""

    def __init__(self, loop: ReactorEventLoop) -> None:
        self.loop = loop
        self.native: bool = loop.native
        self.backend: str = loop.backend
        self.max_fd: int | None = loop.max_fd
        self._read_view = loop._read_view

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop._add_reader(fd, callback, *args)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop._add_writer(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        return self.loop._remove_reader(fd)

    def remove_writer(self, fd: Any) -> bool:
        return self.loop._remove_writer(fd)

    def _forget_fd(self, fd: int) -> None:
        if not self.loop.is_closed():
            self.loop._watchers.forget(fd)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_soon(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_later(delay, callback, *args)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.loop.call_exception_handler(context)

    def time(self) -> float:
        return self.loop.time()

    def track_resource(self, resource: Resource) -> None:
        self.loop._resources.add(resource)

    def untrack_resource(self, resource: Resource) -> None:
        self.loop._resources.discard(resource)

    def _check_open(self) -> None:
        if self.loop.is_closed():
            raise ReactorStateError("the event loop is closed")

    def is_closed(self) -> bool:
        return self.loop.is_closed()

    def __repr__(self) -> str:
        return f"<LoopHost of {self.loop!r}>"


class ContextHost:
    """The loop's face for one connection whose protocol runs in its own
    context (3.15+: asyncio passes each connection one). Every callback the
    connection registers -- its reader, its writer, connection_lost -- runs
    in that context, whoever registered it: a ``resume_reading()`` from a
    task must not make ``data_received`` run in the task's context (CPython
    gh-140947). The rest is the loop's ``LoopHost``."""

    __slots__ = ("_host", "_context", "_read_view", "backend")

    def __init__(self, host: LoopHost, context: contextvars.Context) -> None:
        self._host = host
        self._context = context
        self._read_view = host._read_view
        self.backend = host.backend

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        return self._host.loop._add_reader(fd, callback, *args, context=self._context)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        return self._host.loop._add_writer(fd, callback, *args, context=self._context)

    def remove_reader(self, fd: Any) -> bool:
        return self._host.remove_reader(fd)

    def remove_writer(self, fd: Any) -> bool:
        return self._host.remove_writer(fd)

    def _forget_fd(self, fd: int) -> None:
        self._host._forget_fd(fd)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        return self._host.loop.call_soon(callback, *args, context=self._context)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return self._host.loop.call_later(delay, callback, *args, context=self._context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self._host.call_exception_handler(context)

    def time(self) -> float:
        return self._host.time()

    def track_resource(self, resource: Resource) -> None:
        self._host.track_resource(resource)

    def untrack_resource(self, resource: Resource) -> None:
        self._host.untrack_resource(resource)

    def _check_open(self) -> None:
        self._host._check_open()

    def is_closed(self) -> bool:
        return self._host.is_closed()

    def __repr__(self) -> str:
        return f"<ContextHost of {self._host.loop!r}>"

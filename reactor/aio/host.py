"""The asyncio loop as a host of the net floor (``reactor._net.host.Host``).

reactor's listeners, transports and connector run on a host: a ``Reactor``,
or, here, the asyncio loop of ``reactor.aio`` through this small face. It
exists because the two faces disagree on one point: asyncio's public
``add_reader`` refuses an fd that a transport owns ("File descriptor ... is
used by transport"), and a transport watching its own fd is exactly what the
net floor does. So the net objects get this face, whose ``add_reader`` is the
loop's internal one, and users keep asyncio's checks.

Everything else is the loop's own -- its loop core (``reactor._core.core``)
gives the read buffer, ``forget_fd``, resource tracking and the closing
state, as it does to ``Reactor`` -- and so are ``call_soon`` and
``call_later`` (asyncio handles; the net floor only cancels them), the
exception handler and the clock. The TLS layer's loop (``net_state``) is the
asyncio loop itself.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.resources import Resource
from .._net.host import LoopState

if TYPE_CHECKING:
    from .loop import ReactorEventLoop

__all__ = ["LoopHost", "ContextHost"]


class LoopHost:
    """The host interface of one ``ReactorEventLoop``."""

    def __init__(self, loop: ReactorEventLoop) -> None:
        self.loop = loop
        self.native: bool = loop.native
        self.backend: str = loop.backend
        self.max_fd: int | None = loop.max_fd
        self.read_buffer: memoryview = loop.read_buffer
        self.net_state = LoopState(tls_loop=loop)

    def add_reader(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self.loop._add_reader(fd, callback, *args)

    def add_writer(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self.loop._add_writer(fd, callback, *args)

    def remove_reader(self, fd: Any, /) -> bool:
        return self.loop._remove_reader(fd)

    def remove_writer(self, fd: Any, /) -> bool:
        return self.loop._remove_writer(fd)

    def forget_fd(self, fd: int, /) -> None:
        self.loop.forget_fd(fd)

    def call_soon(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self.loop.call_soon(callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self.loop.call_soon_threadsafe(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self.loop.call_later(delay, callback, *args)

    def call_exception_handler(self, context: dict[str, Any], /) -> None:
        self.loop.call_exception_handler(context)

    def time(self) -> float:
        return self.loop.time()

    def track_resource(self, resource: Resource, /) -> None:
        self.loop.track_resource(resource)

    def untrack_resource(self, resource: Resource, /) -> None:
        self.loop.untrack_resource(resource)

    def is_closed(self) -> bool:
        return self.loop.is_closed()

    def is_closing(self) -> bool:
        return self.loop.is_closing()

    def __repr__(self) -> str:
        return f"<LoopHost of {self.loop!r}>"


class ContextHost:
    """The loop's face for one connection whose protocol runs in its own
    context (3.15+: asyncio passes each connection one). Every callback the
    connection registers -- its reader, its writer, connection_lost -- runs
    in that context, whoever registered it: a ``resume_reading()`` from a
    task must not make ``data_received`` run in the task's context (CPython
    gh-140947). The rest is the loop's ``LoopHost``."""

    __slots__ = ("_host", "_context", "native", "backend", "max_fd", "read_buffer", "net_state")

    def __init__(self, host: LoopHost, context: contextvars.Context) -> None:
        self._host = host
        self._context = context
        self.native = host.native
        self.backend = host.backend
        self.max_fd = host.max_fd
        self.read_buffer = host.read_buffer
        self.net_state = host.net_state

    def add_reader(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self._host.loop._add_reader(fd, callback, *args, context=self._context)

    def add_writer(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self._host.loop._add_writer(fd, callback, *args, context=self._context)

    def remove_reader(self, fd: Any, /) -> bool:
        return self._host.remove_reader(fd)

    def remove_writer(self, fd: Any, /) -> bool:
        return self._host.remove_writer(fd)

    def forget_fd(self, fd: int, /) -> None:
        self._host.forget_fd(fd)

    def call_soon(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self._host.loop.call_soon(callback, *args, context=self._context)

    def call_soon_threadsafe(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self._host.loop.call_soon_threadsafe(callback, *args, context=self._context)

    def call_later(self, delay: float, callback: Callable[..., Any], /, *args: Any) -> Any:
        return self._host.loop.call_later(delay, callback, *args, context=self._context)

    def call_exception_handler(self, context: dict[str, Any], /) -> None:
        self._host.call_exception_handler(context)

    def time(self) -> float:
        return self._host.time()

    def track_resource(self, resource: Resource, /) -> None:
        self._host.track_resource(resource)

    def untrack_resource(self, resource: Resource, /) -> None:
        self._host.untrack_resource(resource)

    def is_closed(self) -> bool:
        return self._host.is_closed()

    def is_closing(self) -> bool:
        return self._host.is_closing()

    def __repr__(self) -> str:
        return f"<ContextHost of {self._host.loop!r}>"

"""The host interface: everything the net floor needs of the loop it runs on.

Listeners, connect attempts, transports, the TLS layer, idle limits and the
resolver run on a *host*. There are two: ``Reactor`` (reactor's own loop,
``reactor._net.reactor``) and reactor.aio's asyncio loop, seen through
``reactor.aio.host.LoopHost`` (and, for a connection whose protocol runs in
a context of its own, ``ContextHost``). ``Host`` is what both give, written
down once and checked by mypy: the net floor reaches a loop through these
names only, none of them private (``tests/test_layers.py`` holds every floor
to that).

- **fd watchers**: ``add_reader`` / ``add_writer`` for any fd, the
  connection's own included (asyncio's public ``add_reader`` refuses an fd
  a transport owns, which is why reactor.aio's host is a face of its loop
  rather than the loop), ``remove_reader`` / ``remove_writer``, and
  ``forget_fd``: every watcher of an fd dropped at once when its owner
  closes it.
- **callbacks**: ``call_soon``, ``call_later`` (whose handles the net floor
  only cancels), ``call_soon_threadsafe`` (the resolver's threads),
  ``time()`` and ``call_exception_handler``.
- **state**: ``is_closed()``; ``is_closing()``, true once ``close()`` has
  begun closing what is still open (a callback scheduled then never runs);
  ``track_resource`` / ``untrack_resource``: what ``close()`` closes
  (``reactor._core.resources``).
- **what the loop is**: ``backend``, ``max_fd`` (select's FD_SETSIZE, or
  None) and ``native`` (listeners accept through the C drain).
- **what the net floor keeps per loop**: ``read_buffer``, the one buffer
  every connection of the loop reads into (``reactor._core.core``), and
  ``net_state`` (``LoopState``): the resolver's thread pool, the idle limits
  of connected clients, and the loop asyncio's TLS layer is given. Both are
  attributes the host declares, not state attached to it from outside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._core.resources import Resource
from ..errors import ReactorStateError

if TYPE_CHECKING:
    from .idle import IdleLimit
    from .resolver import ResolverPool

__all__ = ["Host", "LoopState", "check_open"]


class LoopState:
    """What the net floor keeps per loop, made on first use: each host
    owns one (``Host.net_state``)."""

    __slots__ = ("resolver", "client_idle_limits", "tls_loop")

    def __init__(self, tls_loop: Any = None) -> None:
        #: the threads that resolve host names for connect() (``resolver.pool_for``)
        self.resolver: ResolverPool | None = None
        #: seconds -> the one idle limit of connected clients with that timeout
        #: (``connector``; listeners have their own, to count)
        self.client_idle_limits: dict[float, IdleLimit] = {}
        #: what asyncio's TLS layer calls as its loop (``tls.loop_view``):
        #: on reactor.aio the asyncio loop itself
        self.tls_loop: Any = tls_loop

    def __repr__(self) -> str:
        return (f"<LoopState resolver={self.resolver!r} idle_limits={sorted(self.client_idle_limits)} "
                f"tls_loop={type(self.tls_loop).__name__}>")


@runtime_checkable
class Host(Protocol):
    """The loop a listener, connect attempt or transport runs on (module docs)."""

    @property
    def backend(self) -> str:
        """The selector backend, e.g. ``"epoll"``."""

    @property
    def max_fd(self) -> int | None:
        """Watched fds must be below this (select's FD_SETSIZE), or None."""

    @property
    def native(self) -> bool:
        """True if listeners accept through the C drain."""

    @property
    def read_buffer(self) -> memoryview:
        """The buffer every connection of the loop reads into."""

    @property
    def net_state(self) -> LoopState:
        """What the net floor keeps per loop."""

    def add_reader(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        """Call ``callback(*args)`` whenever ``fd`` is readable; returns a cancellable handle."""

    def add_writer(self, fd: Any, callback: Callable[..., Any], /, *args: Any) -> Any:
        """Call ``callback(*args)`` whenever ``fd`` is writable; returns a cancellable handle."""

    def remove_reader(self, fd: Any, /) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was removed."""

    def remove_writer(self, fd: Any, /) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was removed."""

    def forget_fd(self, fd: int, /) -> None:
        """Drop every watcher on ``fd`` at once: its owner is closing it."""

    def call_soon(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``callback(*args)`` on the next iteration; returns a cancellable handle."""

    def call_soon_threadsafe(self, callback: Callable[..., Any], /, *args: Any) -> Any:
        """``call_soon`` from any thread."""

    def call_later(self, delay: float, callback: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``callback(*args)`` in ``delay`` seconds; returns a cancellable handle."""

    def call_exception_handler(self, context: dict[str, Any], /) -> None:
        """Report ``context`` (message, exception, what was involved)."""

    def time(self) -> float:
        """The loop's clock, in seconds."""

    def track_resource(self, resource: Resource, /) -> None:
        """Have ``close()`` close ``resource`` if its owner has not."""

    def untrack_resource(self, resource: Resource, /) -> None:
        """Forget ``resource``."""

    def is_closed(self) -> bool:
        """True once the loop is closed."""

    def is_closing(self) -> bool:
        """True once ``close()`` has begun closing what is still open."""


def check_open(host: Host) -> None:
    """``ReactorStateError`` if ``host`` is closed: what is made now would
    never run."""
    if host.is_closed():
        raise ReactorStateError("the reactor is closed")

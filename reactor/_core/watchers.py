"""Which callbacks watch which fds: one selector registration per fd.

Both faces of the loop keep their fd watchers here -- reactor's own
``EventLoop`` and the asyncio loop in ``reactor.aio`` -- so the rules below are
written once:

- A reader and a writer on one fd share one registration, whose data is the
  pair ``(reader, writer)``: adding or removing one *modifies* it (for epoll,
  one ``epoll_ctl(MOD)``), and replacing a callback costs no syscall at all.
- The select backend cannot watch an fd >= FD_SETSIZE (1024): CPython's
  ``select.select`` raises for such an fd on every later call, which would
  take the whole loop down. Such an fd is refused when it is added
  (``BackendLimitError``), before it is registered.
- A handle is anything with ``cancel()``: reactor's ``Handle`` or asyncio's.
"""

from __future__ import annotations

import selectors
from typing import Any, Protocol

from ..errors import BackendLimitError

__all__ = ["FdWatchers", "fileobj_to_fd", "EVENT_READ", "EVENT_WRITE"]

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class Cancellable(Protocol):
    def cancel(self) -> None: ...


def fileobj_to_fd(fileobj: Any) -> int:
    """An fd from an int or an object with ``fileno()``; ``TypeError`` /
    ``ValueError`` naming the problem otherwise (asyncio raises ValueError for
    a negative fd too, so callers of both faces see one behaviour)."""
    if isinstance(fileobj, int) and not isinstance(fileobj, bool):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise TypeError(
                f"fileobj must be an int fd or have a fileno() method, not {type(fileobj).__name__}"
            ) from None
    if fd < 0:
        raise ValueError(f"fileobj has an invalid fd {fd} (closed?)")
    return fd


class FdWatchers:
    """The selector and the ``(reader, writer)`` pair registered per fd."""

    def __init__(self, selector: selectors.BaseSelector, backend: str, max_fd: int | None) -> None:
        self.selector = selector
        self.backend = backend
        #: watched fds must be below this (select's FD_SETSIZE), or None
        self.max_fd = max_fd

    def check_fd(self, fd: int) -> None:
        """Raise ``BackendLimitError`` if this backend cannot watch ``fd``."""
        if self.max_fd is not None and fd >= self.max_fd:
            raise BackendLimitError(
                f"the {self.backend} backend cannot watch fd {fd}: "
                f"FD_SETSIZE is {self.max_fd}; use the poll or epoll backend"
            )

    def add(self, fd: int, event: int, handle: Cancellable) -> None:
        """Watch ``fd`` for ``event`` with ``handle``, replacing (and
        cancelling) a previous handle for the same event."""
        self.check_fd(fd)
        selector = self.selector
        try:
            key = selector.get_key(fd)
        except KeyError:
            data = (handle, None) if event == EVENT_READ else (None, handle)
            selector.register(fd, event, data)
            return
        reader, writer = key.data
        if event == EVENT_READ:
            old, data = reader, (handle, writer)
        else:
            old, data = writer, (reader, handle)
        selector.modify(fd, key.events | event, data)
        if old is not None:
            old.cancel()

    def remove(self, fd: int, event: int) -> bool:
        """Stop watching ``fd`` for ``event``; True if a handle was removed
        (and cancelled)."""
        selector = self.selector
        try:
            key = selector.get_key(fd)
        except KeyError:
            return False
        reader, writer = key.data
        if event == EVENT_READ:
            old, data = reader, (None, writer)
        else:
            old, data = writer, (reader, None)
        if old is None:
            return False
        mask = key.events & ~event
        if mask:
            selector.modify(fd, mask, data)
        else:
            selector.unregister(fd)
        old.cancel()
        return True

    def forget(self, fd: int) -> None:
        """Drop every watcher on ``fd`` at once (its owner is closing it)."""
        try:
            key = self.selector.unregister(fd)
        except KeyError:
            return
        for handle in key.data:
            if handle is not None:
                handle.cancel()

    def handle_for(self, fd: int, event: int) -> Any:
        """The handle watching ``fd`` for ``event``, or None."""
        try:
            key = self.selector.get_key(fd)
        except KeyError:
            return None
        return key.data[0] if event == EVENT_READ else key.data[1]

    def close(self) -> None:
        self.selector.close()

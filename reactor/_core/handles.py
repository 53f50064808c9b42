"""Scheduled callbacks: a Handle for call_soon and fd watchers, a TimerHandle
for call_later / call_at.

Running a handle is where user code meets the loop, so this is where the rule
"a failing callback fails alone" is kept: ``SystemExit`` and
``KeyboardInterrupt`` propagate (the user asked to stop), anything else goes to
the reactor's exception handler and the loop carries on.

Compiled (``reactor._compiled``), ``handles.pxd`` makes both classes
extension types with the same four (and two) fields as ``__slots__`` says
here, so that the loop core's dispatch reads a handle's fields from its
struct (``core._run_now``); an instance takes no other attribute either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import EventLoop

__all__ = ["Handle", "TimerHandle"]


def _cancelled_callback(*args: Any) -> None:
    """What a cancelled handle holds instead of its callback: the reference
    is dropped (nothing kept alive) and the attribute keeps its type."""


class Handle:
    """A callback with its arguments, scheduled on a reactor."""

    __slots__ = ("_callback", "_args", "_reactor", "_cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple, reactor: EventLoop) -> None:
        self._callback = callback
        self._args = args
        self._reactor = reactor
        self._cancelled = False

    def cancel(self) -> None:
        """Stop the callback from running; harmless if it already ran."""
        if not self._cancelled:
            self._cancelled = True
            # drop references so a cancelled handle does not keep objects alive
            self._callback = _cancelled_callback
            self._args = ()

    def cancelled(self) -> bool:
        """True once ``cancel()`` was called."""
        return self._cancelled

    def _run(self) -> None:
        # The loop core runs a ready watcher with this body inline
        # (core._run_now: no call to _run per read); keep the two alike.
        try:
            self._callback(*self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        """The callback raised ``exc`` (not SystemExit/KeyboardInterrupt):
        hand it to the reactor's exception handler."""
        self._reactor.call_exception_handler(
            {
                "message": f"exception in callback {self._callback!r}",
                "exception": exc,
                "handle": self,
            }
        )

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else getattr(self._callback, "__qualname__", repr(self._callback))
        return f"<{type(self).__name__} {state}>"


class TimerHandle(Handle):
    """A handle due at a time on the reactor's monotonic clock."""

    __slots__ = ("when", "_scheduled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple, reactor: EventLoop) -> None:
        super().__init__(callback, args, reactor)
        self.when = when
        # True while the handle sits in the reactor's heap; lets cancel() tell
        # the reactor how many dead entries the heap holds (for compaction).
        self._scheduled = False

    def cancel(self) -> None:
        if not self._cancelled and self._scheduled:
            self._reactor._timer_cancelled()
        super().cancel()

"""The library's own exceptions.

Connect failures use Python's built-in classes where one exists
(``ConnectionRefusedError``, ``TimeoutError``), so ``except`` clauses that users
already write keep working; the classes here add what the built-ins cannot say.
"""

from __future__ import annotations

__all__ = [
    "ReactorError",
    "ReactorStateError",
    "BackendLimitError",
    "NativeUnavailableError",
    "ConnectTimeout",
    "UnreachableError",
    "InvalidStateError",
    "CancelledError",
]


class ReactorError(Exception):
    """Base class of the errors the library raises for its own reasons."""


class ReactorStateError(ReactorError, RuntimeError):
    """An operation that the reactor's current state does not allow
    (``run()`` while running, anything after ``close()``)."""


class BackendLimitError(ReactorError, ValueError):
    """The selector backend cannot watch this file descriptor
    (``select()`` is limited to fds below FD_SETSIZE)."""


class NativeUnavailableError(ReactorError, ImportError):
    """The C accelerator was required but cannot be loaded."""


class InvalidStateError(ReactorError):
    """A result was asked of an operation that has not finished."""


class CancelledError(ReactorError):
    """The operation was cancelled before it finished."""


class ConnectTimeout(ReactorError, TimeoutError):
    """A connect attempt had no answer before its deadline
    (the SYN went unanswered, or the peer's accept queue was full)."""


class UnreachableError(ReactorError, ConnectionError):
    """The network said the peer cannot be reached (ICMP host or network
    unreachable: EHOSTUNREACH, ENETUNREACH)."""

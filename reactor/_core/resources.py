"""What the loop closes for its owner: the resource interface.

A listener, a connection, a connect attempt or a resolver pool owns fds or
threads that must not outlive the loop. Each registers itself with
``EventLoop.track_resource`` when it comes to life and unregisters with
``EventLoop.untrack_resource`` when it is closed by other means; whatever is
still registered when ``EventLoop.close()`` runs is closed there, in
``close_order`` (lowest first), and logged.

Why an order: a listener closed after its connections would see their fds
freed and might resume accepting (the exhaustion policy resumes when a
connection closes); closing listeners first means nothing new arrives while
the rest is torn down.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Resource", "CLOSE_FIRST", "CLOSE_NORMAL", "CLOSE_LAST"]

#: listeners: nothing new may arrive while the rest closes
CLOSE_FIRST = 0
#: connect attempts, resolver pools
CLOSE_NORMAL = 1
#: connections (their protocols are told ``connection_lost`` now)
CLOSE_LAST = 2


@runtime_checkable
class Resource(Protocol):
    """An object the loop must close if its owner did not."""

    # A read-only property, so that a plain class attribute
    # (``close_order = CLOSE_LAST``) satisfies it; ``ClassVar[int]`` would
    # make mypy refuse every implementation that does not spell ClassVar.
    @property
    def close_order(self) -> int:
        """When ``EventLoop.close()`` closes it: lower values first."""

    def close_for_loop(self) -> None:
        """The loop is closing and will not run again: release everything
        now (no deferred callbacks) and untrack yourself."""

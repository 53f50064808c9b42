"""What the loop closes for its owner: the resource interface.

A listener, a connection, a connect attempt or a resolver pool owns fds or
threads that must not outlive the loop. Each registers itself with
``EventLoop.track_resource`` when it comes to life and unregisters with
``EventLoop.untrack_resource`` when it is closed by other means; whatever is
still registered when ``EventLoop.close()`` runs is closed there, in
``close_order`` (lowest first), and logged (INFO, counts per type).

Rules the loop keeps:

- Closing runs callbacks (``connection_lost``) that may open new resources;
  those are closed in the same ``close()``, in a bounded number of rounds.
  Whatever is still open after the last round is named at ERROR: nothing
  tracked is ever dropped silently.
- A ``close_for_loop`` that raises is reported to the exception handler
  (context key ``resource``) and the others are still closed;
  ``KeyboardInterrupt`` / ``SystemExit`` propagate, and what was not closed
  yet stays tracked for the next ``close()``.
- A closed loop refuses ``track_resource`` (``ReactorStateError``): nothing
  would ever close the resource.

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

"""How a subprocess's exit reaches its transport, as asyncio's own Unix loop
does it on each version.

- 3.11 to 3.13: the policy's *child watcher* (``asyncio.get_child_watcher()``,
  deprecated in 3.12), which must be active; its callback comes from
  whatever thread or signal handler the watcher uses, so the exit is handed
  to the loop with ``call_soon_threadsafe`` (3.11 skips one more iteration,
  so the pipes' last data is delivered first).
- 3.14 and later: the child watchers are gone; each loop has its own, a
  pidfd read on the loop (``unix_events._PidfdChildWatcher``) where the
  kernel gives pidfds, else a thread per child
  (``unix_events._ThreadedChildWatcher``), and the exit is delivered at
  once.

``Children(loop)`` is what ``ReactorEventLoop`` keeps; a subprocess is
started and awaited inside ``with children.watcher() as watcher:``, and
``watcher.add_child_handler(pid, children.exited, transport)`` asks for its
exit.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from asyncio import events, unix_events
from collections.abc import Iterator
from typing import Any

__all__ = ["Children", "WATCHERS_IN_POLICY"]

#: True where the policy owns the child watcher (before 3.14)
WATCHERS_IN_POLICY = sys.version_info < (3, 14)


class Children:
    """The subprocesses of one loop."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        #: the loop's own watcher (3.14+), which asyncio's loop keeps as
        #: ``loop._watcher`` (its tests read it there: so does ReactorEventLoop)
        self.own: Any = None
        if not WATCHERS_IN_POLICY:
            pidfd = unix_events.can_use_pidfd()  # type: ignore[attr-defined]
            self.own = (unix_events._PidfdChildWatcher() if pidfd  # type: ignore[attr-defined]
                        else unix_events._ThreadedChildWatcher())  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def watcher(self) -> Iterator[Any]:
        """The context a subprocess is started and awaited in, giving the
        watcher to ask: the loop's own (3.14+), or the policy's, entered
        and checked active."""
        if not WATCHERS_IN_POLICY:
            yield self.own
            return
        with warnings.catch_warnings():
            # 3.12 deprecates the child-watcher API that 3.11 requires
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = events.get_child_watcher()
        # 3.11 asks the object __enter__ returns; 3.12 and 3.13 the watcher
        # itself (the same object for asyncio's watchers, not for a mock's)
        with watcher as entered:
            if sys.version_info < (3, 12):
                watcher = entered
            if not watcher.is_active():
                raise RuntimeError("asyncio.get_child_watcher() is not activated, "
                                   "subprocess support is not installed.")
            yield watcher

    def exited(self, pid: int, returncode: int, transport: Any) -> None:
        """The watcher's callback: ``pid`` exited; tell ``transport`` (asyncio's
        subprocess transport) on the loop."""
        if not WATCHERS_IN_POLICY:
            transport._process_exited(returncode)  # on the loop already
        elif sys.version_info >= (3, 12):
            self._loop.call_soon_threadsafe(transport._process_exited, returncode)
        else:
            # From the watcher's thread: skip one iteration, so that the
            # pipes' last data is delivered before the exit.
            self._loop.call_soon_threadsafe(self._loop.call_soon, transport._process_exited, returncode)

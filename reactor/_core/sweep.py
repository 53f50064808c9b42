"""Coarse time limits for many objects at once: one loop timer, not one per object.

A server facing clients needs a limit on each connection's silence (an idle
timeout) and on a slow request head (slowloris), thousands of times over.
A timer per connection, moved on every read, is a heap push and a cancel per
read -- about 1 us each on the data path, paid by every connection to catch
the few that misbehave. A limit like "60 s without a byte" does not need
microseconds, so this module keeps time in *ticks*:

- a ``Sweep`` holds a set of members and, every ``interval`` seconds while
  it has any, calls ``check(member, ticks)`` for each of them, where
  ``ticks`` counts the sweeps so far;
- a member marks progress itself with a plain attribute store (a transport's
  ``_io_seen = True`` per read, say) or by remembering ``sweep.ticks``, and
  ``check`` compares; nothing runs per byte, and a sweep costs O(members)
  every ``interval`` seconds -- for 10,000 members about 1 ms a second.

The price is precision: a limit of S seconds fires between S and S +
``interval``; ``interval_for(S)`` picks at most a quarter of S, and at most
one second, so a 10 s header timeout ends a slowloris client within 11 s.
The sweep runs on the loop, with the loop's clock: a virtual clock steps it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Sweep", "interval_for", "MAX_INTERVAL", "MIN_INTERVAL"]

#: the coarsest sweep: a limit fires at most this late
MAX_INTERVAL = 1.0
#: the finest sweep: limits below 40 ms are not what this is for
MIN_INTERVAL = 0.01


def interval_for(limit: float) -> float:
    """The sweep interval for a limit of ``limit`` seconds: a quarter of it,
    between ``MIN_INTERVAL`` and ``MAX_INTERVAL``."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, limit / 4))


class Sweep:
    """Every ``interval`` seconds, ``check(member, ticks)`` for each member.

    ``loop`` is anything with ``call_later`` and ``call_exception_handler``
    (an ``EventLoop``). The timer runs only while there are members: it is
    armed by the first ``add`` and not armed again by a sweep that finds
    none, so an idle server wakes at most once for nothing. A ``check`` that raises is reported to the
    exception handler and the member is dropped; the others are still checked.
    """

    __slots__ = ("_loop", "interval", "_check", "_members", "ticks", "_timer")

    def __init__(self, loop: Any, interval: float, check: Callable[[Any, int], Any]) -> None:
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise ValueError(f"interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} s, not {interval!r}")
        self._loop = loop
        self.interval = interval
        self._check = check
        self._members: set[Hashable] = set()
        #: sweeps done so far: a member remembers it to measure time in ticks
        self.ticks = 0
        self._timer: Any = None

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Hashable) -> None:
        """Check ``member`` from the next sweep on."""
        self._members.add(member)
        if self._timer is None:
            self._timer = self._loop.call_later(self.interval, self._run)

    def discard(self, member: Hashable) -> None:
        """Stop checking ``member`` (a no-op if it is not a member)."""
        # The timer stays: it finds no members, and is not armed again. A
        # server whose connections come and go one at a time would otherwise
        # make and cancel a loop timer per connection (measured: 15% of the
        # accept-and-close path).
        self._members.discard(member)

    def close(self) -> None:
        """Drop every member and the timer."""
        self._members.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        self.ticks += 1
        ticks = self.ticks
        check = self._check
        # A copy: a check usually closes its member, which discards it.
        for member in list(self._members):
            if member not in self._members:
                continue  # discarded by an earlier check of this sweep
            try:
                check(member, ticks)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._members.discard(member)
                self._loop.call_exception_handler(
                    {"message": "exception in a sweep check; member dropped", "exception": exc, "member": member}
                )
        if self._members and self._timer is None:
            self._timer = self._loop.call_later(self.interval, self._run)

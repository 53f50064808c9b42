"""``idle_timeout``: close a connection when no byte has moved either way for S seconds.

A silent client holds an fd for ever: a flood of idle sockets pins a
server's fds without sending a byte. The limit is checked by one coarse
sweep (``reactor._core.sweep``) per limit, not by a timer per connection:

- the transport sets ``_io_seen = True`` whenever a read returns data or a
  send takes bytes -- one attribute store, no clock, no timer moved;
- every ``interval`` (a quarter of the limit, at most 1 s) the sweep looks
  at each connection: one that moved is marked with the sweep's tick count;
  one that has not moved for ``ceil(limit / interval)`` ticks is closed.

A connection is closed after between S and S + interval seconds of silence
(never before S: the tick a connection joins counts as a sign of life).
Closing is graceful (flush, FIN) when nothing is queued; over TLS our
close_notify goes first, and the peer's is not waited for (a silent peer
would hold the fd for the whole TLS shutdown timeout). With bytes queued
the peer has not read them for S seconds either (a send that takes nothing
is no sign of life), so a graceful close would wait for ever: it is aborted
(RST) instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.checks import check_optional_duration
from .._core.sweep import Sweep, interval_for

if TYPE_CHECKING:
    from .host import Host
    from .transport import Transport

__all__ = ["IdleLimit", "check_idle_timeout"]


def check_idle_timeout(idle_timeout: Any) -> float | None:
    """``idle_timeout`` checked: None (no limit) or a finite number of seconds > 0."""
    return check_optional_duration(idle_timeout, "idle_timeout")


class IdleLimit:
    """Closes the connections it watches after ``timeout`` seconds of silence;
    ``on_close(transport)`` is told of each (a listener counts them)."""

    __slots__ = ("timeout", "_sweep", "_limit_ticks", "_on_close")

    def __init__(self, loop: Host, timeout: float,
                 on_close: Callable[[Transport], Any] | None = None) -> None:
        self.timeout = timeout
        interval = interval_for(timeout)
        self._sweep = Sweep(loop, interval, self._check)
        self._limit_ticks = math.ceil(timeout / interval)
        self._on_close = on_close

    def __len__(self) -> int:
        return len(self._sweep)

    def watch(self, transport: Transport) -> None:
        """Start the clock for ``transport`` (it forgets itself when it closes)."""
        transport._idle_limit = self
        # The tick now running counts as a sign of life: never closed early.
        transport._idle_since = self._sweep.ticks + 1
        self._sweep.add(transport)

    def forget(self, transport: Transport) -> None:
        self._sweep.discard(transport)

    def close(self) -> None:
        """Stop watching every connection."""
        self._sweep.close()

    def _check(self, transport: Transport, ticks: int) -> None:
        if transport._io_seen:
            transport._io_seen = False
            transport._idle_since = ticks
            return
        if ticks - transport._idle_since < self._limit_ticks:
            return
        self._sweep.discard(transport)
        if self._on_close is not None:
            self._on_close(transport)
        if transport.get_write_buffer_size():
            transport.abort()  # the peer reads nothing: a flush would never end (module docs)
        else:
            # TLS: close_notify, then FIN now, never a wait for the peer's
            transport.close_without_waiting()

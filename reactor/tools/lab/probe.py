"""What select, poll and epoll say about an fd right now.

Each probe asks its own kernel interface with a zero timeout, so a timeline
shows the three side by side at the same instant:

- ``select(2)``: three bitmaps, so three answers: readable (``r``), writable
  (``w``), exceptional (``x``: TCP urgent data only). An error or a hang-up
  shows as readable *and* writable: select has no bit for either, and the
  program learns what happened only from the next call (recv, SO_ERROR).
- ``poll(2)`` and ``epoll(7)`` return the same mask, from the same function
  (``tcp_poll``): IN, OUT, PRI, RDHUP (the peer shut its write side: its
  FIN), and ERR and HUP, which are reported whether asked for or not. They
  differ in how they are asked (the whole array each call, against an
  interest list kept in the kernel), not in what a TCP socket reports. Both
  are registered here for everything, level-triggered, so they show the
  socket's state rather than an edge.

Probes watch numbers (select, poll) or open files (epoll): an fd must be
forgotten *before* it is closed, or select fails with EBADF, poll reports
POLLNVAL and epoll quietly drops it (see ``reactor/_core/backends.py``).
"""

from __future__ import annotations

import select
from collections.abc import Iterable

__all__ = ["BACKENDS", "Readiness", "available"]

#: the order a timeline shows them in
BACKENDS = ("select", "poll", "epoll")

_POLL_BITS = [(name, getattr(select, "POLL" + name)) for name in ("IN", "PRI", "OUT", "ERR", "HUP", "RDHUP", "NVAL")
              if hasattr(select, "POLL" + name)]
_EPOLL_BITS = [(name, getattr(select, "EPOLL" + name)) for name in ("IN", "PRI", "OUT", "ERR", "HUP", "RDHUP")
               if hasattr(select, "EPOLL" + name)]
#: everything a TCP socket can report (ERR and HUP come anyway)
_POLL_ASK = select.POLLIN | select.POLLPRI | select.POLLOUT | getattr(select, "POLLRDHUP", 0)
_EPOLL_ASK = select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | getattr(select, "EPOLLRDHUP", 0)


def available() -> list[str]:
    """The probes this platform has, in display order."""
    return [name for name in BACKENDS if hasattr(select, name)]


def _names(mask: int, bits: list[tuple[str, int]]) -> tuple[str, ...]:
    return tuple(name for name, bit in bits if mask & bit)


class Readiness:
    """The chosen backends, each watching the same fds for everything."""

    def __init__(self, backends: Iterable[str]) -> None:
        self.backends = [name for name in BACKENDS if name in set(backends)]
        self._fds: set[int] = set()
        self._poll = select.poll() if "poll" in self.backends else None
        self._epoll = select.epoll() if "epoll" in self.backends else None

    def watch(self, fd: int) -> None:
        if fd in self._fds:
            return
        self._fds.add(fd)
        if self._poll is not None:
            self._poll.register(fd, _POLL_ASK)
        if self._epoll is not None:
            self._epoll.register(fd, _EPOLL_ASK)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``; call it before the fd is closed."""
        if fd not in self._fds:
            return
        self._fds.discard(fd)
        if self._poll is not None:
            self._poll.unregister(fd)
        if self._epoll is not None:
            self._epoll.unregister(fd)

    def now(self) -> dict[int, dict[str, tuple[str, ...]]]:
        """fd -> backend -> the flags it reports at this instant."""
        fds = sorted(self._fds)
        out: dict[int, dict[str, tuple[str, ...]]] = {fd: {} for fd in fds}
        if not fds:
            return out
        if "select" in self.backends:
            # select's fd ceiling (FD_SETSIZE) is no concern: a lab has a handful of fds
            r, w, x = select.select(fds, fds, fds, 0)
            for fd in fds:
                out[fd]["select"] = tuple(flag for flag, ready in (("r", r), ("w", w), ("x", x)) if fd in ready)
        if self._poll is not None:
            masks = dict(self._poll.poll(0))
            for fd in fds:
                out[fd]["poll"] = _names(masks.get(fd, 0), _POLL_BITS)
        if self._epoll is not None:
            masks = dict(self._epoll.poll(0, max(len(fds), 1)))
            for fd in fds:
                out[fd]["epoll"] = _names(masks.get(fd, 0), _EPOLL_BITS)
        return out

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        self._fds.clear()

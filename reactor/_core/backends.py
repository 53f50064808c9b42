"""Selector backends by name: which exist here, which is best, what each can do.

Facts about the backends, and what follows for us:

- ``select(2)`` takes bitmaps of FD_SETSIZE (1024) bits. glibc does not check
  the bound, and CPython's ``select.select`` raises ``ValueError("filedescriptor
  out of range in select()")`` for an fd >= 1024 -- on *every* later call, which
  would take the whole loop down. So the select backend refuses such an fd when
  it is registered (``BackendLimitError``), and the listener closes accepted fds
  past the limit instead of handing them to the loop. Each call costs O(highest
  fd) in the kernel and O(registered fds) in Python.
- ``poll(2)`` has no fd ceiling but is O(registered fds) per call, in the kernel
  and in CPython, which rebuilds nothing but walks the whole pollfd array.
- ``epoll(7)`` is O(ready fds) per call; registration is a syscall
  (``epoll_ctl``). Level-triggered (what ``selectors`` uses), so a listening
  socket that is not drained fires again at once: the listener must either
  drain or stop watching (exhaustion), never leave it half-done and wait.
- ``kqueue`` (BSD, macOS) and ``/dev/poll`` (Solaris) are O(ready) like epoll.
- Timeouts: epoll_wait and poll take milliseconds, select microseconds, kqueue
  nanoseconds. The loop rounds a timeout *up* to the backend's resolution so a
  timer never fires early (CPython's selectors already round up for poll and
  epoll; rounding here keeps the rule in one place for every backend).
"""

from __future__ import annotations

import math
import selectors
from dataclasses import dataclass

__all__ = [
    "FD_SETSIZE",
    "BackendInfo",
    "available_backends",
    "backend_info",
    "resolve_backend",
    "round_timeout",
]

#: select()'s bitmap size on Linux (and the default on most Unixes).
FD_SETSIZE = 1024


@dataclass(frozen=True)
class BackendInfo:
    """What one backend is and what it can do."""

    name: str
    selector_class: type[selectors.BaseSelector]
    #: highest fd it can watch plus one, or None when unbounded
    max_fd: int | None
    #: granularity of its timeout argument, in seconds
    resolution: float
    #: cost of one wait as the watched set grows: "O(n)" or "O(ready)"
    scaling: str


def _known() -> list[BackendInfo]:
    """Every backend the stdlib offers on this platform, best first."""
    candidates = [
        ("epoll", "EpollSelector", None, 1e-3, "O(ready)"),
        ("kqueue", "KqueueSelector", None, 1e-9, "O(ready)"),
        ("devpoll", "DevpollSelector", None, 1e-3, "O(ready)"),
        ("poll", "PollSelector", None, 1e-3, "O(n)"),
        ("select", "SelectSelector", FD_SETSIZE, 1e-6, "O(n)"),
    ]
    found = []
    for name, attr, max_fd, resolution, scaling in candidates:
        cls = getattr(selectors, attr, None)
        if cls is not None:
            found.append(BackendInfo(name, cls, max_fd, resolution, scaling))
    return found


_BACKENDS: dict[str, BackendInfo] = {info.name: info for info in _known()}
_ALL_NAMES = ("epoll", "kqueue", "devpoll", "poll", "select")


def available_backends() -> list[str]:
    """Names of the backends this platform has, best first (e.g.
    ``["epoll", "poll", "select"]`` on Linux)."""
    return list(_BACKENDS)


def backend_info(name: str) -> BackendInfo:
    """The facts about one available backend; ``ValueError`` if it is not."""
    return _BACKENDS[resolve_backend(name)]


def resolve_backend(name: str) -> str:
    """Turn ``"auto"`` or a backend name into an available backend's name.

    Raises ``TypeError`` for a non-string and ``ValueError`` naming the
    available backends for an unknown or unavailable name.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, not {type(name).__name__}")
    available = ", ".join(["auto", *_BACKENDS])
    if name == "auto":
        return next(iter(_BACKENDS))
    if name in _BACKENDS:
        return name
    if name in _ALL_NAMES:
        raise ValueError(
            f"backend {name!r} is not available on this platform; available: {available}"
        )
    raise ValueError(f"unknown backend {name!r}; available: {available}")


def round_timeout(timeout: float, resolution: float) -> float:
    """Round a non-negative timeout up to a multiple of ``resolution``.

    A timeout rounded down would wake the loop before the timer is due; the
    loop would then spin through a zero-timeout poll until the clock catches up.
    """
    if timeout <= 0:
        return 0.0
    steps = math.ceil(timeout / resolution - 1e-9)
    return max(steps, 1) * resolution

"""The accept drain and its errno policy: the one place that decides what each
``accept()`` error means. The pure-Python drain here is the reference; the C
drain in ``_native/`` (used when the accelerator is built) must match it.

What Linux's accept(2) can return, and what we do:

- EAGAIN / EWOULDBLOCK: the queue is empty. The normal end of a drain -- also
  right after a readiness event, when another acceptor (thread, process,
  SO_REUSEPORT sibling sharing the queue) took the connection first.
- EINTR: a signal arrived; retry (CPython's ``_accept`` already retries, the C
  drain does it itself).
- ECONNABORTED: the connection was aborted while it waited in the queue.
  Linux rarely reports this: a connection reset by the client before accept is
  still *returned* by accept (``getpeername`` then fails with ENOTCONN and the
  first read gives ECONNRESET), so the transport must cope with that too.
  EPROTO, EPERM (a firewall rule), and the network errors the man page says
  Linux passes on from the new socket (ENETDOWN, ENOPROTOOPT, EHOSTDOWN,
  ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, ETIMEDOUT): that one
  connection is lost, the queue is fine. Skip, count in ``stats.aborted``, go on.
- EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of fds or
  memory. The connection stays queued, so a level-triggered selector reports
  the listener readable again at once: retrying now is a busy loop. Stop and
  let the listener's exhaustion policy act (pause with backoff, or shed).
- EBADF, EINVAL, ENOTSOCK, EFAULT: the listening socket itself is broken
  (closed under us, not listening). Nothing to retry: close the listener and
  report.

What others do: asyncio (``selector_events._accept_connection``) accepts up
to ``backlog`` times per event, treats EMFILE/ENFILE/ENOBUFS/ENOMEM by removing
the reader and re-adding it after one second, and swallows
BlockingIOError/ConnectionAbortedError/InterruptedError. libuv (``uv__server_io``)
loops until EAGAIN, and on EMFILE/ENFILE uses a reserved fd (``uv__emfile_trick``)
to accept and close the surplus. Twisted (``tcp.Port.doRead``) accepts a
bounded number per event (``numberAccepts``), treats EMFILE/ENFILE/ENOBUFS/ENOMEM
by giving up for this event, and ECONNABORTED by continuing. trio
(``_highlevel_socket``) tables the errnos per OS: it retries EINTR and the
"connection died in the queue" set and raises the capacity set to the user.
"""

from __future__ import annotations

import errno
from typing import Any, Callable

__all__ = [
    "ACCEPT_RETRY",
    "ACCEPT_SKIP",
    "ACCEPT_CAPACITY",
    "ACCEPT_FATAL",
    "DrainResult",
    "drain_pure",
]


def _errnos(*names: str) -> frozenset[int]:
    """Errno values by name, skipping the ones this platform lacks."""
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


#: retry at once
ACCEPT_RETRY = _errnos("EINTR")
#: this connection died before we took it: count it and go on
ACCEPT_SKIP = _errnos(
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET",
)
#: out of fds or memory: stop the drain, let the exhaustion policy act
ACCEPT_CAPACITY = _errnos("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
#: the listening socket is unusable: close it and report
ACCEPT_FATAL = _errnos("EBADF", "EINVAL", "ENOTSOCK", "EFAULT")

#: (accepted [(fd, peer address)], skipped count, errno that ended the drain
#: or 0 when ``max_accepts`` was reached)
DrainResult = tuple[list[tuple[int, Any]], int, int]


def drain_pure(accept: Callable[[], tuple[int, Any]], max_accepts: int) -> DrainResult:
    """Call ``accept()`` (a listening socket's ``_accept``: returns ``(fd,
    address)`` and creates no socket object) until the queue is empty, an error
    ends the drain, or ``max_accepts`` attempts were made.

    Skipped connections count towards ``max_accepts`` so that even a queue
    full of aborted connections gives the loop back after a bounded amount of
    work. Never blocks: the listening socket is non-blocking.
    """
    accepted: list[tuple[int, Any]] = []
    skipped = 0
    attempts = 0
    while attempts < max_accepts:
        try:
            accepted.append(accept())
        except BlockingIOError:
            return accepted, skipped, errno.EAGAIN
        except OSError as exc:
            code = exc.errno
            if code in ACCEPT_RETRY:
                continue
            attempts += 1
            if code in ACCEPT_SKIP:
                skipped += 1
                continue
            return accepted, skipped, code or errno.EINVAL
        else:
            attempts += 1
    return accepted, skipped, 0

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

An fd that user code closes while it is still watched ("bad fds fail alone"):

- ``select(2)`` fails as a whole with EBADF, on every call until the fd
  leaves its sets: one closed fd would stop the loop for everyone. Our
  ``SelectSelector`` then finds the closed fds (``fstat`` each registered fd:
  O(n), only on that error path) and forgets them.
- ``poll(2)`` reports ``POLLNVAL`` for it, at once and on every call: a busy
  loop. CPython's ``PollSelector`` folds POLLNVAL into "readable and
  writable", so the watcher runs forever on a dead fd. Our ``PollSelector``
  reads the raw revents (one ``&`` per event) and forgets such fds.
- ``epoll(7)`` watches the open file, not the number: closing the last fd of
  a file removes it from the interest list silently -- no event, no error,
  nothing to spin on, so nothing to detect either: the watcher simply never
  runs. The stale entry shows when the fd *number* is watched again (a new
  socket often gets it at once): ``EPOLL_CTL_MOD`` then fails with ENOENT
  (EPERM if the number names a regular file now, EBADF if it is still
  free), where CPython's ``EpollSelector`` would either raise (the events
  changed) or, when only the callback changes, not ask the kernel at all
  and leave the new socket unwatched. Our ``EpollSelector`` asks the kernel
  on a callback replacement too (one ``epoll_ctl(MOD)``) and forgets the
  stale entry; a change of events is asked at the next wait
  (``EpollSelector.flush``), where a failing MOD says the same. Not
  handled, because no cheap check sees it: a closed fd whose file lives on
  in a ``dup`` (or a forked child) stays in the interest list and keeps
  firing under the old number -- which is why a registration is deleted at
  once when it is dropped, before its owner can close the fd.
- select and poll watch numbers: an fd closed *and reused* before the loop
  next waits is watched as the new file, and cannot be told apart.

When our ``EpollSelector`` calls ``epoll_ctl``, and why (``ctl_calls``
counts the calls, failed ones too):

- ADD at ``register``, at once. ``epoll_ctl(ADD)`` is where the kernel
  says an fd cannot be watched: EPERM for a regular file or a directory
  (``file_can_poll`` is false), EBADF for a closed fd, ENOSPC past
  ``fs.epoll.max_user_watches``, ENOMEM. asyncio raises these from
  ``add_reader`` (CPython's ``EpollSelector.register``), and so does
  uvloop; programs catch the PermissionError to fall back to a thread for a
  file. An ADD left to the next wait would raise nowhere the caller could
  catch it. (Deferring it saved no call in any server we measured either:
  ``bench/syscalls.py --modes close,echo,patterns``.)
- MOD of the events at the next wait (``flush``, which the loop's watchers
  call before they poll): a reader that gains and loses a writer before the
  loop waits costs nothing, a read -> read+write change one MOD. A MOD only
  fails for a registration gone stale (ENOENT or EBADF: its fd closed, the
  number maybe reused; EPERM if it now names a regular file), which the
  loop then ends and reports, as it would have at once.
- MOD of the data alone (a callback replaced) at once, to find a stale
  registration now (above); CPython asks nothing there.
- DEL at ``unregister``, at once: the caller may close the fd next, and a
  DEL after the close cannot name a file that a ``dup`` or a forked child
  keeps open (above). libuv deletes at close for the same reason
  (``uv__platform_invalidate_fd``); asyncio at once.

Each of our selectors says what it forgot by raising :class:`BadFds` (with
whatever else was ready), so the loop's hot path pays nothing for the check:
it ends those watchers and reports each fd to the exception handler. They
are ``BackendInfo.loop_selector_class``; ``selector_class`` stays the stdlib
class for code that does not catch ``BadFds``. kqueue and /dev/poll keep
the stdlib classes (not on Linux).

On epoll, reactor's own loop does not wait in ``EpollSelector.select``: it
polls the selector's ``select.epoll`` object itself and dispatches by fd
(``watchers.FdWatchers.poll_fds``), with no key object or tuple built per
event. Registration still goes through ``EpollSelector`` (register and
unregister at once, changes of events flushed before each wait), so the
stale-registration check is the same for both loops; epoll has no bad fd to
find at wait time (see above), so nothing is lost by not calling
``select()``.
"""

from __future__ import annotations

import errno
import math
import os
import select
import selectors
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FD_SETSIZE",
    "BadFds",
    "BackendInfo",
    "available_backends",
    "backend_info",
    "resolve_backend",
    "round_timeout",
]

#: select()'s bitmap size on Linux (and the default on most Unixes).
FD_SETSIZE = 1024


#: errnos of EPOLL_CTL_MOD that mean "this registration is stale": the fd
#: number now names another file (ENOENT), a file epoll cannot watch, so
#: cannot have had (EPERM: the kernel checks ``file_can_poll`` before it
#: looks for the registration), or nothing at all (EBADF)
_STALE_ERRNOS = frozenset({errno.ENOENT, errno.EPERM, errno.EBADF})

_Ready = list[tuple[selectors.SelectorKey, int]]

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLNVAL = select.POLLNVAL


class BadFds(Exception):
    """Raised by our selectors when registered fds turned out to be closed.

    The selector has already forgotten them. ``keys`` are their
    registrations (the loop ends their watchers and reports each fd);
    ``ready`` is what else was ready in the same ``select()`` call.
    """

    def __init__(self, keys: list[selectors.SelectorKey], ready: _Ready, how: str) -> None:
        super().__init__(f"closed fds still watched ({how}): {sorted(key.fd for key in keys)}")
        self.keys = keys
        self.ready = ready
        #: how it was found, for the report
        self.how = how


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


class SelectSelector(selectors.SelectSelector):
    """select(2) that survives a closed fd in its sets (see the module)."""

    def select(self, timeout: float | None = None) -> _Ready:
        try:
            return super().select(timeout)
        except (OSError, ValueError) as exc:
            bad = [key for key in list(self.get_map().values()) if _is_closed(key.fd)]
            if not bad:
                raise
            for key in bad:
                self.unregister(key.fd)
            raise BadFds(bad, [], f"select() failed: {exc}") from exc


class PollSelector(selectors.PollSelector):
    """poll(2) that forgets an fd the kernel answers POLLNVAL for (see the
    module), instead of reporting it ready forever."""

    # CPython's private state, read here (typeshed leaves it out)
    _selector: select.poll
    _fd_to_key: dict[int, selectors.SelectorKey]

    # The body is CPython's _PollLikeSelector.select, plus the POLLNVAL test,
    # reading the registrations straight from the map (no method call per
    # event).
    def select(self, timeout: float | None = None) -> _Ready:
        if timeout is None:
            ms = None
        elif timeout <= 0:
            ms = 0
        else:
            # poll() has a resolution of 1 ms: round away from zero
            ms = math.ceil(timeout * 1e3)
        try:
            fd_events = self._selector.poll(ms)
        except InterruptedError:
            return []
        ready: _Ready = []
        bad: list[selectors.SelectorKey] = []
        fd_to_key = self._fd_to_key
        for fd, revents in fd_events:
            key = fd_to_key.get(fd)
            if key is None:
                continue
            if revents & _POLLNVAL:
                bad.append(key)
                continue
            events = 0
            if revents & ~_POLLIN:
                events |= selectors.EVENT_WRITE
            if revents & ~_POLLOUT:
                events |= selectors.EVENT_READ
            ready.append((key, events & key.events))
        if bad:
            for key in bad:
                self.unregister(key.fd)
            raise BadFds(bad, ready, "poll() reported POLLNVAL")
        return ready


_selector_classes: dict[str, type[selectors.BaseSelector]] = {
    "select": SelectSelector,
    "poll": PollSelector,
}

if hasattr(selectors, "EpollSelector"):

    _EPOLLIN = select.EPOLLIN
    _EPOLLOUT = select.EPOLLOUT

    #: the events a registration may ask for (the base class refuses others)
    _ONE_OR_BOTH = frozenset({selectors.EVENT_READ, selectors.EVENT_WRITE,
                              selectors.EVENT_READ | selectors.EVENT_WRITE})
    #: a SelectorKey from its four fields (namedtuple's __new__ is a Python call)
    _new_key = tuple.__new__

    def _epoll_mask(events: int) -> int:
        return (_EPOLLIN if events & selectors.EVENT_READ else 0) | (
            _EPOLLOUT if events & selectors.EVENT_WRITE else 0)

    class EpollSelector(selectors.EpollSelector):
        """epoll(7) that registers and unregisters at once, takes a change
        of events at the next wait (``flush``), and asks the kernel on a
        callback-only ``modify`` too (when each ``epoll_ctl`` is made, and
        why: the module).

        The map (``get_key``, ``get_map``) is always up to date; the kernel
        has every registration in it, with the events of the last ``flush``
        for those in ``changed``. ``select()`` flushes first; the loop's
        watchers call ``flush()`` themselves before they poll the epoll
        object.

        - ``register``: ADD at once; an error (EPERM for a regular file,
          EBADF, ENOSPC, ENOMEM) drops the key and is raised, as CPython's
          ``register`` does. EEXIST (the kernel still has this file under
          this fd: a DEL that failed, a MOD that failed without going
          stale) takes the registration over with a MOD, as libuv does.
        - ``modify`` of the events: no syscall; one MOD at the next flush,
          and none if the events are back to what the kernel has by then.
        - ``modify`` of the data only: a MOD at once, so that a stale
          registration (its fd closed, its number maybe reused) is found
          now (``BadFds``).
        - ``unregister``: DEL at once.

        ``ctl_calls`` counts the ``epoll_ctl`` calls made (failed ones too).
        """

        # CPython's private state, used here (typeshed leaves it out)
        _selector: select.epoll
        _fd_to_key: dict[int, selectors.SelectorKey]

        def __init__(self) -> None:
            super().__init__()
            #: epoll_ctl calls made so far
            self.ctl_calls = 0
            #: fds whose events may differ from the kernel's (flush);
            #: mutated in place, never rebound (the loop's watchers hold it)
            self.changed: set[int] = set()
            # fd -> the key as the kernel last took it (its events are the
            # kernel's; its data says which watchers the kernel knew)
            self._kernel: dict[int, selectors.SelectorKey] = {}
            # the three controls, instance attributes so a test can fail them
            epoll = self._selector
            self._ctl_add, self._ctl_mod, self._ctl_del = epoll.register, epoll.modify, epoll.unregister

        @property
        def epoll(self) -> select.epoll:
            """The epoll object, which the loop polls itself (``watchers.FdWatchers.poll_fds``)."""
            return self._selector

        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            # the base class's map, then the kernel at once (the module)
            if type(fileobj) is int and fileobj >= 0 and events in _ONE_OR_BOTH and fileobj not in self._fd_to_key:
                # A bare fd not registered (every transport's): the key the
                # base class would make, without its three Python calls
                # to find the fd it already is (measured: add + forget of a
                # watcher 7.7 -> 4.1 us, with the watchers' own fast path)
                fd = fileobj
                key = _new_key(selectors.SelectorKey, (fd, fd, events, data))
                self._fd_to_key[fd] = key
            else:
                key = selectors._BaseSelectorImpl.register(self, fileobj, events, data)
                fd = key.fd
            mask = _epoll_mask(events)
            try:
                self.ctl_calls += 1
                try:
                    self._ctl_add(fd, mask)
                except FileExistsError:
                    self.ctl_calls += 1
                    self._ctl_mod(fd, mask)
            except BaseException:
                selectors._BaseSelectorImpl.unregister(self, fileobj)
                raise
            self._kernel[fd] = key
            return key

        def unregister(self, fileobj: Any) -> selectors.SelectorKey:
            # a bare fd's key found by its number, as the base class finds it
            found = self._fd_to_key.pop(fileobj, None) if type(fileobj) is int else None
            key = found if found is not None else selectors._BaseSelectorImpl.unregister(self, fileobj)
            fd = key.fd
            self.changed.discard(fd)
            if self._kernel.pop(fd, None) is not None:
                self.ctl_calls += 1
                try:
                    self._ctl_del(fd)
                except OSError:
                    pass  # closed already (the kernel dropped it, or will with the last reference)
            return key

        def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            found = self._fd_to_key.get(fileobj) if type(fileobj) is int else None
            key = found if found is not None else self.get_key(fileobj)  # KeyError if not registered
            fd = key.fd
            if events != key.events:
                if (not events) or (events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE)):
                    raise ValueError(f"Invalid events: {events!r}")
                new = key._replace(events=events, data=data)
                self._fd_to_key[fd] = new
                self.changed.add(fd)
                return new
            # Only the data changes: CPython would not ask the kernel; we
            # do, to find a stale registration (the module).
            new = key._replace(data=data)
            self.ctl_calls += 1
            try:
                self._ctl_mod(fd, _epoll_mask(events))
            except OSError as exc:
                # dropped, as CPython's modify drops a key the kernel refused
                self._fd_to_key.pop(fd, None)
                self._kernel.pop(fd, None)
                self.changed.discard(fd)
                if exc.errno not in _STALE_ERRNOS:
                    raise
                raise BadFds([key], [], f"epoll_ctl(MOD) failed: {exc}") from exc
            self._kernel[fd] = new
            self.changed.discard(fd)
            self._fd_to_key[fd] = new
            return new

        def flush(self) -> list[tuple[selectors.SelectorKey, selectors.SelectorKey, OSError]]:
            """Bring the kernel in step with the map: one MOD per changed fd
            whose events differ from the kernel's, none for the others. A
            registration whose MOD fails (it went stale: ENOENT, EBADF,
            EPERM; the module) is forgotten and returned as ``(key,
            kernel_key, error)``: ``kernel_key`` is the key as the kernel
            last took it, so the caller can tell the watchers the kernel
            knew (the closed file's) from those added since."""
            failed: list[tuple[selectors.SelectorKey, selectors.SelectorKey, OSError]] = []
            fd_to_key, kernel = self._fd_to_key, self._kernel
            for fd in self.changed:
                key = fd_to_key.get(fd)
                known = kernel.get(fd)
                if key is None or known is None:
                    continue  # (unregistered since: nothing to bring in step)
                mask = _epoll_mask(key.events)
                if _epoll_mask(known.events) != mask:
                    self.ctl_calls += 1
                    try:
                        self._ctl_mod(fd, mask)
                    except OSError as exc:
                        del fd_to_key[fd]
                        del kernel[fd]
                        failed.append((key, known, exc))
                        continue
                kernel[fd] = key
            self.changed.clear()
            return failed

        def select(self, timeout: float | None = None) -> _Ready:
            failed = self.flush() if self.changed else None
            ready = super().select(timeout)
            if failed:
                raise BadFds([key for key, _known, _exc in failed], ready,
                             f"epoll_ctl(MOD) failed: {failed[0][2]}") from failed[0][2]
            return ready

        def close(self) -> None:
            self.changed.clear()
            self._kernel.clear()
            super().close()

    _selector_classes["epoll"] = EpollSelector


@dataclass(frozen=True)
class BackendInfo:
    """What one backend is and what it can do."""

    name: str
    #: the stdlib class (what an asyncio loop's ``_run_once`` can use as is)
    selector_class: type[selectors.BaseSelector]
    #: what ``EventLoop`` uses: ``selector_class`` plus the bad-fd checks
    #: above, so its ``select()`` and ``modify()`` may raise ``BadFds``
    loop_selector_class: type[selectors.BaseSelector]
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
            checked = _selector_classes.get(name, cls)
            found.append(BackendInfo(name, cls, checked, max_fd, resolution, scaling))
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

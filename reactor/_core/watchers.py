"""Which callbacks watch which fds: one selector registration per fd.

Both faces of the loop keep their fd watchers here, through the loop core
(``reactor._core.core``) -- reactor's own ``EventLoop`` and the asyncio loop
in ``reactor.aio`` -- so the rules below are written once:

- A reader and a writer on one fd share one registration, whose data is the
  pair ``(reader, writer)``: adding or removing one *modifies* it (for epoll,
  one ``epoll_ctl(MOD)``, never a DEL and an ADD).
- On epoll, a change of events reaches the kernel at the next wait, as in
  libuv (``backends.EpollSelector``, where each ``epoll_ctl`` is made and
  why; ``_flush`` here, before each wait): a writer added to a reader and
  removed again before the loop waits costs nothing, a read -> read+write
  change one MOD.
  Registering and dropping a registration are not deferred: the ADD is
  made in ``add``, so that what the kernel refuses (EPERM for a regular
  file, EBADF for a closed fd, ENOSPC, ENOMEM) is raised to the caller, as
  asyncio's and uvloop's ``add_reader`` raise it; the DEL in ``remove`` and
  ``forget``, before the owner can close the fd (a DEL after the close
  cannot reach a file a ``dup`` or a forked child keeps open). A callback
  replaced on an fd still asks the kernel at once (the stale check below).
  ``ctl_calls`` counts the calls made.
- A deferred MOD the kernel refuses at the wait fails alone (``_flush``):
  only a stale registration refuses one (its file closed, the number maybe
  reused: ENOENT, EBADF, or EPERM for a regular file now), so the watchers
  the kernel knew end with a report, as a stale registration found at once
  does, and those added since are the number's new file's: registered
  afresh, or ended with a report if the kernel refuses that too.
- The select backend cannot watch an fd >= FD_SETSIZE (1024): CPython's
  ``select.select`` raises for such an fd on every later call, which would
  take the whole loop down. Such an fd is refused when it is added
  (``BackendLimitError``), before it is registered.
- Bad fds fail alone: an fd closed by user code while still watched ends
  only its own watchers. Our selectors (``backends.BackendInfo.
  loop_selector_class``) say which fds are dead by raising ``BadFds`` (how
  each kernel shows it is in ``backends``); their handles are cancelled and
  each fd is reported once, with ``OSError(EBADF)`` and the ``fd``. The
  check costs the hot path nothing: it is an ``except`` around the one
  ``select()`` call. A wait that finds a dead fd only sets it aside
  (``dead``): code that closes a socket and removes its watcher on the next
  turn (anyio does) did nothing wrong, and asyncio's poll loop cancels the
  queued handle then; so the report waits for the next wait, and is made
  only if the watcher is still there.
- The selector itself failing (MemoryError, ENOMEM) is reported and retried
  after a pause, never a busy loop and never the end of the loop.
- A handle is anything with ``cancel()`` and ``_cancelled``: reactor's
  ``Handle`` or asyncio's.

One way to wait, ``wait()``, on every backend: the kernel's ``(fd,
events)`` list, dispatched (``LoopCore._dispatch``) through ``by_fd`` (fd ->
the ``(reader, writer)`` pair, the same tuple as the selector key's data,
kept here beside the selector's map), with ``read_bits`` / ``write_bits``
saying which events wake which. On epoll it is ``poll_fds()``: the raw list
of ``epoll.poll``, nothing built per event. On select and poll it is the
selectors interface, ``select()``'s ``(key, mask)`` pairs, as ``(key.fd,
mask)``. Two rules make that dispatch as safe as the snapshot of keys that
``select()`` hands out:

- An fd whose registration is dropped while the loop dispatches a batch
  (a callback closed it, maybe a later one watched a new file under the
  same number) is in ``dropped`` until the next wait: the rest of that
  batch's events for it are the old file's and are skipped, as libuv's
  ``uv__platform_invalidate_fd`` does.
- Readiness maps to reader and writer the way ``selectors`` maps it: any
  bit but EPOLLOUT (IN, ERR, HUP, PRI) wakes the reader, any bit but
  EPOLLIN the writer (``EPOLL_READ``, ``EPOLL_WRITE``); a slot holds a
  handle exactly while its event is registered, so no mask is needed.
"""

from __future__ import annotations

import errno
import select as _select
import selectors
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import BackendLimitError
from .backends import BadFds

__all__ = ["FdWatchers", "fileobj_to_fd", "EVENT_READ", "EVENT_WRITE", "EPOLL_READ", "EPOLL_WRITE",
           "SELECT_RETRY_DELAY"]

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
#: epoll event bits that wake a reader / a writer (as in selectors: HUP and
#: ERR wake both)
EPOLL_READ = ~getattr(_select, "EPOLLOUT", 0)
EPOLL_WRITE = ~getattr(_select, "EPOLLIN", 0)
#: Most events one epoll wait returns. selectors asks for one per watched fd,
#: and epoll.poll allocates that array (12 bytes each) on every call: with
#: 10,000 idle connections, 120 KB per wait, near glibc's mmap threshold.
#: More ready fds than this are simply returned by the next wait (epoll
#: rotates its ready list, so none starves); libuv asks for 1024 too.
EPOLL_MAX_EVENTS = 1024
#: Pause after the selector itself failed (MemoryError, ENOMEM) before the
#: next try: a failure that repeats costs ten reports a second instead of a
#: busy loop, and the loop is back within this long once memory is free.
SELECT_RETRY_DELAY = 0.1


class Cancellable(Protocol):
    _cancelled: bool

    def cancel(self) -> None: ...


def fileobj_to_fd(fileobj: Any) -> int:
    """An fd from an int or an object with ``fileno()``; ``TypeError`` /
    ``ValueError`` naming the problem otherwise (asyncio raises ValueError for
    a negative fd too, so callers of both faces see one behaviour)."""
    if isinstance(fileobj, int) and not isinstance(fileobj, bool):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise TypeError(
                f"fileobj must be an int fd or have a fileno() method, not {type(fileobj).__name__}"
            ) from None
    if fd < 0:
        raise ValueError(f"fileobj has an invalid fd {fd} (closed?)")
    return fd


def _events_of(pair: tuple[Any, Any]) -> int:
    """The events a ``(reader, writer)`` pair is registered for: a
    registration's events are exactly the handles it has (``add``,
    ``remove`` and ``_flush`` keep it so)."""
    return (EVENT_READ if pair[0] is not None else 0) | (EVENT_WRITE if pair[1] is not None else 0)


class FdWatchers:
    """The selector and the ``(reader, writer)`` pair registered per fd."""

    def __init__(self, selector: selectors.BaseSelector, backend: str, max_fd: int | None,
                 report: Callable[[dict[str, Any]], None]) -> None:
        self.selector = selector
        self.backend = backend
        #: watched fds must be below this (select's FD_SETSIZE), or None
        self.max_fd = max_fd
        #: the loop's exception handler (bad fds, a failing selector)
        self._report = report
        #: fd -> its ``(reader, writer)`` pair, the selector key's data (the
        #: module); mutated in place, never rebound: the loop holds it
        self.by_fd: dict[int, tuple[Any, Any]] = {}
        #: fds whose registration went since the last wait (the module)
        self.dropped: set[int] = set()
        #: fds a wait found closed, set aside until the next wait: fd -> the
        #: [reader, writer] handles not removed yet (the module)
        self.dead: dict[int, list[Any]] = {}
        self._dead_cause: Any = None  # the BadFds that found them
        #: fd -> the object (a socket, a file) its watcher was added with,
        #: for watchers added with one: ``fd_of`` finds a registration by its
        #: object once the object is closed (fileno() -1), as selectors
        #: does. Transports watch bare fds, so this is empty on the data path.
        self.objects: dict[int, Any] = {}
        # epoll.poll, for poll_fds (None on other backends: our
        # EpollSelector gives its epoll object, backends.EpollSelector.epoll)
        epoll: Any = getattr(selector, "epoll", None)
        self._epoll_poll = epoll.poll if hasattr(_select, "epoll") and isinstance(epoll, _select.epoll) else None
        #: the fds whose interest changed since the last wait (our
        #: EpollSelector's ``changed``, flushed before the next wait; the
        #: module), or None on a selector that asks the kernel nothing
        self._changed: set[int] | None = getattr(selector, "changed", None)
        #: how the loop waits: the kernel's (fd, events) on every backend (the module)
        self.wait: Callable[[float | None], list[tuple[int, int]]]
        if self._epoll_poll is not None:
            self.wait = self.poll_fds
            #: the event bits that wake a fd's reader / writer in what wait() returns
            self.read_bits, self.write_bits = EPOLL_READ, EPOLL_WRITE
        else:
            self.wait = self.select_fds
            self.read_bits, self.write_bits = EVENT_READ, EVENT_WRITE

    @property
    def ctl_calls(self) -> int:
        """The control calls (``epoll_ctl``) made so far; 0 on select and
        poll, whose registrations are the process's own tables."""
        return int(getattr(self.selector, "ctl_calls", 0))

    def _set(self, fd: int, data: tuple[Any, Any]) -> None:
        self.by_fd[fd] = data

    def _drop(self, fd: int) -> None:
        """The registration of ``fd`` is gone (see the module)."""
        self.by_fd.pop(fd, None)
        self.dropped.add(fd)
        if self.objects:
            self.objects.pop(fd, None)

    def fd_of(self, fileobj: Any) -> int:
        """The fd of ``fileobj`` (``fileobj_to_fd``); for an object closed
        since its watcher was added (``fileno()`` is -1), the fd it was
        watched under, found by identity -- so ``remove_reader(sock)`` after
        ``sock.close()`` still removes the watcher, as asyncio's does.
        ``ValueError`` if it was never watched."""
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            for fd, watched in self.objects.items():
                if watched is fileobj:
                    return fd
            raise

    def _resync(self, fd: int) -> None:
        """After the selector raised while changing ``fd``: take its word
        for what is registered now (CPython's modify drops the key on a
        kernel error)."""
        try:
            self._set(fd, self.selector.get_key(fd).data)
        except KeyError:
            self._drop(fd)

    def select(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait for events; dead fds and a failing selector are dealt with
        here (see the module) and never raise."""
        # try costs nothing until something is raised (3.11's zero-cost
        # exceptions): the failure paths below add no work per iteration.
        if self.dropped:
            self.dropped.clear()  # keys are a snapshot: nothing to skip (the module)
        if self.dead:
            self._end_dead()
        try:
            return self.selector.select(timeout)
        except BadFds as bad:
            self._set_aside(bad)
            return bad.ready
        except (OSError, MemoryError) as exc:
            self._selector_failed(exc)
            return []

    def select_fds(self, timeout: float | None) -> list[tuple[int, int]]:
        """``select()``'s events as ``(fd, mask)``, for dispatch through
        ``by_fd`` like ``poll_fds``'s (select and poll)."""
        return [(key.fd, mask) for key, mask in self.select(timeout)]

    def poll_fds(self, timeout: float | None) -> list[tuple[int, int]]:
        """epoll only: wait, and return the kernel's ``(fd, events)`` list
        as it is, for dispatch through ``by_fd`` and ``dropped`` (the
        module). A failing epoll is dealt with as in ``select()``; epoll
        has no bad fds to find (``backends``)."""
        poll = self._epoll_poll
        assert poll is not None, "poll_fds() is for the epoll backend"
        if self._changed:
            self._flush()
        try:
            # epoll.poll takes seconds and rounds up to its milliseconds;
            # a negative timeout would mean "forever", as None does
            events = poll(-1 if timeout is None else timeout if timeout > 0 else 0,
                          min(len(self.by_fd), EPOLL_MAX_EVENTS) or 1)
        except InterruptedError:
            events = []
        except (OSError, MemoryError) as exc:
            self._selector_failed(exc)
            events = []
        if self.dropped:
            # dropped before this wait: the kernel knew it when it answered
            self.dropped.clear()
        return events

    def _flush(self) -> None:
        """Bring the kernel in step before a wait (epoll's deferred MODs:
        the module). A MOD it refuses went stale: the watchers the kernel
        knew end with a report; those added since are the number's new
        file's, watched afresh (what ``add`` does when it finds a stale
        registration at once), or ended with a report too if the kernel
        refuses them (the number is free, or names a regular file now)."""
        for key, known, exc in self.selector.flush():  # type: ignore[attr-defined]
            fd = key.fd
            reader, writer = key.data
            self._drop(fd)
            old = known.data
            fresh = (None if reader in old else reader, None if writer in old else writer)
            gone = (None if fresh[0] is not None else reader, None if fresh[1] is not None else writer)
            self.end_watchers(BadFds([key._replace(data=gone)], [], f"epoll_ctl(MOD) failed: {exc}"),
                              cause=exc)
            if fresh == (None, None):
                continue
            try:
                self.selector.register(fd, _events_of(fresh), fresh)
            except OSError as refused:  # EBADF (the number is free), EPERM (a regular file now)
                self.end_watchers(BadFds([key._replace(data=fresh)], [], f"epoll_ctl(ADD) failed: {refused}"),
                                  cause=refused)
                continue
            self._set(fd, fresh)

    def _set_aside(self, bad: BadFds) -> None:
        """A wait found the fds in ``bad`` closed (the selector has forgotten
        them): keep their watchers aside until the next wait, so that a
        ``remove`` meanwhile ends them quietly (the module)."""
        for key in bad.keys:
            self.by_fd.pop(key.fd, None)
            self.dropped.add(key.fd)
            self.dead[key.fd] = [*key.data]
        self._dead_cause = bad

    def _end_dead(self) -> None:
        """The next wait: whatever set-aside watcher was not removed since
        is ended and reported (``end_watchers``)."""
        dead, self.dead = self.dead, {}
        bad = self._dead_cause
        keys = [selectors.SelectorKey(fd, fd, 0, (reader, writer)) for fd, (reader, writer) in dead.items()]
        for fd in dead:
            self.objects.pop(fd, None)
        self.end_watchers(BadFds(keys, [], bad.how), cause=bad.__cause__)

    def end_watchers(self, bad: BadFds, cause: BaseException | None = None) -> None:
        """The fds in ``bad`` were closed while watched, and the selector
        has forgotten them: cancel their watchers, report each fd once."""
        for key in bad.keys:
            self._drop(key.fd)
            live = [handle for handle in key.data if handle is not None and not handle._cancelled]
            if not live:
                continue  # its watchers were cancelled already: nobody to tell
            names = " and ".join(repr(handle) for handle in live)  # before cancel() forgets them
            for handle in live:
                handle.cancel()
            error = OSError(errno.EBADF, f"fd {key.fd} was closed while it was watched")
            error.__cause__ = bad.__cause__ if cause is None else cause
            self._report({
                "message": f"fd {key.fd} was closed while still watched ({bad.how}); removed its watcher {names}",
                "exception": error,
                "fd": key.fd,
                "handle": live[0],
            })

    def _selector_failed(self, exc: BaseException) -> None:
        """The selector raised (MemoryError, ENOMEM ...): report, pause, and
        let the next iteration try again."""
        try:
            self._report({
                "message": f"the {self.backend} selector failed; trying again in {SELECT_RETRY_DELAY} s",
                "exception": exc,
            })
        except MemoryError:
            pass  # reporting needs memory too; the pause below still applies
        time.sleep(SELECT_RETRY_DELAY)

    def check_fd(self, fd: int) -> None:
        """Raise ``BackendLimitError`` if this backend cannot watch ``fd``."""
        if self.max_fd is not None and fd >= self.max_fd:
            raise BackendLimitError(
                f"the {self.backend} backend cannot watch fd {fd}: "
                f"FD_SETSIZE is {self.max_fd}; use the poll or epoll backend"
            )

    def add(self, fd: int, event: int, handle: Cancellable, fileobj: Any = None) -> None:
        """Watch ``fd`` for ``event`` with ``handle``, replacing (and
        cancelling) a previous handle for the same event. ``fileobj``: the
        object ``fd`` came from, if not a bare int (``fd_of``)."""
        self.check_fd(fd)
        if fd in self.dead:
            # the number names another file now: the old one's watchers,
            # never removed, end here (reported) rather than at the next wait
            reader, writer = self.dead.pop(fd)
            self.objects.pop(fd, None)
            self.end_watchers(BadFds([selectors.SelectorKey(fd, fd, 0, (reader, writer))], [],
                                     self._dead_cause.how), cause=self._dead_cause.__cause__)
        if fileobj is not None and not isinstance(fileobj, int):
            self.objects[fd] = fileobj
        selector = self.selector
        # by_fd is the selector's map (never out of step): the registration
        # and its events, without get_key's lookups (and its KeyError)
        by_fd = self.by_fd
        if fd not in by_fd:
            data = (handle, None) if event == EVENT_READ else (None, handle)
            selector.register(fd, event, data)
            self._set(fd, data)
            return
        pair = by_fd[fd]  # (a test and a subscript: cheaper compiled than .get)
        reader, writer = pair
        if event == EVENT_READ:
            old, data = reader, (handle, writer)
        else:
            old, data = writer, (reader, handle)
        try:
            selector.modify(fd, _events_of(pair) | event, data)
        except BadFds as bad:
            # The registration is stale: its fd was closed without
            # remove_reader/remove_writer (epoll: this number now names
            # another file). End those watchers, then watch this file afresh.
            self.end_watchers(bad)
            data = (handle, None) if event == EVENT_READ else (None, handle)
            selector.register(fd, event, data)
            self._set(fd, data)
            return
        except BaseException:
            self._resync(fd)
            raise
        self._set(fd, data)
        if old is not None:
            old.cancel()

    def remove(self, fd: int, event: int) -> bool:
        """Stop watching ``fd`` for ``event``; True if a handle was removed
        (and cancelled)."""
        selector = self.selector
        pair = self.by_fd.get(fd)  # the selector key's data, without get_key's lookups
        if pair is None:
            return self._remove_dead(fd, event)
        reader, writer = pair
        if event == EVENT_READ:
            old, data = reader, (None, writer)
        else:
            old, data = writer, (reader, None)
        if old is None:
            return False
        mask = _events_of(pair) & ~event
        if mask:
            # (events change: epoll is asked at the next wait, where a
            # closed fd ends the other watcher with a report, ``_flush``)
            try:
                selector.modify(fd, mask, data)
            except BaseException:
                self._resync(fd)
                raise
            self._set(fd, data)
        else:
            selector.unregister(fd)
            self._drop(fd)
        old.cancel()
        return True

    def _remove_dead(self, fd: int, event: int) -> bool:
        """``remove`` of a watcher a wait found closed (``dead``): it goes
        quietly, as the owner meant it to."""
        pair = self.dead.get(fd)
        if pair is None:
            return False
        slot = 0 if event == EVENT_READ else 1
        old = pair[slot]
        if old is None:
            return False
        pair[slot] = None
        old.cancel()
        if pair[0] is None and pair[1] is None:
            del self.dead[fd]
            self.objects.pop(fd, None)
        return True

    def forget(self, fd: int) -> None:
        """Drop every watcher on ``fd`` at once (its owner is closing it)."""
        try:
            key = self.selector.unregister(fd)
        except KeyError:
            self.by_fd.pop(fd, None)  # (never out of step; cheap to be sure)
            pair = self.dead.pop(fd, None)
            if pair is not None:  # found closed by a wait: its owner ends it now
                self.objects.pop(fd, None)
                for handle in pair:
                    if handle is not None:
                        handle.cancel()
            return
        self._drop(fd)
        for handle in key.data:
            if handle is not None:
                handle.cancel()

    def handle_for(self, fd: int, event: int) -> Any:
        """The handle watching ``fd`` for ``event``, or None."""
        try:
            key = self.selector.get_key(fd)
        except KeyError:
            return None
        return key.data[0] if event == EVENT_READ else key.data[1]

    def close(self) -> None:
        self.selector.close()
        self.by_fd.clear()
        self.dead.clear()

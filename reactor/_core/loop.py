"""The reactor: one thread, one selector, callbacks and timers.

Rules of this module:

- Only ``EventLoop._run_once`` waits in the selector; nothing else here blocks.
- One iteration: wait for I/O (no longer than the next timer, zero if
  callbacks are queued), run the I/O callbacks the backend reported, move due
  timers to the ready queue, then run exactly the callbacks that were ready at
  that point -- callbacks they schedule wait for the next iteration, so a
  callback that reschedules itself cannot starve I/O.
- A reader and a writer on one fd share one selector registration; adding or
  removing one *modifies* it (for epoll, one ``epoll_ctl(MOD)``; no syscall at
  all when only the callback changes).
- Cross-thread and signal wake-ups go through one non-blocking socketpair: a
  thread writes a zero byte, the C-level signal handler writes the signal
  number (``signal.set_wakeup_fd``). The Python-level signal handler does
  nothing, so user signal callbacks run on the loop, between other callbacks,
  never inside the signal context.
- Timers live in a heap of ``(when, seq, handle)``; ``seq`` keeps equal
  deadlines in scheduling order. Cancelled timers stay in the heap until they
  reach the top (lazy deletion), unless they become the majority, when the
  heap is rebuilt so that cancel-heavy code does not grow it without bound.
- One clock: ``time()`` and ``_run_once`` both read the clock the loop was
  given (``time.monotonic`` by default), so a test can hand in a virtual
  clock and run backoffs and deadlines without sleeping. The selector waits
  in real seconds, which another clock cannot promise to match (a virtual
  one jumps when told): with such a clock a wait is at most
  ``_FOREIGN_CLOCK_MAX_WAIT``, and ``stop()`` + ``run()`` (one step) never
  waits at all.
- The fd watchers live in ``watchers.FdWatchers`` (shared with the asyncio
  face): one registration per fd, select's FD_SETSIZE guard, bad fds that
  fail alone, and a failing selector that is reported and retried after a
  pause -- never the end of ``run()``.
- On epoll the loop waits through ``FdWatchers.poll_fds`` and dispatches the
  kernel's ``(fd, events)`` list by fd (``by_fd``, ``dropped``): no key
  object and no tuple built per event; select and poll go through
  ``selectors`` (``FdWatchers.select``). Either way the loop waits through
  ``self._wait``, one attribute, which tests wrap to watch the waits.
- A ready reader's callback runs inline on the epoll path, with
  ``Handle._run``'s guard copied (SystemExit and KeyboardInterrupt
  propagate, anything else goes to ``Handle._failed``, the exception
  handler): one Python call less per event. Everything else runs through
  ``Handle._run``.
- This floor knows nothing about sockets: listeners, connections and the
  accelerator live in ``reactor._net``, which builds ``Reactor`` on this
  loop. What they own is closed through the resource interface
  (``reactor._core.resources``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import signal
import socket
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Self

from ..errors import ReactorStateError
from .backends import BackendInfo, backend_info, round_timeout
from .checks import check_callable, check_int, check_seconds
from .handles import Handle, TimerHandle
from .resources import Resource
from .watchers import EPOLL_READ, EPOLL_WRITE, SELECT_RETRY_DELAY, FdWatchers, fileobj_to_fd

__all__ = ["EventLoop", "Clock", "BACKEND_ENV"]

logger = logging.getLogger("reactor")

_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE

#: Longest single wait: select/poll/epoll reject huge timeouts (epoll_wait
#: takes an int of milliseconds), and a timer at +inf must not overflow them.
_MAX_TIMEOUT = 86400.0
#: Longest wait while a timer is pending on a clock that is not
#: time.monotonic: such a clock (a test's virtual one) may jump while the
#: selector waits, and its seconds say nothing about real ones, so the loop
#: looks at it again this often (100 wake-ups a second, only in tests).
_FOREIGN_CLOCK_MAX_WAIT = 0.01
#: (the pause after the selector itself failed: see ``watchers``)
_SELECT_RETRY_DELAY = SELECT_RETRY_DELAY
#: EventLoop.close() closes resources in at most this many rounds: callbacks
#: run while closing (connection_lost) may open new ones, but not forever.
_CLOSE_ROUNDS = 10
#: How many of the resources left open after those rounds the ERROR names.
_CLOSE_LEFT_SHOWN = 5
#: The environment variable that picks the backend when none is given.
BACKEND_ENV = "REACTOR_BACKEND"

#: A clock: seconds, monotonic, as a float.
Clock = Callable[[], float]
#: Rebuild the timer heap when more than this many entries are cancelled ...
_TIMER_COMPACT_MIN = 100
#: ... and they are more than this fraction of the heap.
_TIMER_COMPACT_FRACTION = 0.5


def _ignore_signal(signum: int, frame: Any) -> None:
    """Python-level signal handler: the work happens on the loop, woken by the
    byte the C-level handler wrote to the wake-up fd."""


class EventLoop:
    """An event loop over one ``selectors`` backend: callbacks, timers, fd
    watchers, signals and thread wake-ups. ``reactor.Reactor`` adds sockets.

    ``backend`` is ``None`` (``$REACTOR_BACKEND``, read now, else
    ``"auto"``), ``"auto"`` (the best available) or a name from
    :func:`reactor.available_backends`.

    ``clock`` replaces ``time.monotonic`` for both ``time()`` and the loop's
    own deadlines. A virtual clock is for tests that *step* the loop:
    advance the clock, then ``stop()`` and ``run()`` for one iteration that
    never waits, and whatever became due runs. The selector still waits in
    real time, so while a timer is pending on a clock other than
    ``time.monotonic`` a wait lasts at most ``_FOREIGN_CLOCK_MAX_WAIT``
    (10 ms): a timer 30 virtual seconds away does not make ``run()`` sleep
    30 real ones, and a clock moved by another thread is seen soon.
    """

    def __init__(self, backend: str | None = None, *, clock: Clock | None = None) -> None:
        info = backend_info(backend) if backend is not None else _backend_from_env()
        if clock is not None:
            check_callable(clock, "clock")
        self._clock: Clock = clock if clock is not None else time.monotonic
        #: longest wait in the selector while a timer is pending (see the class)
        self._max_wait = _MAX_TIMEOUT if self._clock is time.monotonic else _FOREIGN_CLOCK_MAX_WAIT
        self.backend: str = info.name
        #: watched fds must be below this (select's FD_SETSIZE), or None
        self.max_fd: int | None = info.max_fd
        self._resolution = info.resolution
        self._closed = True  # until the fds below exist, so __del__ is safe
        self._closing = False  # close() is closing the resources (see close())
        self._selector = info.loop_selector_class()
        self._watchers = FdWatchers(self._selector, info.name, info.max_fd, self.call_exception_handler)
        # how _run_once waits, and (epoll only) the map it dispatches by: see the module
        self._by_fd: dict[int, tuple[Any, Any]] | None
        self._wait: Callable[[float | None], Any]
        if info.name == "epoll":
            self._by_fd, self._dropped = self._watchers.by_fd, self._watchers.dropped
            self._wait = self._watchers.poll_fds
        else:
            self._by_fd, self._dropped = None, set()
            self._wait = self._watchers.select
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = 0
        self._running = False
        self._stopping = False
        self._thread_id: int | None = None
        self._exception_handler: Callable[[Any, dict[str, Any]], Any] | None = None
        self._signal_handlers: dict[int, Handle] = {}
        self._previous_wakeup_fd: int | None = None
        # what close() must close: see track_resource()
        self._resources: set[Resource] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = False
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self.add_reader(self._wake_r, self._read_wakeup)

    # ----------------------------------------------------------- lifecycle

    def time(self) -> float:
        """The loop's clock, in seconds: ``time.monotonic()`` unless another
        clock was given."""
        return self._clock()

    def is_running(self) -> bool:
        """True while ``run()`` is executing."""
        return self._running

    def is_closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def run(self) -> None:
        """Run callbacks and I/O until ``stop()`` is called.

        Raises ``ReactorStateError`` if the reactor is already running (a
        nested ``run()`` from a callback) or closed.
        """
        self._check_open()
        if self._running:
            raise ReactorStateError("run() called while the reactor is already running")
        self._running = True
        self._thread_id = threading.get_ident()
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._running = False
            self._thread_id = None

    def stop(self) -> None:
        """Make ``run()`` return after the current iteration.

        Called before ``run()``, the next ``run()`` does one iteration and
        returns. Safe to call from another thread.
        """
        self._stopping = True
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            self._write_wakeup()

    def close(self) -> None:
        """Release the selector, the wake-up fds and whatever listeners and
        transports are still open on this reactor. Idempotent; raises
        ``ReactorStateError`` while running."""
        if self._running:
            raise ReactorStateError("cannot close a running reactor; stop() it first")
        if self._closed:
            return
        # Callbacks scheduled from here on would never run: a layer that
        # defers its protocol's connection_lost (asyncio's TLS layer) looks
        # at this and calls it at once instead.
        self._closing = True
        self._close_resources()
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        self._closed = True
        self._ready.clear()
        for _, _, handle in self._timers:
            handle._scheduled = False
            handle.cancel()
        self._timers.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def track_resource(self, resource: Resource) -> None:
        """Register ``resource`` (a listener, connection, connect attempt ...)
        so that ``close()`` closes it if its owner has not. The resource calls
        ``untrack_resource`` itself when it closes by other means.

        Raises ``ReactorStateError`` once the loop is closed: nothing would
        ever close the resource then. (While ``close()`` runs, callbacks may
        still open resources; they are closed in the same ``close()``.)"""
        self._check_open()
        self._resources.add(resource)

    def untrack_resource(self, resource: Resource) -> None:
        """Forget ``resource``; harmless if it is not tracked."""
        self._resources.discard(resource)

    def _close_resources(self) -> None:
        # In close_order (listeners first, so that none resumes accepting
        # while connections close). Closing runs callbacks (connection_lost)
        # that may open new resources: those are closed too, in at most
        # _CLOSE_ROUNDS rounds. Whatever is still open after that is named
        # at ERROR, never dropped silently.
        closed: list[str] = []  # type names, for the log
        for _ in range(_CLOSE_ROUNDS):
            if not self._resources:
                break
            batch = sorted(self._resources, key=_close_order)
            self._resources = set()
            for index, resource in enumerate(batch):
                try:
                    resource.close_for_loop()
                except (SystemExit, KeyboardInterrupt):
                    # The rest stays tracked, so a second close() finishes.
                    self._resources.update(batch[index + 1:])
                    raise
                except BaseException as exc:
                    self.call_exception_handler({
                        "message": f"exception closing {resource!r} with the loop",
                        "exception": exc,
                        "resource": resource,
                    })
                else:
                    closed.append(type(resource).__name__)
        if closed:
            logger.info("%r closed what was still open: %s", self, _count_names(closed))
        if self._resources:
            # Something opens a resource every time one closes: stop rather
            # than loop forever, and say what is left open.
            left = sorted(self._resources, key=_close_order)
            self._resources = set()
            shown = ", ".join(repr(resource) for resource in left[:_CLOSE_LEFT_SHOWN])
            logger.error(
                "%r: closing kept opening new resources; after %d rounds %d are left open: %s (%s%s)",
                self, _CLOSE_ROUNDS, len(left), _count_names(type(r).__name__ for r in left), shown,
                ", ..." if len(left) > _CLOSE_LEFT_SHOWN else "",
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed reactor {self!r}", ResourceWarning, source=self)
            if not self._running:
                self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<{type(self).__name__} backend={self.backend} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ReactorStateError("the reactor is closed")

    # ------------------------------------------------------------ the loop

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout: float | None = 0.0
        else:
            timeout = None
            while timers:
                when, _, timer = timers[0]
                if timer._cancelled:
                    heapq.heappop(timers)
                    timer._scheduled = False
                    self._cancelled_timers -= 1
                    continue
                timeout = round_timeout(min(when - self._clock(), self._max_wait), self._resolution)
                break

        by_fd = self._by_fd
        if by_fd is not None:
            # epoll: the kernel's (fd, events), dispatched by fd (module docs)
            dropped = self._dropped
            for fd, events in self._wait(timeout):
                pair = by_fd.get(fd)
                if pair is None or (dropped and fd in dropped):
                    continue  # unwatched, or the file it named is gone
                reader, writer = pair
                if reader is not None and events & EPOLL_READ and not reader._cancelled:
                    # Handle._run, inline (module docs)
                    try:
                        reader._callback(*reader._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        reader._failed(exc)
                if writer is not None and events & EPOLL_WRITE and not writer._cancelled:
                    writer._run()
        else:
            for key, mask in self._wait(timeout):
                reader, writer = key.data
                if mask & _EVENT_READ and reader is not None and not reader._cancelled:
                    reader._run()
                if mask & _EVENT_WRITE and writer is not None and not writer._cancelled:
                    writer._run()

        if timers:
            now = self._clock()
            while timers and timers[0][0] <= now:
                timer = heapq.heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    ready.append(timer)

        # Only what is ready now: callbacks scheduled by these run next time.
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()

    # ---------------------------------------------------------- scheduling

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next iteration, after the callbacks
        already queued (FIFO). Not thread-safe: see ``call_soon_threadsafe``."""
        check_callable(callback, "callback")
        self._check_open()
        handle = Handle(callback, args, self)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Like ``call_soon``, from any thread: wakes the loop if it is waiting."""
        check_callable(callback, "callback")
        self._check_open()
        handle = Handle(callback, args, self)
        self._ready.append(handle)  # deque.append is atomic
        if not self._wake_pending:
            self._wake_pending = True
            self._write_wakeup()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once ``delay`` seconds have passed (never
        earlier). A delay <= 0 runs it on the next iteration, after callbacks
        already queued with ``call_soon``."""
        return self.call_at(self.time() + check_seconds(delay, "delay"), callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once ``self.time()`` reaches ``when``."""
        when = check_seconds(when, "when")
        check_callable(callback, "callback")
        self._check_open()
        handle = TimerHandle(when, callback, args, self)
        handle._scheduled = True
        heapq.heappush(self._timers, (when, next(self._timer_seq), handle))
        return handle

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        if (
            self._cancelled_timers > _TIMER_COMPACT_MIN
            and self._cancelled_timers > _TIMER_COMPACT_FRACTION * len(self._timers)
        ):
            live = []
            for entry in self._timers:
                if entry[2]._cancelled:
                    entry[2]._scheduled = False
                else:
                    live.append(entry)
            heapq.heapify(live)
            self._timers[:] = live
            self._cancelled_timers = 0

    # ---------------------------------------------------------- fd watchers

    def add_reader(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> Handle:
        """Call ``callback(*args)`` whenever ``fileobj`` is readable; replaces
        a previous reader on the same fd."""
        return self._add_watcher(fileobj, callback, args, _EVENT_READ)

    def add_writer(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> Handle:
        """Call ``callback(*args)`` whenever ``fileobj`` is writable; replaces
        a previous writer on the same fd."""
        return self._add_watcher(fileobj, callback, args, _EVENT_WRITE)

    def remove_reader(self, fileobj: Any) -> bool:
        """Stop watching ``fileobj`` for reading; True if a reader was removed."""
        return self._remove_watcher(fileobj, _EVENT_READ)

    def remove_writer(self, fileobj: Any) -> bool:
        """Stop watching ``fileobj`` for writing; True if a writer was removed."""
        return self._remove_watcher(fileobj, _EVENT_WRITE)

    def _add_watcher(self, fileobj: Any, callback: Callable[..., Any], args: tuple, event: int) -> Handle:
        check_callable(callback, "callback")
        self._check_open()
        fd = fileobj_to_fd(fileobj)
        self._watchers.check_fd(fd)  # before the handle exists: select's FD_SETSIZE
        handle = Handle(callback, args, self)
        self._watchers.add(fd, event, handle, fileobj)
        return handle

    def _remove_watcher(self, fileobj: Any, event: int) -> bool:
        if self._closed:
            return False
        return self._watchers.remove(self._watchers.fd_of(fileobj), event)

    def _forget_fd(self, fd: int) -> None:
        """Drop every watcher on ``fd`` at once (its owner is closing it)."""
        if not self._closed:
            self._watchers.forget(fd)

    # ------------------------------------------------- wake-ups and signals

    def _write_wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            # Full (a wake-up is pending anyway) or closed (nothing to wake).
            pass

    def _read_wakeup(self) -> None:
        signals = bytearray()
        while True:
            try:
                data = self._wake_r.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            signals += data
        # Cleared after draining: a thread that appends from here on writes
        # a new byte; one that appended before is seen by this iteration.
        self._wake_pending = False
        for signum in signals:
            if signum:
                handle = self._signal_handlers.get(signum)
                if handle is not None:
                    self._ready.append(handle)

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop when ``signum`` arrives.

        The callback runs between other callbacks, not in the signal context.
        Only the main thread may install signal handlers (``ValueError``
        otherwise, as with ``signal.signal``).
        """
        check_callable(callback, "callback")
        self._check_open()
        signum = _check_signum(signum)
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("add_signal_handler() must be called from the main thread")
        if not self._signal_handlers:
            previous = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            self._previous_wakeup_fd = previous
        self._signal_handlers[signum] = Handle(callback, args, self)
        try:
            signal.signal(signum, _ignore_signal)
            # Restart interrupted syscalls; the wake-up byte does the waking.
            signal.siginterrupt(signum, False)
        except (OSError, RuntimeError) as exc:
            del self._signal_handlers[signum]
            self._restore_wakeup_fd()
            raise ValueError(f"cannot handle signal {signum}: {exc}") from None

    def remove_signal_handler(self, signum: int) -> bool:
        """Restore the default action for ``signum``; True if a handler was
        removed."""
        signum = _check_signum(signum)
        handle = self._signal_handlers.pop(signum, None)
        if handle is None:
            return False
        handle.cancel()
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(signum, default)
        except (OSError, ValueError):
            pass
        self._restore_wakeup_fd()
        return True

    def _restore_wakeup_fd(self) -> None:
        if not self._signal_handlers and self._previous_wakeup_fd is not None:
            try:
                signal.set_wakeup_fd(self._previous_wakeup_fd)
            except ValueError:
                pass
            self._previous_wakeup_fd = None

    # ----------------------------------------------------------- exceptions

    def set_exception_handler(self, handler: Callable[[Any, dict[str, Any]], Any] | None) -> None:
        """Install ``handler(reactor, context)`` for exceptions from callbacks;
        ``None`` restores the default, which logs them."""
        if handler is not None:
            check_callable(handler, "handler")
        self._exception_handler = handler

    def get_exception_handler(self) -> Callable[[Any, dict[str, Any]], Any] | None:
        """The handler set with ``set_exception_handler``, or None."""
        return self._exception_handler

    def default_exception_handler(self, context: dict) -> None:
        """Log ``context['message']`` with the exception's traceback."""
        message = context.get("message") or "unhandled exception in a reactor callback"
        exc = context.get("exception")
        details = [f"{key}={value!r}" for key, value in context.items() if key not in ("message", "exception")]
        if details:
            message = f"{message} ({', '.join(details)})"
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        logger.error(message, exc_info=exc_info)

    def call_exception_handler(self, context: dict) -> None:
        """Report ``context`` (keys: message, exception, and what was
        involved: handle, transport, protocol, listener) to the handler."""
        handler = self._exception_handler
        if handler is None:
            self.default_exception_handler(context)
            return
        try:
            handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.default_exception_handler(
                {"message": "exception in the exception handler", "exception": exc, "context": context}
            )


def _close_order(resource: Resource) -> int:
    return resource.close_order


def _count_names(names: Iterable[str]) -> str:
    """``["Transport", "Listener", "Transport"]`` -> ``"1 Listener, 2 Transport"``."""
    counts = Counter(names)
    return ", ".join(f"{counts[name]} {name}" for name in sorted(counts))


def _backend_from_env() -> BackendInfo:
    """The backend ``$REACTOR_BACKEND`` names (read now), else "auto"'s."""
    name = os.environ.get(BACKEND_ENV, "").strip()
    if not name:
        return backend_info("auto")
    try:
        return backend_info(name)
    except ValueError as exc:
        raise ValueError(f"${BACKEND_ENV}={name!r}: {exc}") from None


def _check_signum(signum: Any) -> int:
    return check_int(signum, "signum", minimum=1, maximum=signal.NSIG - 1)

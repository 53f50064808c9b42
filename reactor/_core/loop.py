"""The reactor: one thread, one selector, callbacks and timers.

Rules of this module:

- Only ``EventLoop._run_once`` waits in the selector; nothing else here blocks.
- One iteration: wait for I/O (no longer than the next timer, zero if
  callbacks are queued), run the I/O callbacks the backend reported, move due
  timers to the ready queue, then run exactly the callbacks that were ready at
  that point -- callbacks they schedule wait for the next iteration, so a
  callback that reschedules itself cannot starve I/O.
- What this loop shares with reactor.aio's -- the fd watchers and their
  dispatch, the wake-up pipe, signals, resources and the read buffer -- is
  the loop core (``reactor._core.core.LoopCore``, its rules there); this
  module adds reactor's scheduling: how callbacks and timers queue and run.
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
- The loop waits through ``self._wait`` (``FdWatchers.wait``: the kernel's
  ``(fd, events)`` on every backend), one attribute, which tests wrap to
  watch the waits, and the core runs the ready watchers' callbacks at once,
  inline (``LoopCore._dispatch`` without a queue), before the callbacks
  that were ready: a watcher's callback never waits behind a queue.
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
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from ..errors import ReactorStateError
from .backends import BackendInfo, backend_info, round_timeout
from .checks import check_callable, check_int, check_seconds
from .core import LoopCore
from .handles import Handle, TimerHandle
from .watchers import SELECT_RETRY_DELAY, fileobj_to_fd

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
#: The environment variable that picks the backend when none is given.
BACKEND_ENV = "REACTOR_BACKEND"

#: A clock: seconds, monotonic, as a float.
Clock = Callable[[], float]
#: Rebuild the timer heap when more than this many entries are cancelled ...
_TIMER_COMPACT_MIN = 100
#: ... and they are more than this fraction of the heap.
_TIMER_COMPACT_FRACTION = 0.5


class EventLoop(LoopCore):
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
        self._resolution = info.resolution
        self._closed = True  # until the fds below exist, so __del__ is safe
        self._running = False
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = 0
        self._stopping = False
        self._thread_id: int | None = None
        self._exception_handler: Callable[[Any, dict[str, Any]], Any] | None = None
        # the selector, the wake-up pipe, signals, resources, the read buffer
        self._init_core(info)
        self._selector = self._watchers.selector
        # how _run_once waits (see the module)
        self._wait: Callable[[float | None], list[tuple[int, int]]] = self._watchers.wait
        self._closed = False

    def _make_handle(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> Handle:
        return Handle(callback, args, self)

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
            self._wake()

    def close(self) -> None:
        """Release the selector, the wake-up fds and whatever listeners and
        transports are still open on this reactor. Idempotent; raises
        ``ReactorStateError`` while running."""
        if self._running:
            raise ReactorStateError("cannot close a running reactor; stop() it first")
        if self._closed:
            return
        # From here on is_closing() is true: callbacks scheduled now would
        # never run, so a layer that defers its protocol's connection_lost
        # (asyncio's TLS layer) calls it at once instead.
        self._close_resources()
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        self._closed = True
        self._ready.clear()
        for _, _, handle in self._timers:
            handle._scheduled = False
            handle.cancel()
        self._timers.clear()
        self._close_io()

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

        # the watchers' callbacks, run now (module docs)
        self._dispatch(self._wait(timeout))

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
            self._wake()
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
        return self._unwatch(fileobj, event)

    # -------------------------------------------------------------- signals

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
        try:
            self._install_signal(signum, Handle(callback, args, self))
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"cannot handle signal {signum}: {exc}") from None

    def remove_signal_handler(self, signum: int) -> bool:
        """Restore the default action for ``signum``; True if a handler was
        removed."""
        signum = _check_signum(signum)
        handle = self._signal_handlers.get(signum)
        if handle is None:
            return False
        handle.cancel()  # queued already: it does not run
        try:
            self._uninstall_signal(signum)
        except (OSError, ValueError):
            pass  # off the main thread: the action stays, the handler is gone
        return True

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

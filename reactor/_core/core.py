"""The loop core: what both of reactor's loops are made of below their scheduling.

reactor has two loops: its own (``reactor._core.loop.EventLoop``, and
``Reactor`` on it) and the asyncio loop of ``reactor.aio``, whose scheduling
is asyncio's ``BaseEventLoop``. They differ in how a callback is scheduled
and run; they must not differ in how they meet the kernel. So that part is
written once, here, and both loops are ``LoopCore`` subclasses -- the way
asyncio's ``BaseSelectorEventLoop`` adds a selector to ``BaseEventLoop``,
with the layers the other way round: the shared layer is the I/O, and each
loop adds its own scheduling on top. A fix here lands in both.

What the core owns, and its rules:

- **fd watchers** (``watchers.FdWatchers``): one registration per fd,
  select's FD_SETSIZE guard, bad fds that fail alone, a failing selector
  reported and retried. Every backend waits into the same shape, the
  kernel's ``(fd, events)`` list (``FdWatchers.wait``), and one loop,
  ``_dispatch``, hands the ready watchers' handles on, the way the loop
  said when it made its core (``_init_core``'s ``io_queue``): a queue's
  ``append`` -- asyncio's order, each handle queued behind the callbacks
  already ready -- or None: reactor's, each run at once, ``Handle._run``'s
  guard copied: compiled, a C call (``_run_now``, typed in ``core.pxd``) that
  reads the handle's fields from its struct; run as Python, the same body
  inline (a Python call per event would cost the pure loop 755 instructions
  per echo round trip).
  A watcher whose handle was cancelled (by its owner, not by
  ``remove_reader``) is unregistered when its fd is next ready, as asyncio
  does, instead of waking the loop for nothing again and again.
- **The wake-up pipe**: one non-blocking socketpair. ``_wake()`` writes a
  zero byte from any thread, at most one per wait (``_wake_pending``); the
  C-level signal handler writes the signal number (``signal.set_wakeup_fd``).
  Its reader drains the pipe and queues the handler of each signal that
  came: signal callbacks run on the loop, between other callbacks, never in
  the signal context (the Python-level handler does nothing).
- **Signals**: which handle answers which signal; the wake-up fd is ours
  from the first handler to the last, and then the one that was there
  before is put back. Each loop keeps its own argument checks and errors
  (reactor raises ValueError; asyncio RuntimeError), and installs through
  ``_install_signal`` / ``_uninstall_signal``.
- **Resources** (``resources``): what close() must close if its owner has
  not (listeners, connections, connect attempts, resolver pools), in
  ``close_order``, in a bounded number of rounds, reported, never dropped
  silently. ``is_closing()`` is true from the start of that close: a layer
  that defers a callback (asyncio's TLS layer defers connection_lost)
  calls it at once instead, since no iteration will run it.
- **The read buffer**: one ``memoryview`` of ``READ_BUFFER_SIZE`` bytes that
  every connection of the loop reads into (one thread, one read at a time).

What each loop must give the core: ``call_exception_handler(context)``, a
``_closed`` flag, a ``_ready`` deque (the callbacks to run next: signals are
queued there) and ``_make_handle(callback, args)`` (its own kind of handle,
for the wake-up reader). The core knows nothing about sockets beyond its
own socketpair, and nothing about asyncio.

Measured (``bench/echo_instructions.py``, instructions per echo round trip):
``_dispatch`` runs once per wait, and on a busy loop a wait returns a few
events, so what it looks up before the first one counts: one tuple
attribute (``_io``), unpacked, not six attribute reads (on reactor.aio's
loop, past CPython's 30 shared attribute names, each is a dict lookup); and
per event a subscript of ``by_fd`` with a ``KeyError`` for the rare fd
unwatched since, not a ``get()`` call. With both, one dispatch for the two
loops costs what their own did (reactor 19,692 against 19,767; reactor.aio
24,542 against 24,517). A loop object near those 30 names (``Reactor``)
gets no more of them from the core than it needs.
"""

from __future__ import annotations

import logging
import signal
import socket
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ReactorStateError
from .backends import BackendInfo
from .handles import Handle
from .resources import Resource
from .watchers import EVENT_READ, EVENT_WRITE, FdWatchers, fileobj_to_fd

try:
    import cython
except ImportError:  # no Cython here: this module runs as Python
    _COMPILED = False
else:
    # True only in the compiled module, where Cython makes it a constant
    # and drops the branches it rules out; False where this file is run
    _COMPILED = cython.compiled

__all__ = ["LoopCore", "READ_BUFFER_SIZE", "CLOSE_ROUNDS"]

logger = logging.getLogger("reactor")

#: Bytes one read may deliver. Every connection of a loop reads into the
#: loop's one buffer of this size (one thread, one read at a time):
#: recv(256 KiB) would allocate 256 KiB per call and then shrink it, which
#: above glibc's mmap threshold is an mmap and an munmap per read (measured:
#: 17 us against 2.7 us for recv_into plus a copy of 64 bytes).
READ_BUFFER_SIZE = 256 * 1024
#: close() closes resources in at most this many rounds: callbacks run while
#: closing (connection_lost) may open new ones, but not forever.
CLOSE_ROUNDS = 10
#: How many of the resources left open after those rounds the ERROR names.
CLOSE_LEFT_SHOWN = 5
#: Bytes the wake-up reader takes per recv (each byte is a wake-up or a signal).
_WAKEUP_READ = 4096


def _ignore_signal(signum: int, frame: Any) -> None:
    """Python-level signal handler: the work happens on the loop, woken by the
    byte the C-level handler wrote to the wake-up fd."""


class LoopCore:
    """The I/O half of a loop: fd watchers and their dispatch, the wake-up
    pipe, signals, resources and the read buffer (module docs). A loop calls
    ``_init_core`` once, from its ``__init__``."""

    # What the loop gives the core (module docs). Declared for the type
    # checker only: at run time the core must not shadow them (asyncio's
    # BaseEventLoop comes after the core in reactor.aio's MRO).
    _closed: bool
    _ready: deque[Any]

    if TYPE_CHECKING:
        def call_exception_handler(self, context: dict[str, Any]) -> None: ...
        def _make_handle(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> Any: ...

    def _init_core(self, info: BackendInfo, io_queue: Callable[[Any], Any] | None = None) -> None:
        """Make the core on ``info``'s backend. ``io_queue``: where
        ``_dispatch`` puts a ready watcher's handle (asyncio's order), or
        None: run it at once (module docs)."""
        #: the selector backend in use, e.g. "epoll"
        self.backend: str = info.name
        #: watched fds must be below this (select's FD_SETSIZE), or None
        self.max_fd: int | None = info.max_fd
        self._watchers = FdWatchers(info.loop_selector_class(), info.name, info.max_fd,
                                    self.call_exception_handler)
        # what _dispatch needs per wait, in one attribute (module docs); the
        # maps are mutated in place, never rebound
        watchers = self._watchers
        self._io = (watchers.by_fd, watchers.dropped, watchers.read_bits, watchers.write_bits, io_queue)
        #: the buffer every connection of this loop reads into (module docs)
        self.read_buffer: memoryview = memoryview(bytearray(READ_BUFFER_SIZE))
        # what close() must close: see track_resource()
        self._resources: set[Resource] = set()
        self._closing = False
        self._signal_handlers: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        # An unclosed loop is freed with its cycle (its handles point back
        # at it), and the collector finalizes a cycle's objects in no set
        # order: the pair's own finalizers could run before the loop's
        # __del__ and warn about two sockets the user never made. A weakref
        # callback runs before any finalizer of the cycle, so the pair
        # closes quietly and the loop's own warning is the one reported.
        self._close_wake_pair = weakref.finalize(self, _close_sockets, self._wake_r, self._wake_w)
        self._close_wake_pair.atexit = False
        self._watchers.add(self._wake_r.fileno(), EVENT_READ, self._make_handle(self._read_wakeup, ()))

    # ---------------------------------------------------------- fd watchers

    def _watch(self, fileobj: Any, event: int, handle: Any) -> None:
        """Watch ``fileobj`` (an fd or an object with ``fileno()``) for
        ``event`` with ``handle``, replacing a previous one."""
        self._watchers.add(fileobj_to_fd(fileobj), event, handle, fileobj)

    def _unwatch(self, fileobj: Any, event: int) -> bool:
        """Stop watching ``fileobj`` for ``event``; True if a handle was removed."""
        if self._closed:
            return False
        return self._watchers.remove(self._watchers.fd_of(fileobj), event)

    def forget_fd(self, fd: int) -> None:
        """Drop every watcher on ``fd`` at once: its owner is closing it
        (one ``epoll_ctl(DEL)``, where removing the reader and the writer
        one by one could take two syscalls)."""
        if not self._closed:
            self._watchers.forget(fd)

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        """Hand on the handles of the watchers ``events`` names (the
        kernel's ``(fd, events)``, from ``FdWatchers.wait``): to the loop's
        ``_io_queue`` (asyncio's order), or run each now (reactor's; module
        docs)."""
        by_fd, dropped, read_bits, write_bits, queue = self._io
        run_in_c = _COMPILED and queue is None  # once per wait, not per event
        for fd, mask in events:
            try:
                pair = by_fd[fd]  # a subscript, not get(): no method call per event
            except KeyError:
                continue  # unwatched since (a bad fd's watchers were ended)
            if dropped and fd in dropped:
                continue  # the file it named is gone (watchers)
            reader, writer = pair
            if reader is not None and mask & read_bits:
                if run_in_c:
                    if not _run_now(reader):  # a C call (module docs)
                        self._drop_cancelled(fd, pair, EVENT_READ)
                elif reader._cancelled:
                    self._drop_cancelled(fd, pair, EVENT_READ)
                elif queue is not None:
                    queue(reader)
                else:
                    # _run_now, inline: one Python call less per event
                    try:
                        reader._callback(*reader._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        reader._failed(exc)
            if writer is not None and mask & write_bits:
                if run_in_c:
                    if not _run_now(writer):
                        self._drop_cancelled(fd, pair, EVENT_WRITE)
                elif writer._cancelled:
                    self._drop_cancelled(fd, pair, EVENT_WRITE)
                elif queue is not None:
                    queue(writer)
                else:
                    writer._run()  # (a queue flushing: rarer than a read, not inlined)

    def _drop_cancelled(self, fd: int, pair: tuple[Any, Any], event: int) -> None:
        """A ready watcher's handle was cancelled without ``remove_*``:
        unregister it -- unless a callback of this batch has changed the
        registration since (then it is no longer this handle's)."""
        if self._watchers.by_fd.get(fd) is pair:
            self._watchers.remove(fd, event)

    # ------------------------------------------------- wake-ups and signals

    def _wake(self) -> None:
        """Wake the loop if it waits, from any thread (or after it closed:
        then nothing happens)."""
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                # Full (a wake-up is pending anyway) or closed (nothing to wake).
                pass

    def _read_wakeup(self) -> None:
        signals = bytearray()
        while True:
            try:
                data = self._wake_r.recv(_WAKEUP_READ)
            except InterruptedError:
                continue
            except BlockingIOError:
                break
            if not data:
                break
            signals += data
        # Cleared after draining: a thread that queues from here on writes a
        # new byte; one that queued before is seen by this iteration.
        self._wake_pending = False
        for signum in signals:
            if signum:  # zero bytes are plain wake-ups
                handle = self._signal_handlers.get(signum)
                if handle is not None and not handle._cancelled:
                    self._ready.append(handle)

    def _install_signal(self, signum: int, handle: Any) -> None:
        """Run ``handle`` on the loop when ``signum`` arrives. Raises what
        ``signal`` raises (ValueError off the main thread, OSError for a
        signal that cannot be caught); then nothing has changed."""
        if not self._signal_handlers:
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self._signal_handlers[signum] = handle
        try:
            signal.signal(signum, _ignore_signal)
            # Restart interrupted syscalls; the wake-up byte does the waking.
            signal.siginterrupt(signum, False)
        except BaseException:
            del self._signal_handlers[signum]
            self._restore_wakeup_fd()
            raise

    def _uninstall_signal(self, signum: int) -> Any:
        """Restore the default action for ``signum``; its handle, or None if
        it had none. The wake-up fd is given back with the last handler
        even if restoring the action raises (which it then does)."""
        handle = self._signal_handlers.pop(signum, None)
        if handle is None:
            return None
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(signum, default)
        finally:
            self._restore_wakeup_fd()
        return handle

    def _restore_wakeup_fd(self) -> None:
        if not self._signal_handlers and self._previous_wakeup_fd is not None:
            try:
                signal.set_wakeup_fd(self._previous_wakeup_fd)
            except (ValueError, OSError) as exc:
                # off the main thread, or the fd that was there is gone
                logger.info("could not restore the signal wake-up fd %d: %s", self._previous_wakeup_fd, exc)
            self._previous_wakeup_fd = None

    # ------------------------------------------------------------ resources

    def track_resource(self, resource: Resource) -> None:
        """Register ``resource`` (a listener, connection, connect attempt ...)
        so that ``close()`` closes it if its owner has not. The resource calls
        ``untrack_resource`` itself when it closes by other means.

        Raises ``ReactorStateError`` once the loop is closed: nothing would
        ever close the resource then. (While ``close()`` runs, callbacks may
        still open resources; they are closed in the same ``close()``.)"""
        if self._closed:
            raise ReactorStateError("the loop is closed: nothing would close the resource")
        self._resources.add(resource)

    def untrack_resource(self, resource: Resource) -> None:
        """Forget ``resource``; harmless if it is not tracked."""
        self._resources.discard(resource)

    def is_closing(self) -> bool:
        """True from the moment ``close()`` starts closing what is still open:
        a callback scheduled from then on would never run."""
        return self._closing

    def _close_resources(self) -> None:
        # In close_order (listeners first, so that none resumes accepting
        # while connections close). Closing runs callbacks (connection_lost)
        # that may open new resources: those are closed too, in at most
        # CLOSE_ROUNDS rounds. Whatever is still open after that is named
        # at ERROR, never dropped silently.
        self._closing = True
        closed: list[str] = []  # type names, for the log
        for _ in range(CLOSE_ROUNDS):
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
            shown = ", ".join(repr(resource) for resource in left[:CLOSE_LEFT_SHOWN])
            logger.error(
                "%r: closing kept opening new resources; after %d rounds %d are left open: %s (%s%s)",
                self, CLOSE_ROUNDS, len(left), _count_names(type(r).__name__ for r in left), shown,
                ", ..." if len(left) > CLOSE_LEFT_SHOWN else "",
            )

    def _close_io(self) -> None:
        """Release the selector and the wake-up pipe (the last step of close())."""
        self._watchers.close()
        self._close_wake_pair()


def _run_now(handle: Handle) -> bool:
    """Run a ready watcher's handle now (reactor's order): ``Handle._run``'s
    body, inline; False, without running it, if the handle was cancelled.
    Compiled (``core.pxd``) it is a C function taking a ``Handle``, whose
    fields it reads from the struct instead of looking up three attributes;
    reactor's own loop, the one caller (``io_queue`` None), makes only
    ``Handle``s. Run as Python, ``_dispatch`` has this body inline instead:
    keep the two alike."""
    if handle._cancelled:
        return False
    try:
        handle._callback(*handle._args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        handle._failed(exc)
    return True


def _close_sockets(*sockets: socket.socket) -> None:
    for sock in sockets:
        sock.close()


def _close_order(resource: Resource) -> int:
    return resource.close_order


def _count_names(names: Iterable[str]) -> str:
    """``["Transport", "Listener", "Transport"]`` -> ``"1 Listener, 2 Transport"``."""
    counts = Counter(names)
    return ", ".join(f"{counts[name]} {name}" for name in sorted(counts))

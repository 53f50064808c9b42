"""The stream transport: one connected socket between the reactor and a protocol.

The lifecycle is data: ``State`` says where the write side and the fd are,
``Event`` names what can happen to them, and ``_TRANSITIONS`` is every legal
move -- everything that affects the state machine lives in that table (h11's
rule). A move the table does not have raises at once (a bug here, never a
user error); the public calls that may come twice (``close()``,
``abort()``, ``write_eof()``) are no-ops where the table has no move for them.

    state           close()   abort()   write_eof()      flushed      failed
    OPEN            CLOSING   CLOSED    SHUTTING_WRITE   -            LOST
    SHUTTING_WRITE  CLOSING   CLOSED    (no-op)          WRITE_SHUT   CLOSED
    WRITE_SHUT      CLOSING   CLOSED    (no-op)          -            CLOSED
    CLOSING         (no-op)   CLOSED    (no-op)          CLOSED       CLOSED
    CLOSED, LOST    (no-op)   (no-op)   (no-op)          -            -

- OPEN: reading and writing. SHUTTING_WRITE: ``write_eof()`` was asked and
  the queue is flushing; ``shutdown(SHUT_WR)`` follows. WRITE_SHUT: the peer
  has our FIN; we still read. CLOSING: ``close()`` was asked: reading has
  stopped, the queue flushes, then the fd closes (FIN).
- CLOSED: the fd is closed, and the user had ended the write side first
  (``close()``, ``abort()``, or ``write_eof()`` and then a peer error):
  ``write()`` raises ``ReactorStateError``. LOST: the fd is closed because the
  kernel reported an error (reset, broken pipe, timeout, or the fd cannot be
  watched) while the write side was open: ``write()`` drops the data, because
  the protocol has been (or is about to be) told with ``connection_lost(exc)``.
- ``flushed`` is the queue running empty in a state that waits for it;
  ``failed`` is an error from the kernel on this socket.

Four facts are independent of that state and stay plain attributes: the user
paused reading (``_reading``); we are registered for reading
(``_reader_on``); the peer's FIN was read (``_eof_seen``: reading again would
repeat ``eof_received``); ``pause_writing()`` was sent (``_writing_paused``).
We are registered for writing exactly while the queue is not empty, so that
needs no flag of its own.

Facts this module handles:

- ``send()`` on a non-blocking socket may take part of the data or raise
  EAGAIN (``BlockingIOError``) when the kernel's send buffer is full. So a
  write is sent at once only when nothing is queued (ordering), the rest is
  queued as memoryviews (no copy of bytes the caller handed us) and flushed
  when the socket is writable, many buffers per ``sendmsg`` (writev).
- A queue that only grows is how a slow reader eats a server's memory. Above
  the high-water mark the protocol gets ``pause_writing()``; below the low
  mark, ``resume_writing()``. The stock echo protocol stops reading while
  paused, so its memory is bounded by the high mark plus one read.
- ``close()`` must not lose queued bytes: it stops reading, flushes, and only
  then closes (FIN). ``write_eof()`` is ``shutdown(SHUT_WR)`` after the flush:
  the peer reads EOF and can still send to us.
- ``abort()`` sets SO_LINGER {on, 0}: close() then sends RST and drops
  unsent data, the way to tell a peer "this connection failed".
- A peer's RST surfaces as ECONNRESET on recv/send; writing after the peer
  closed gives EPIPE, which is ``BrokenPipeError``. The kernel also raises
  SIGPIPE for it unless the send says MSG_NOSIGNAL: CPython ignores SIGPIPE at
  start-up, but an application may restore the default (CLI tools often do,
  to die quietly on a closed stdout) or install a handler, and one peer must
  never kill the server -- so every send passes MSG_NOSIGNAL.
- A connection reset while it waited in the accept queue is still returned
  by accept(); its first read gives ECONNRESET and ``getpeername()`` gives
  ENOTCONN -- so the peer address is taken from accept's own return, never
  asked of the socket.
- recv returning b"" is EOF (the peer's FIN): ``eof_received()`` decides
  whether we keep the write side open (True) or close.
- Compiled (``reactor._compiled``), the transport reads and writes bytes
  with recv(2) and send(2) on the fd itself (``transport.pxd``): the socket
  module's argument parsing and its release of the GIL around every call
  cost more than the call (a non-blocking recv or send does not wait), and
  an echo connection then never needs a socket object. MSG_DONTWAIT makes
  each call non-blocking even on a fd that still is (the pure accept path's
  arrive so); errors are raised as the socket module raises them (the
  errno's OSError subclass, the C library's text). Run as Python, the same
  file calls the socket object.
- Registering the fd can fail: select cannot watch fds >= FD_SETSIZE
  (``BackendLimitError``), ``epoll_ctl(ADD)`` gives ENOSPC past
  ``fs.epoll.max_user_watches`` and ENOMEM without kernel memory. A
  connection nobody watches is never read and never closed, so it ends
  there: one report to the exception handler, the fd closed,
  ``connection_lost(exc)`` (the ``failed`` event).
- ``connection_lost`` is called exactly once, on the loop, after the fd is
  closed and unregistered -- also when the reactor is closed between the
  close and that call (the transport stays among the reactor's resources
  until the protocol has been told).
- An exception caught here carries a traceback whose frames hold their
  locals, ``self`` among them: a transport keeping the exception that ended
  it would sit in a reference cycle (transport -> exception -> traceback ->
  frame -> transport) that only the cyclic GC frees -- with a reset storm,
  thousands of dead transports and their buffers. So the exception is kept
  only until ``connection_lost`` has it, and not at all when nobody is told;
  and an error of the socket reaches ``connection_lost`` without its
  traceback (one line of ours, the syscall: worth nothing to the protocol),
  so a protocol that keeps its last error does not keep the transport, or
  the loop's frames of that iteration, alive with it.

How a connection reads is decided in one place, from its protocol's type,
when the transport is made and whenever ``set_protocol()`` hands it to
another (``_choose_read_path``): a protocol that lends its own buffer
(asyncio's ``BufferedProtocol``: ``get_buffer`` / ``buffer_updated``; a TLS
layer is one) is read straight into it, ``_read_into_protocol``; any other
gets bytes, ``_read_ready``. A pre-protocol hands a connection on the same
way: the PROXY header reader to a TLS layer or to the application
(``proxy.HeaderReader``), the TLS layer to the application
(``tls.TLSLayer``).

Protocol callbacks: ``data_received`` runs once per read and is called
inline in ``_read_ready``; the cold ones (``connection_made``,
``eof_received``, ``connection_lost``, ``pause_writing``,
``resume_writing``) go through one guard, ``_call_protocol``: SystemExit and
KeyboardInterrupt go up, anything else goes to the exception handler with
the transport and protocol in the context, and where the protocol's state is
unknown afterwards (``data_received``, ``connection_made``,
``eof_received``) the connection is aborted -- that one only.
"""

from __future__ import annotations

import enum
import fcntl
import os
import socket
import struct
import termios
import warnings
from asyncio import BufferedProtocol
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

from .._core.checks import check_optional_int
from .._core.core import READ_BUFFER_SIZE
from .._core.resources import CLOSE_LAST
from .._core.shared_keys import share_keys
from ..errors import ReactorStateError
from ..protocols import Protocol as _BaseProtocol
from .sockopts import LINGER_RST

try:
    import cython
except ImportError:  # no Cython here: this module runs as Python
    _COMPILED = False
else:
    # True only in the compiled module, where reads and writes of bytes are
    # recv(2) and send(2) on the fd by transport.pxd's C functions (names
    # the Python run never looks up, hence "noqa: F821" where they are called)
    _COMPILED = cython.compiled

if TYPE_CHECKING:
    from ..protocols import Protocol
    from .host import Host

__all__ = ["Transport", "State", "Event", "DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER", "READ_SIZE"]

#: Bytes one read may deliver: every transport of a loop reads into the
#: loop's one buffer of this size (``Host.read_buffer``; why one, in
#: ``reactor._core.core``).
READ_SIZE = READ_BUFFER_SIZE
#: pause_writing() once this many bytes are queued
DEFAULT_HIGH_WATER = 64 * 1024
#: resume_writing() once the queue drains below this
DEFAULT_LOW_WATER = 16 * 1024
#: buffers per sendmsg(): Linux's IOV_MAX is 1024
MAX_IOV = 1024
#: no SIGPIPE on a send to a closed peer (Linux, the BSDs); EPIPE is enough
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_INET = (socket.AF_INET, socket.AF_INET6)
_NO_OP_CONNECTION_LOST = _BaseProtocol.connection_lost
#: with this type, socket(fileno=fd) sets the object non-blocking without a syscall
_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
#: ioctl(FIONBIO)'s argument: a pointer to a non-zero int turns O_NONBLOCK on
#: (one syscall; os.set_blocking takes two, F_GETFL and F_SETFL)
_FIONBIO_ON = struct.pack("@i", 1)


# ------------------------------------------------------------ the lifecycle
#
# StrEnum, not Enum: a move looks up a (state, event) tuple, and hashing a
# str member uses str's cached C hash, where Enum.__hash__ is a Python call
# (measured: 98 against 178 ns per lookup).

class State(enum.StrEnum):
    """Where a transport's write side and fd are (see the module docs)."""

    OPEN = "open"
    SHUTTING_WRITE = "shutting-write"
    WRITE_SHUT = "write-shut"
    CLOSING = "closing"
    CLOSED = "closed"
    LOST = "lost"


class Event(enum.StrEnum):
    """What moves a transport from one state to the next."""

    WRITE_EOF = "write_eof"  # the user's write_eof()
    FLUSHED = "flushed"      # the queue ran empty in a state waiting for it
    CLOSE = "close"          # the user's close() (also: eof_received did not keep us open)
    ABORT = "abort"          # the user's abort(), a protocol callback that raised, the reactor closing
    FAILED = "failed"        # the kernel reported an error, or the fd cannot be watched


OPEN, SHUTTING_WRITE, WRITE_SHUT, CLOSING, CLOSED, LOST = State
WRITE_EOF, FLUSHED, CLOSE, ABORT, FAILED = Event

#: Every legal move: state -> {event: next state}. Rule: everything that
#: affects the state machine lives here; an event missing from a state's row
#: is not a move (module docs).
_TRANSITIONS: dict[State, dict[Event, State]] = {
    OPEN: {WRITE_EOF: SHUTTING_WRITE, CLOSE: CLOSING, ABORT: CLOSED, FAILED: LOST},
    # after write_eof(), a peer error still leaves write() raising: CLOSED, not LOST
    SHUTTING_WRITE: {FLUSHED: WRITE_SHUT, CLOSE: CLOSING, ABORT: CLOSED, FAILED: CLOSED},
    WRITE_SHUT: {CLOSE: CLOSING, ABORT: CLOSED, FAILED: CLOSED},
    CLOSING: {FLUSHED: CLOSED, ABORT: CLOSED, FAILED: CLOSED},
    CLOSED: {},
    LOST: {},
}


def _column(event: Event) -> dict[State, State]:
    return {state: row[event] for state, row in _TRANSITIONS.items() if event in row}


# The same table by event (state -> next state), which is how the moves look
# it up: ``self._state = _ON_X[self._state]``, where a move the table does not
# have raises KeyError(state) at once; the public calls that may come twice
# use ``.get`` and do nothing where there is no move. By event, and plain
# dicts: one lookup on a cached str hash per move, where a (state, event)
# tuple costs about 35 ns more to build and hash and a dict subclass with a
# __missing__ message 20 ns more per lookup (two moves per connection).
_ON_WRITE_EOF = _column(WRITE_EOF)
_ON_FLUSHED = _column(FLUSHED)
_ON_CLOSE = _column(CLOSE)
_ON_ABORT = _column(ABORT)
_ON_FAILED = _column(FAILED)

#: the fd is closed: nothing can happen any more
_FD_CLOSED = frozenset({CLOSED, LOST})
#: data from the peer is still delivered (close() stops reading)
_READING = frozenset({OPEN, SHUTTING_WRITE, WRITE_SHUT})
#: waiting for the queue to run empty (the states with a ``flushed`` move)
_FLUSHING = frozenset(_ON_FLUSHED)
#: is_closing(): close() or abort() was called, or the fd is closed
_CLOSING_OR_CLOSED = frozenset({CLOSING, CLOSED, LOST})

#: The protocol's state is unknown once one of these raised (it may not have
#: set itself up, or decided nothing about the half-close): the connection
#: is aborted. pause_writing / resume_writing are flow-control hints (asyncio
#: only reports them too), and connection_lost comes after the close.
_ABORT_IF_IT_RAISES = frozenset({"connection_made", "data_received", "eof_received"})
#: "no argument" for _call_protocol (None is connection_lost's argument)
_NO_ARG: Any = object()


class Transport:
    """A connected stream socket driven by a reactor. Created by listeners
    and connectors; user code gets it in ``Protocol.connection_made``."""

    # The initial state, as class attributes: an instance stores only what
    # differs, so a connection accepted and closed at once sets a handful of
    # attributes instead of twenty (measured: 0.8 -> 0.3 us per transport).
    _fd = -1  # set last in __init__: until then the fd is not ours to close
    _sock: socket.socket | None = None  # made on first use for a bare fd
    _nonblocking = True
    _state = OPEN
    #: why the fd closed, kept only until connection_lost has it (module docs)
    _lost_exc: Exception | None = None
    # a deque once something is queued; the writer is registered exactly then
    _buffer: deque[bytes | memoryview] | tuple[()] = ()
    _buffer_size = 0
    _high = DEFAULT_HIGH_WATER
    _low = DEFAULT_LOW_WATER
    # the independent facts (module docs)
    _reading = True  # the user has not paused reading
    _reader_on = False  # registered with the reactor for reading
    _eof_seen = False  # the peer's FIN was read
    _writing_paused = False  # pause_writing() sent, resume_writing() not yet
    # TCP_NODELAY is set on the first write, not at accept: a connection that
    # is closed in connection_made never pays for the setsockopt (nor for
    # this flag: it is looked at, and set, on the first write only). Before
    # that, the socket object is handed out (get_extra_info("socket")) with it
    # set, so a user who changes it later keeps their choice; a transport made
    # from a socket object the caller holds sets it at once (_set_nodelay).
    _nodelay_pending = True
    # PROXY protocol (proxy.py): the parsed header and the balancer's address,
    # set only on a proxy_protocol listener's connections once the header is read
    _proxy: Any = None
    _socket_peername: Any = None
    # idle_timeout (idle.py): the limit watching us, and our last sign of life
    _idle_limit: Any = None
    _io_seen = False  # a byte moved either way since the last sweep looked
    _idle_since = 0  # the sweep's tick count when it last saw us move
    # the protocol lends its buffer: _read_ready is then _read_into_protocol,
    # an instance attribute (see _choose_read_path)
    _lends_buffer = False

    #: The names a connection that is served gives itself (idle.py sets the
    #: _idle ones), entered in CPython's shared attribute table when the class
    #: is made (``_core.shared_keys``): else a name first set after a burst of
    #: connections gives every later connection a dict of its own (+271 B at
    #: its first read). Only these: every name in the table costs every
    #: instance a slot, read or not (measured, 4,000 connections: all 25
    #: names, 895 B silent / 994 B after one echo; these, 823 / 912; none,
    #: 736 / 1,207). Subclasses add theirs (``__init_subclass__``).
    _SHARED_ATTRIBUTES: ClassVar[tuple[str, ...]] = (
        "_reactor", "_family", "_protocol", "_peername", "_server", "_fd", "_nonblocking", "_state",
        "_reader_on", "_sock", "_io_seen", "_nodelay_pending", "_idle_limit", "_idle_since", "_buffer",
        "_buffer_size", "_writing_paused",
    )
    #: The other names an instance may be given, on paths few connections
    #: take (a paused reader, a FIN, an error, new water marks, a lending
    #: protocol, the PROXY protocol): such a connection gets its own dict.
    _UNSHARED_ATTRIBUTES: ClassVar[tuple[str, ...]] = (
        "_reading", "_eof_seen", "_lost_exc", "_high", "_low", "_read_ready", "_lends_buffer", "_proxy",
        "_socket_peername",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        share_keys(cls, cls._SHARED_ATTRIBUTES)

    def __init__(self, reactor: Host, sock: socket.socket | int, protocol: Protocol, *,
                 peername: Any = None, server: Any = None, family: int = socket.AF_INET,
                 nonblocking: bool = True) -> None:
        """``sock`` is a connected socket, or (from a listener) a bare fd of
        ``family``, ``nonblocking`` or not. For a bare fd the socket object
        is made only when first needed: a connection closed in
        ``connection_made`` costs no object and, on the pure accept path, no
        FIONBIO ioctl either. The transport owns the fd once this returns;
        if it raises, the caller still does."""
        self._reactor = reactor
        if isinstance(sock, int):
            fd = sock
            self._family = family
            if not nonblocking:
                self._nonblocking = False
        else:
            self._sock = sock
            fd = sock.fileno()
            self._family = sock.family
        self._protocol: Protocol | None = protocol
        self._choose_read_path(protocol)
        self._peername = peername
        # the listener that accepted us (told when we close), or None
        self._server = server
        self._fd = fd

    def _socket(self) -> socket.socket:
        """The socket object, made on first use (only while the fd is open)."""
        sock = self._sock
        if sock is None:
            if not self._nonblocking:
                self._set_nonblocking()
            # Explicit family and type: no SO_DOMAIN/SO_TYPE queries (CPython
            # still checks the fd with one getsockname()), and SOCK_NONBLOCK
            # makes the object non-blocking without a syscall.
            sock = self._sock = socket.socket(self._family, _STREAM_NONBLOCK, 0, self._fd)
        return sock

    def _socket_for_user(self) -> socket.socket:
        """The socket object as the user gets it: TCP_NODELAY already set,
        so that what they set on it from now on stands."""
        sock = self._socket()
        if self._nodelay_pending:
            self._set_nodelay()
        return sock

    def _set_nodelay(self) -> None:
        """TCP_NODELAY on, once (see ``_nodelay_pending``): a small write goes
        out at once instead of waiting for the peer's ACK of the last one
        (Nagle), as asyncio and uvloop do."""
        self._nodelay_pending = False
        if self._family in _INET:
            if _COMPILED:
                _nodelay_fd(self._fd)  # type: ignore[name-defined]  # noqa: F821
                return
            try:
                self._socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # a reset connection: the next send reports it

    def _set_nonblocking(self) -> None:
        """FIONBIO on the bare fd (the pure accept path's fds arrive
        blocking): before the first read, without making the socket object."""
        fcntl.ioctl(self._fd, termios.FIONBIO, _FIONBIO_ON)
        self._nonblocking = True

    # ------------------------------------------------------------ start-up

    def _begin(self) -> BaseException | None:
        """Tell the protocol, then start reading unless it already closed or
        paused. Returns the exception if ``connection_made`` raised (it has
        gone to the exception handler and the connection is aborted) or the
        connection could not be watched (reported, closed,
        ``connection_lost(exc)``), so that a connect attempt can fail with it."""
        error = self._call_protocol("connection_made", self)[1]
        if error is not None:
            return error
        if self._state not in _READING:
            return None  # closed in connection_made (the accept-and-close path): no call
        return self._start_reading()

    #: How a listener or a connect attempt starts a connection: ``_begin``.
    #: (reactor.aio's transport runs it in the connection's context; a
    #: pre-protocol handing the connection on calls ``_begin`` itself, from
    #: a callback already running there.)
    _start = _begin

    def _start_reading(self) -> Exception | None:
        """Register for reading if the connection wants data (not paused, no
        EOF yet, not closing, not registered already). If the fd cannot be
        watched, the connection ends here (see the module docs) and the
        exception is returned."""
        if self._reader_on or not self._reading or self._eof_seen or self._state not in _READING:
            return None
        try:
            if not self._nonblocking:
                # before the first read; the socket object waits for the
                # first read or write on both accept paths, so an idle
                # connection holds none (88 of ~850 B)
                self._set_nonblocking()
            self._reactor.add_reader(self._fd, self._read_ready)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # BackendLimitError, OSError (ENOSPC, ENOMEM), MemoryError
            self._cannot_watch(exc, "reading")
            return exc
        self._reader_on = True
        return None

    # ---------------------------------------------------- handing it on

    def set_protocol(self, protocol: Any) -> None:
        """Hand the connection to ``protocol``: from now on it gets the data,
        read the way its type asks (module docs), and the other callbacks.
        The PROXY header reader hands a connection on so, and asyncio's
        ``start_tls``; telling the new protocol ``connection_made`` is the
        caller's part."""
        self._protocol = protocol
        if self._state in _FD_CLOSED:
            return  # nothing is read any more
        self._choose_read_path(protocol)
        if self._reader_on:
            self._reactor.add_reader(self._fd, self._read_ready)  # the new callback

    def _choose_read_path(self, protocol: Any) -> None:
        """How this connection reads, decided from ``protocol``'s type, here
        only (module docs). The buffered path is an instance attribute: a
        bound method, and so a reference cycle (transport -> method ->
        transport), dropped when the fd is released, so that a connection
        is freed at once without the cyclic GC (CPython's sslproto tests
        check that with the GC off)."""
        if isinstance(protocol, BufferedProtocol):
            self._read_ready = self._read_into_protocol  # type: ignore[method-assign]
            self._lends_buffer = True
        elif self._lends_buffer:
            self._drop_read_path()

    def _drop_read_path(self) -> None:
        """Back to the class's read path, and the cycle broken (above)."""
        del self._read_ready
        del self._lends_buffer

    def _set_proxy_header(self, header: Any) -> None:
        """The PROXY header this connection began with (``proxy.HeaderReader``):
        ``get_extra_info("peername")`` is the client's from now on (when the
        header names one), ``"proxy"`` the header and ``"socket_peername"``
        the balancer's."""
        socket_peername = self._peername
        if socket_peername is None:
            try:
                socket_peername = self._socket().getpeername()
            except OSError:
                pass
        self._socket_peername = socket_peername
        self._proxy = header
        if header.source is not None:
            self._peername = header.source

    def _deliver(self, data: bytes) -> None:
        """Give the protocol ``data`` that was read before it had the
        connection (the bytes after a PROXY header), the way its read path
        gives what it reads: ``data_received``, or through its buffer. Even
        if ``connection_made`` paused reading (they were read already); not
        once the connection is closing."""
        if not data or self._state not in _READING:
            return
        protocol: Any = self._protocol
        if self._lends_buffer:
            self._feed_buffer(protocol, data)
            return
        try:
            protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._protocol_failed(exc, "data_received")

    def _feed_buffer(self, protocol: Any, data: bytes) -> None:
        """Hand ``data``, read already, to a protocol that lends its buffer:
        as many rounds as its buffers take, while the connection still reads."""
        method = "get_buffer"
        try:
            view = memoryview(data)
            while view and self._state in _READING:
                method = "get_buffer"
                buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
                count = min(len(buffer), len(view))
                if not count:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buffer[:count] = view[:count]
                method = "buffer_updated"
                protocol.buffer_updated(count)
                view = view[count:]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer_protocol_failed(exc, method)

    def _discard(self) -> None:
        """Set-up failed before ``connection_made``: close the fd and tell
        nobody (a protocol that never saw connection_made gets no
        connection_lost). For the listener, which keeps its own counts."""
        if self._state in _FD_CLOSED:
            return
        self._state = _ON_ABORT[self._state]
        self._reactor.untrack_resource(self)
        self._protocol = None
        if self._lends_buffer:
            self._drop_read_path()
        self._close_fd()

    # ------------------------------------------------------------- reading

    def _read_ready(self) -> None:
        if _COMPILED:
            # recv(2) into the module's read area and one copy out: no
            # socket object, argument parsing or GIL hand-off per read
            try:
                data = _recv_fd(self._fd, READ_SIZE)  # type: ignore[name-defined]  # noqa: F821
            except OSError as exc:
                self._connection_failed(exc)
                return
            if data is None:
                return
            if not data:
                self._eof_received()
                return
        else:
            view = self._reactor.read_buffer
            try:
                count = (self._sock or self._socket()).recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._connection_failed(exc)
                return
            if not count:
                self._eof_received()
                return
            data = view[:count].tobytes()
        self._io_seen = True  # idle_timeout: one store, no clock (idle.py)
        protocol = self._protocol
        assert protocol is not None  # we are registered only until the protocol is told
        # Inline, not through _call_protocol: this runs once per read, and
        # the helper's call and argument tuple would cost every read.
        try:
            protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._protocol_failed(exc, "data_received")

    def _read_into_protocol(self) -> None:
        """``_read_ready`` for a protocol that lends its own buffer
        (``get_buffer(size)`` / ``buffer_updated(count)``, asyncio's
        ``BufferedProtocol``; the TLS layer is one): the socket is read
        straight into it -- no bytes object, no copy."""
        protocol: Any = self._protocol
        try:
            buffer = protocol.get_buffer(-1)
            if not len(buffer):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer_protocol_failed(exc, "get_buffer")
            return
        try:
            count = (self._sock or self._socket()).recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._connection_failed(exc)
            return
        if not count:
            self._eof_received()
            return
        self._io_seen = True
        try:
            protocol.buffer_updated(count)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer_protocol_failed(exc, "buffer_updated")

    def _buffer_protocol_failed(self, exc: BaseException, method: str) -> None:
        """``get_buffer`` or ``buffer_updated`` raised: like ``data_received``
        raising, reported and the connection aborted."""
        self._protocol_failed(exc, "data_received" if method == "buffer_updated" else method)

    def _eof_received(self) -> None:
        self._eof_seen = True
        self._stop_reading()
        keep_open, error = self._call_protocol("eof_received")
        if error is None and not keep_open:
            self.close()

    def _stop_reading(self) -> None:
        if self._reader_on:
            self._reader_on = False
            self._reactor.remove_reader(self._fd)

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading()``; the
        kernel's receive buffer then fills and TCP slows the sender."""
        self._reading = False
        self._stop_reading()

    def resume_reading(self) -> None:
        """Undo ``pause_reading()``. After the peer's EOF there is nothing
        more to read, and ``eof_received`` is never called twice."""
        self._reading = True
        self._start_reading()

    def is_reading(self) -> bool:
        """True while the transport delivers data (not paused, not closing,
        no EOF from the peer yet)."""
        return self._reading and not self._eof_seen and self._state in _READING

    # ------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: at once if nothing is queued, else after what is.

        Never blocks. Raises ``TypeError`` for non-bytes and
        ``ReactorStateError`` after ``close()``, ``abort()`` or ``write_eof()``
        (also once the close has completed); once the connection is lost for
        another reason (peer reset, broken pipe), data is dropped (the protocol
        has been told).
        """
        # The echo path first: plain bytes, open, nothing queued, the socket
        # set up by an earlier write -- five identity or truth tests, then
        # one send (measured in-process, 16 echo connections: 15,092 -> 14,342 Ir
        # per request).
        if type(data) is bytes and data and self._state is OPEN and not self._buffer and not self._nodelay_pending:
            try:
                if _COMPILED:
                    sent = _send_fd(self._fd, data)  # type: ignore[name-defined]  # noqa: F821
                else:
                    sent = (self._sock or self._socket()).send(data, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._connection_failed(exc)
                return
            if sent:
                self._io_seen = True
                if sent == len(data):
                    return
            self._queue_unsent(data, sent)
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        if isinstance(data, memoryview):
            # Count and slice bytes, not items: send() reports bytes, and
            # len() of a memoryview of an array('Q') counts 8-byte items.
            data = data.cast("B")
        state = self._state
        if state is not OPEN:
            self._write_not_open(data, state)
            return
        if not data:
            return
        queued: bytes | memoryview
        buffer = self._buffer
        if buffer:
            # bytes cannot change under us: queue them as they are; anything
            # else the caller may reuse after write() returns: queue a copy.
            queued = data if isinstance(data, bytes) else bytes(data)
        else:
            if self._nodelay_pending:
                self._set_nodelay()
            try:
                if _COMPILED and type(data) is bytes:
                    sent = _send_fd(self._fd, data)  # type: ignore[name-defined]  # noqa: F821
                else:
                    sent = (self._sock or self._socket()).send(data, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._connection_failed(exc)
                return
            if sent == len(data):
                self._io_seen = True
                return
            if sent:
                self._io_seen = True
            self._queue_unsent(data, sent)
            return
        buffer.append(queued)
        self._buffer_size += len(queued)
        self._check_high_water()

    def _queue_unsent(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        """The first send of a write, with nothing queued, took ``sent``
        bytes of ``data`` (maybe none): watch for writability and queue the
        rest."""
        try:
            self._reactor.add_writer(self._fd, self._write_ready)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._cannot_watch(exc, "writing")
            return
        queued: bytes | memoryview
        if isinstance(data, bytes):
            queued = memoryview(data)[sent:] if sent else data  # a view, not a copy
        else:
            queued = bytes(memoryview(data)[sent:]) if sent else bytes(data)
        self._buffer = deque((queued,))
        self._buffer_size += len(queued)
        self._check_high_water()

    def _write_not_open(self, data: bytes | bytearray | memoryview, state: State) -> None:
        """``write()`` once the transport is not open: dropped once the
        connection is lost (the protocol has been told), refused after
        ``close()``, ``abort()`` or ``write_eof()``. (reactor.aio's transport
        has asyncio's rules here.)"""
        if state is LOST:
            return
        raise ReactorStateError(f"write() after close(), abort() or write_eof() (the transport is {state})")

    def writelines(self, buffers: Any) -> None:
        """Write every buffer of an iterable, in order."""
        self.write(b"".join(buffers))

    def _write_ready(self) -> None:
        buffer = self._buffer
        if not buffer:
            return  # cannot happen: the writer goes when the queue runs empty
        sock = self._sock or self._socket()
        try:
            if len(buffer) == 1:
                sent = sock.send(buffer[0], _SEND_FLAGS)
            else:
                sent = sock.sendmsg(islice(buffer, MAX_IOV), (), _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._connection_failed(exc)
            return
        if sent:
            self._io_seen = True
        self._buffer_size -= sent
        while sent:
            head = buffer[0]
            if sent >= len(head):
                sent -= len(head)
                buffer.popleft()
            else:
                buffer[0] = memoryview(head)[sent:]
                break
        if not buffer:
            # At once, before any protocol callback: "registered for writing
            # exactly while the queue is not empty" must hold whenever a
            # callback could close us.
            self._reactor.remove_writer(self._fd)
        if self._writing_paused and self._buffer_size <= self._low:
            self._writing_paused = False
            self._call_protocol("resume_writing")
        # resume_writing may have written, closed or aborted: look again
        if not self._buffer and self._state in _FLUSHING:
            self._flushed()

    def _check_high_water(self) -> None:
        if not self._writing_paused and self._buffer_size > self._high:
            self._writing_paused = True
            self._call_protocol("pause_writing")

    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet taken by the kernel."""
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)`` water marks."""
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks: ``high`` defaults to 4 × ``low`` (or 64 KiB),
        ``low`` to ``high`` / 4. Requires 0 <= low <= high."""
        check_optional_int(high, "high", minimum=0)
        check_optional_int(low, "low", minimum=0)
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got high={high!r} low={low!r}")
        self._high, self._low = high, low
        self._check_high_water()

    def write_eof(self) -> None:
        """Half-close: ``shutdown(SHUT_WR)`` once the queue is flushed. The
        peer reads EOF; we keep reading. A no-op once the write side is
        ending or ended."""
        state = _ON_WRITE_EOF.get(self._state)
        if state is None:
            return
        self._state = state
        if not self._buffer:
            self._flushed()

    def can_write_eof(self) -> bool:
        """True: TCP and Unix stream sockets both half-close."""
        return True

    def _flushed(self) -> None:
        """The queue is empty: finish what ``write_eof()`` or ``close()``
        started."""
        state = self._state = _ON_FLUSHED[self._state]
        if state is CLOSED:
            self._release(None)
            return
        try:
            self._socket().shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._connection_failed(exc)

    # ------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        """True once ``close()`` or ``abort()`` was called or the connection
        was lost."""
        return self._state in _CLOSING_OR_CLOSED

    def close(self) -> None:
        """Graceful close: stop reading, flush the queue, then close (FIN) and
        call ``connection_lost(None)``. Idempotent."""
        # The table's move, looked up once (this runs for every connection).
        state = _ON_CLOSE.get(self._state)
        if state is None:
            return  # already closing or closed
        self._state = state
        if self._reader_on:
            self._stop_reading()
        if not self._buffer:
            # _flushed(), inline: CLOSING --flushed--> CLOSED (per connection)
            self._state = _ON_FLUSHED[state]
            self._release(None)

    def close_without_waiting(self) -> None:
        """The close of a time limit (idle, request head): on plain TCP it is
        ``close()``, which never waits for the peer; a TLS connection sends
        close_notify and closes without waiting for the peer's."""
        self.close()

    def abort(self) -> None:
        """Abortive close: drop the queue and send RST (SO_LINGER {1, 0});
        ``connection_lost(None)``. Idempotent."""
        state = _ON_ABORT.get(self._state)
        if state is None:
            return  # already closed
        try:
            self._socket().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass  # already reset by the peer: closing is enough
        self._state = state
        self._release(None)

    def _force_close(self, exc: BaseException | None) -> None:
        """End the connection now: drop the queue, close the fd (a plain
        close, no SO_LINGER reset) and tell the protocol
        ``connection_lost(exc)``. asyncio's TLS layer ends a connection so
        on a failed handshake and on its timeouts."""
        state = _ON_ABORT.get(self._state)
        if state is None:
            return
        self._state = state
        if isinstance(exc, Exception):
            exc.__traceback__ = None  # see the module docs: no frames kept
        self._release(exc if isinstance(exc, Exception) else None)

    def _connection_failed(self, exc: OSError) -> None:
        """The kernel reported an error on the socket (reset, broken pipe,
        timeout): the connection is over. Errors a peer can cause are the
        protocol's news (connection_lost); anything else is also reported."""
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            self._report(exc, "socket error on a transport")
        # Its traceback is one line of ours (the syscall) and its frames would
        # keep us alive for as long as the protocol keeps the error.
        exc.__traceback__ = None
        self._state = _ON_FAILED[self._state]
        self._release(exc)

    def _cannot_watch(self, exc: Exception, what: str) -> None:
        """Registering the fd failed: the connection cannot work, so it ends
        here, reported once, instead of hanging unread."""
        self._report(exc, f"cannot watch the connection on fd {self._fd} for {what} "
                          f"({self._reactor.backend} backend); connection closed")
        exc.__traceback__ = None  # reported with it; the protocol gets it without (see above)
        if self._server is not None:
            self._server._connection_rejected(self)
        self._state = _ON_FAILED[self._state]
        self._release(exc)

    def _report(self, exc: BaseException, message: str) -> None:
        """Hand ``exc`` to the reactor's exception handler, with this
        connection in the context."""
        self._reactor.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )

    def _release(self, exc: Exception | None) -> None:
        """The move to CLOSED or LOST was made: drop the queue, release the
        fd and, on the next iteration, tell the protocol."""
        if self._reader_on or self._buffer:
            self._reader_on = False
            self._reactor.forget_fd(self._fd)
            if self._buffer:
                self._buffer = ()
                self._buffer_size = 0
        if self._lends_buffer:
            self._drop_read_path()  # nothing is read any more: the cycle goes
        # _close_fd(), inline: this runs for every connection
        sock = self._sock
        if sock is not None:
            sock.close()
        else:
            os.close(self._fd)
        if self._server is not None:
            self._server._connection_closed(self)
        if self._idle_limit is not None:
            self._idle_limit.forget(self)
        protocol = self._protocol
        if protocol is None or type(protocol).connection_lost is _NO_OP_CONNECTION_LOST:
            # Nobody to tell: skip the deferred call (the accept-and-close
            # path), and keep no exception (module docs).
            self._reactor.untrack_resource(self)
            self._protocol = None
            return
        # Deferred so connection_lost never runs inside another protocol
        # callback (close() called from data_received, for instance). We stay
        # in the reactor's resources until it has run: a reactor closed before
        # then calls it from close_for_loop instead.
        if exc is not None:
            self._lost_exc = exc
        self._reactor.call_soon(self._call_connection_lost)

    def _close_fd(self) -> None:
        if self._sock is not None:
            self._sock.close()
        else:
            os.close(self._fd)

    def _call_connection_lost(self) -> None:
        if self._protocol is None:
            return  # already told
        exc = self._lost_exc
        if exc is not None:
            self._lost_exc = None  # the protocol has it now; we must not (module docs)
        self._reactor.untrack_resource(self)
        try:
            self._call_protocol("connection_lost", exc)
        finally:
            self._protocol = None  # break the transport <-> protocol cycle

    # ---------------------------------------------------- protocol callbacks

    def _call_protocol(self, method: str, arg: Any = _NO_ARG) -> tuple[Any, BaseException | None]:
        """The guard of the cold protocol callbacks: ``protocol.method()``
        (or ``protocol.method(arg)``) -> ``(result, None)``, or ``(None,
        exc)`` if it raised -- reported, and the connection aborted where the
        protocol's state is unknown (``_ABORT_IF_IT_RAISES``). SystemExit and
        KeyboardInterrupt go up. One optional argument, not ``*args``: this
        runs for every connection (connection_made), and packing costs."""
        try:
            callback = getattr(self._protocol, method)
            return (callback() if arg is _NO_ARG else callback(arg)), None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._protocol_failed(exc, method)
            return None, exc

    def _protocol_failed(self, exc: BaseException, method: str) -> None:
        self._report(exc, f"exception in {type(self._protocol).__name__}.{method}()")
        # The protocol's state is unknown now: end this connection only.
        if method in _ABORT_IF_IT_RAISES:
            self.abort()

    #: Reactor.close() closes listeners before connections
    close_order: ClassVar[int] = CLOSE_LAST

    def close_for_loop(self) -> None:
        """The reactor is closing with this connection still open: abort it
        (the loop will not run again to flush) and tell the protocol now
        rather than on a next iteration that will not come."""
        self.abort()
        self._call_connection_lost()

    def __del__(self) -> None:
        if self._fd < 0 or self._state in _FD_CLOSED:
            return
        warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
        self._close_fd()

    # --------------------------------------------------------------- extras

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"``, ``"socket"``, or ``default``; behind
        the PROXY protocol also ``"proxy"`` (the parsed header) and
        ``"socket_peername"`` (the balancer's address; without a header the
        same as ``"peername"``), and ``"peername"`` is the client's from the
        header (the socket's own for LOCAL and UNKNOWN)."""
        closed = self._state in _FD_CLOSED  # the fd number may already belong to someone else
        if name == "peername":
            if self._peername is None:
                if closed:
                    return default
                try:
                    self._peername = self._socket().getpeername()
                except OSError:
                    return default
            return self._peername
        if name == "sockname":
            if closed:
                return default
            sockname = self._sockname()
            return default if sockname is None else sockname
        if name == "socket":
            return self._sock if closed else self._socket_for_user()
        if name == "proxy":
            return default if self._proxy is None else self._proxy
        if name == "socket_peername":
            if self._proxy is None:
                return self.get_extra_info("peername", default)
            return default if self._socket_peername is None else self._socket_peername
        return default

    def _sockname(self) -> Any:
        """The local address, or None if the socket cannot say (while the fd
        is open): the listener's where it fixes every accepted connection's
        (``Listener.accepted_sockname``), else getsockname(2)."""
        server = self._server
        if server is not None and server.accepted_sockname is not None:
            return server.accepted_sockname
        try:
            return self._socket().getsockname()
        except OSError:
            return None

    def get_protocol(self) -> Protocol | None:
        """The protocol this transport drives (None once it was told
        ``connection_lost``)."""
        return self._protocol

    def __repr__(self) -> str:
        return f"<Transport fd={self._fd} {self._state} peer={self._peername!r}>"


share_keys(Transport, Transport._SHARED_ATTRIBUTES)  # subclasses: __init_subclass__

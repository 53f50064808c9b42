"""The stream transport: one connected socket between the reactor and a protocol.

States (a transition table in words; anything else is a no-op or an error):

    open --write_eof()--> write side shut (we can still read)
    open / write side shut --close()--> closing: reading stops, the buffer
        flushes, then the socket closes (FIN) and connection_lost(None)
    any --abort()--> closed at once: buffer dropped, RST, connection_lost(None)
    any --peer reset / broken pipe / timeout--> closed, connection_lost(exc)

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
- ``connection_lost`` is called exactly once, on the loop, after the fd is
  closed and unregistered -- also when the reactor is closed between the
  close and that call (the transport stays among the reactor's resources
  until the protocol has been told).
"""

from __future__ import annotations

import os
import socket
import struct
import warnings
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from .._core.resources import CLOSE_LAST
from ..errors import BackendLimitError, ReactorStateError
from ..protocols import Protocol as _BaseProtocol

if TYPE_CHECKING:
    from ..protocols import Protocol
    from .reactor import Reactor

__all__ = ["Transport", "DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER", "READ_SIZE"]

#: Bytes one read may deliver. Every transport of a reactor reads into the
#: reactor's one buffer of this size (one thread, one read at a time):
#: recv(256 KiB) would allocate 256 KiB per call and then shrink it, which
#: above glibc's mmap threshold is an mmap and an munmap per read (measured:
#: 17 us against 2.7 us for recv_into plus a copy of 64 bytes).
READ_SIZE = 256 * 1024
#: pause_writing() once this many bytes are queued
DEFAULT_HIGH_WATER = 64 * 1024
#: resume_writing() once the queue drains below this
DEFAULT_LOW_WATER = 16 * 1024
#: buffers per sendmsg(): Linux's IOV_MAX is 1024
MAX_IOV = 1024
_LINGER_RST = struct.pack("ii", 1, 0)
#: no SIGPIPE on a send to a closed peer (Linux, the BSDs); EPIPE is enough
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_INET = (socket.AF_INET, socket.AF_INET6)
_NO_OP_CONNECTION_LOST = _BaseProtocol.connection_lost
#: with this type, socket(fileno=fd) sets the object non-blocking without a syscall
_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)


class Transport:
    """A connected stream socket driven by a reactor. Created by listeners
    and connectors; user code gets it in ``Protocol.connection_made``."""

    # The initial state, as class attributes: an instance stores only what
    # differs, so a connection accepted and closed at once sets a handful of
    # attributes instead of twenty (measured: 0.8 -> 0.3 us per transport).
    _sock: socket.socket | None = None  # made on first use for a bare fd
    _nonblocking = True
    _buffer: deque[memoryview | bytes] | tuple = ()  # a deque once something is queued
    _buffer_size = 0
    _high = DEFAULT_HIGH_WATER
    _low = DEFAULT_LOW_WATER
    _writing_paused = False  # pause_writing() sent, resume_writing() not yet
    _reading = True  # the user has not paused reading
    _reader_on = False  # registered with the reactor for reading
    _writer_on = False  # registered for writing (something is queued)
    _closing = False  # the user called close() or abort()
    _eof_wanted = False  # write_eof() called
    _eof_sent = False  # shutdown(SHUT_WR) done
    _lost = False  # the fd is closed
    _lost_exc: BaseException | None = None
    _eof_seen = False  # the peer's FIN was read: reading again would repeat eof_received

    def __init__(self, reactor: Reactor, sock: socket.socket | int, protocol: Protocol, *,
                 peername: Any = None, server: Any = None, family: int = socket.AF_INET,
                 nonblocking: bool = True) -> None:
        """``sock`` is a connected socket, or (from a listener) a bare fd of
        ``family``, ``nonblocking`` or not. For a bare fd the socket object
        is made only when first needed: a connection closed in
        ``connection_made`` costs no object and, on the pure accept path, no
        FIONBIO ioctl either."""
        self._reactor = reactor
        if isinstance(sock, int):
            self._fd = sock
            self._family = family
            if not nonblocking:
                self._nonblocking = False
        else:
            self._sock = sock
            self._fd = sock.fileno()
            self._family = sock.family
        self._protocol = protocol
        self._peername = peername
        # the listener that accepted us (told when we close), or None
        self._server = server
        # TCP_NODELAY is set on the first write, not at accept: a connection
        # that is closed in connection_made never pays for the setsockopt.
        self._nodelay_pending = self._family in _INET

    def _socket(self) -> socket.socket:
        """The socket object, made on first use (only while the fd is open)."""
        sock = self._sock
        if sock is None:
            # Explicit family and type: no SO_DOMAIN/SO_TYPE queries (CPython
            # still checks the fd with one getsockname()).
            sock_type = _STREAM_NONBLOCK if self._nonblocking else socket.SOCK_STREAM
            sock = self._sock = socket.socket(self._family, sock_type, 0, self._fd)
            if not self._nonblocking:
                sock.setblocking(False)
        return sock

    # ------------------------------------------------------------ start-up

    def _start(self) -> BaseException | None:
        """Tell the protocol, then start reading unless it already closed.
        Returns the exception if ``connection_made`` raised (it has gone to
        the exception handler and the connection is aborted), so that a
        connect attempt can fail with it."""
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._protocol_failed(exc, "connection_made")
            return exc
        if self._reading and not self._closing and not self._lost:
            return self._start_reading()
        return None

    def _start_reading(self) -> BaseException | None:
        self._socket()
        try:
            self._reactor.add_reader(self._fd, self._read_ready)
        except BackendLimitError as exc:
            # select cannot watch this fd (>= FD_SETSIZE): on this backend the
            # connection cannot work, so it ends here instead of hanging.
            self._connection_failed(exc)
            return exc
        self._reader_on = True
        return None

    # ------------------------------------------------------------- reading

    def _read_ready(self) -> None:
        view = self._reactor._read_view
        try:
            count = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._connection_failed(exc)
            return
        if count:
            data = view[:count].tobytes()
            try:
                self._protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._protocol_failed(exc, "data_received")
        else:
            self._eof_received()

    def _eof_received(self) -> None:
        self._eof_seen = True
        self._stop_reading()
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._protocol_failed(exc, "eof_received")
            return
        if not keep_open:
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
        if not self._reader_on and not self._closing and not self._lost and not self._eof_seen:
            self._start_reading()

    def is_reading(self) -> bool:
        """True while the transport delivers data (not paused, not closing,
        no EOF from the peer yet)."""
        return self._reading and not self._closing and not self._lost and not self._eof_seen

    # ------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: at once if nothing is queued, else after what is.

        Never blocks. Raises ``TypeError`` for non-bytes and
        ``ReactorStateError`` after ``close()``, ``abort()`` or ``write_eof()``
        (also once the close has completed); once the connection is lost for
        another reason (peer reset, broken pipe), data is dropped (the protocol
        has been told).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        if isinstance(data, memoryview):
            # Count and slice bytes, not items: send() reports bytes, and
            # len() of a memoryview of an array('Q') counts 8-byte items.
            data = data.cast("B")
        if self._closing or self._eof_wanted:
            raise ReactorStateError("write() after close(), abort() or write_eof()")
        if self._lost:
            return
        if not data:
            return
        sock = self._sock or self._socket()
        if self._nodelay_pending:
            self._nodelay_pending = False
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # a reset connection: the send below reports it
        # bytes cannot change under us: queue a view of them; anything else the
        # caller may reuse after write() returns, so queue a copy.
        immutable = isinstance(data, bytes)
        if not self._buffer:
            try:
                sent = sock.send(data, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._connection_failed(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:] if sent else data
            try:
                self._reactor.add_writer(self._fd, self._write_ready)
            except BackendLimitError as exc:
                self._connection_failed(exc)
                return
            self._writer_on = True
        if not immutable:
            data = bytes(data)
        if not self._buffer:
            self._buffer = deque()
        self._buffer.append(data)
        self._buffer_size += len(data)
        self._check_high_water()

    def writelines(self, buffers: Any) -> None:
        """Write every buffer of an iterable, in order."""
        self.write(b"".join(buffers))

    def _write_ready(self) -> None:
        buffer = self._buffer
        try:
            if len(buffer) == 1:
                sent = self._sock.send(buffer[0], _SEND_FLAGS)
            else:
                sent = self._sock.sendmsg(islice(buffer, MAX_IOV), (), _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._connection_failed(exc)
            return
        self._buffer_size -= sent
        while sent:
            head = buffer[0]
            if sent >= len(head):
                sent -= len(head)
                buffer.popleft()
            else:
                buffer[0] = memoryview(head)[sent:]
                break
        if self._writing_paused and self._buffer_size <= self._low:
            self._writing_paused = False
            self._call_protocol("resume_writing")
        if not buffer:
            self._writer_on = False
            self._reactor.remove_writer(self._fd)
            if self._closing:
                self._close_now(None)
            elif self._eof_wanted:
                self._shutdown_write()

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
        for name, value in (("high", high), ("low", low)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int number of bytes or None, not {type(value).__name__}")
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
        peer reads EOF; we keep reading."""
        if self._closing or self._eof_wanted or self._lost:
            return
        self._eof_wanted = True
        if not self._buffer:
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        """True: TCP and Unix stream sockets both half-close."""
        return True

    def _shutdown_write(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        try:
            self._socket().shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._connection_failed(exc)

    # ------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        """True once ``close()`` or ``abort()`` was called or the connection
        was lost."""
        return self._closing or self._lost

    def close(self) -> None:
        """Graceful close: stop reading, flush the queue, then close (FIN) and
        call ``connection_lost(None)``. Idempotent."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._close_now(None)

    def abort(self) -> None:
        """Abortive close: drop the queue and send RST (SO_LINGER {1, 0});
        ``connection_lost(None)``."""
        if self._lost:
            return
        self._closing = True
        self._buffer = ()
        self._buffer_size = 0
        try:
            self._socket().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass  # already reset by the peer: closing is enough
        self._close_now(None)

    def _connection_failed(self, exc: OSError) -> None:
        """The kernel reported an error on the socket (reset, broken pipe,
        timeout): the connection is over."""
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            self._report(exc, "socket error on a transport")
        self._buffer = ()
        self._buffer_size = 0
        # not _closing: that means the user closed, and makes write() raise
        self._close_now(exc)

    def _report(self, exc: BaseException, message: str) -> None:
        """Hand ``exc`` to the reactor's exception handler, with this
        connection in the context."""
        self._reactor.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )

    def _protocol_failed(self, exc: BaseException, method: str) -> None:
        self._report(exc, f"exception in {type(self._protocol).__name__}.{method}()")
        # The protocol's state is unknown now: end this connection only.
        if not self._lost:
            self.abort()

    def _close_now(self, exc: BaseException | None) -> None:
        """Release the fd and, on the next iteration, tell the protocol."""
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        if self._reader_on or self._writer_on:
            self._reader_on = self._writer_on = False
            self._reactor._forget_fd(self._fd)
        self._close_fd()
        if self._server is not None:
            self._server._connection_closed(self)
        if type(self._protocol).connection_lost is _NO_OP_CONNECTION_LOST:
            # Nobody to tell: skip the deferred call (the accept-and-close path).
            self._reactor.untrack_resource(self)
            self._protocol = None
            return
        # Deferred so connection_lost never runs inside another protocol
        # callback (close() called from data_received, for instance). We stay
        # in the reactor's resources until it has run: a reactor closed before
        # then calls it from close_for_loop instead.
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _close_fd(self) -> None:
        if self._sock is not None:
            self._sock.close()
        else:
            os.close(self._fd)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._protocol is None:
            return  # already told
        self._reactor.untrack_resource(self)
        try:
            self._protocol.connection_lost(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            self._report(error, f"exception in {type(self._protocol).__name__}.connection_lost()")
        finally:
            self._protocol = None  # break the transport <-> protocol cycle

    def _call_protocol(self, method: str) -> None:
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, f"exception in {type(self._protocol).__name__}.{method}()")

    #: Reactor.close() closes listeners before connections
    close_order = CLOSE_LAST

    def close_for_loop(self) -> None:
        """The reactor is closing with this connection still open: abort it
        (the loop will not run again to flush) and tell the protocol now
        rather than on a next iteration that will not come."""
        if not self._lost:
            self.abort()
        self._call_connection_lost(self._lost_exc)

    def __del__(self) -> None:
        if getattr(self, "_lost", True):
            return
        warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
        self._lost = True
        self._close_fd()

    # --------------------------------------------------------------- extras

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"``, ``"socket"``, or ``default``."""
        if name == "peername":
            if self._peername is None:
                if self._lost:
                    return default  # the fd may already belong to someone else
                try:
                    self._peername = self._socket().getpeername()
                except OSError:
                    return default
            return self._peername
        if name == "sockname":
            if self._lost:
                return default
            try:
                return self._socket().getsockname()
            except OSError:
                return default
        if name == "socket":
            return self._sock if self._lost else self._socket()
        return default

    def get_protocol(self) -> Protocol:
        """The protocol this transport drives."""
        return self._protocol

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<Transport fd={self._fd} {state} peer={self._peername!r}>"

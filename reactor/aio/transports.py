"""The stream transport of ``reactor.aio``: reactor's ``Transport`` as an
``asyncio.Transport``.

Reading, writing, backpressure, half-close, FIN versus RST, MSG_NOSIGNAL and
the lifecycle table are reactor's (``reactor._net.transport``); this class
adds what asyncio code expects of a transport:

- it *is* an ``asyncio.Transport`` (aiohttp checks ``isinstance``), with
  ``set_protocol`` / ``get_protocol``, ``get_extra_info`` over asyncio's
  ``extra`` dict (``socket`` is a ``TransportSocket``, as asyncio gives), and
  the ``_start_tls_compatible`` / ``_sendfile_compatible`` marks that
  ``loop.start_tls`` and ``loop.sendfile`` look for; it is also asyncio's
  ``_FlowControlMixin``, which asyncio's sendfile fallback insists on (the
  flow control itself is reactor's);
- ``asyncio.BufferedProtocol``: the socket is read straight into the
  protocol's buffer (``get_buffer`` / ``recv_into`` / ``buffer_updated``),
  which is how ``asyncio.sslproto`` reads (reactor's transport decides
  that from the protocol's type, in its constructor and ``set_protocol``);
- asyncio's rules for ``write`` when the transport is not open: after
  ``write_eof()`` it raises ``RuntimeError``; after ``close()`` the data is
  still queued and flushed before the FIN (asyncio sends it too); once the
  connection is gone the data is dropped, with a warning after a few tries;
- ``abort()`` is asyncio's (drop the queue, close), not reactor's RST;
- the asyncio ``Server`` is told when each of its connections ends
  (``wait_closed``), and ``_force_close(exc)`` ends a connection with
  ``connection_lost(exc)`` (``sslproto`` calls it on handshake and shutdown
  timeouts).
"""

from __future__ import annotations

import collections
import contextvars
import socket
from asyncio import constants, futures, trsock
from asyncio import transports as aio_transports
from typing import TYPE_CHECKING, Any

from .._net import transport as _transport
from .._net.transport import Transport
from ._private.futures import set_result_unless_cancelled
from ._private.servers import CONNECTION_CONTEXTS, attach, detach, is_open
from .host import ContextHost

if TYPE_CHECKING:
    from .loop import ReactorEventLoop

__all__ = ["StreamTransport"]

_CLOSING, _FD_CLOSED = _transport.CLOSING, _transport._FD_CLOSED
_WRITE_SIDE_ENDING = frozenset({_transport.SHUTTING_WRITE, _transport.WRITE_SHUT})


class StreamTransport(Transport, aio_transports._FlowControlMixin):
    """A TCP or Unix stream connection for asyncio protocols."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _aio_server: Any = None
    _flush_waiter: futures.Future[None] | None = None
    _dropped_writes = 0
    #: the context the protocol runs in (3.15+: asyncio passes one), or None:
    #: then each callback runs in a copy of the context it was registered in
    _context: contextvars.Context | None = None
    # (see Transport._SHARED_ATTRIBUTES; a BufferedProtocol, asyncio's TLS
    # layer among them, is read through _read_ready)
    _SHARED_ATTRIBUTES = (*Transport._SHARED_ATTRIBUTES, "_extra", "_loop", "_aio_server", "_read_ready",
                          *(("_context",) if CONNECTION_CONTEXTS else ()))
    _UNSHARED_ATTRIBUTES = (*(name for name in Transport._UNSHARED_ATTRIBUTES if name != "_read_ready"),
                            "_flush_waiter", "write", "_dropped_writes",
                            *(() if CONNECTION_CONTEXTS else ("_context",)))

    @property
    def _protocol_paused(self) -> bool:
        # asyncio's name for "pause_writing() sent" (its sendfile fallback reads it)
        return self._writing_paused

    @property
    def _paused(self) -> bool:
        # asyncio's transports' name for "pause_reading() was called" (code
        # written against them reads it, CPython's tests among it)
        return not self._reading

    def __init__(self, loop: ReactorEventLoop, sock: socket.socket | int, protocol: Any, *,
                 peername: Any = None, listener: Any = None, family: int = socket.AF_INET,
                 nonblocking: bool = True, server: Any = None, extra: dict[str, Any] | None = None,
                 context: contextvars.Context | None = None) -> None:
        # Whatever may raise goes before Transport.__init__: once it has run
        # the transport owns the fd, and the listener's clean-up would close
        # it a second time.
        extra_info = dict(extra) if extra else {}
        # A server closed during this accept batch (by a protocol callback)
        # serves the connections already accepted, as asyncio does, but no
        # longer waits for them in wait_closed().
        attached = server is not None and is_open(server)
        if attached:
            attach(server, self)
        # With a context of its own (3.15+), the connection registers its
        # callbacks through a face of the loop that runs them in it.
        host = loop._host if context is None else ContextHost(loop._host, context)
        try:
            Transport.__init__(self, host, sock, protocol, peername=peername, server=listener,
                               family=family, nonblocking=nonblocking)
        except BaseException:
            if attached:
                detach(server, self)
            raise
        self._extra = extra_info
        self._loop = loop
        if context is not None:
            self._context = context
        if attached:
            self._aio_server = server
        loop._transports[self._fd] = self
        # A socket the caller holds (asyncio's _make_socket_transport):
        # TCP_NODELAY now, as asyncio sets it when it makes a transport (on
        # TCP sockets made with IPPROTO_TCP, as getaddrinfo's are), so what
        # they see and set after is theirs.
        if not isinstance(sock, int) and sock.proto == socket.IPPROTO_TCP:
            self._set_nodelay()

    @classmethod
    def start(cls, loop: ReactorEventLoop, sock: socket.socket, protocol: Any, *, waiter: Any = None,
              extra: dict[str, Any] | None = None, server: Any = None,
              context: contextvars.Context | None = None) -> StreamTransport:
        """A transport for a connected socket, asyncio's way: the protocol
        hears ``connection_made`` on the next iteration, then ``waiter`` is
        set."""
        transport = cls(loop, sock, protocol, extra=extra, server=server, context=context)
        loop._host.track_resource(transport)
        loop.call_soon(transport._start_then_wake, waiter)
        return transport

    def _start(self) -> BaseException | None:
        # In the connection's context (3.15+): connection_made, and the
        # reader registered from inside it, whose handle runs data_received
        # in (a copy of) the same context.
        context = self._context
        if context is None:
            return Transport._start(self)
        return context.run(Transport._start, self)

    def _start_then_wake(self, waiter: Any) -> None:
        self._start()
        if waiter is not None:
            set_result_unless_cancelled(waiter, None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fd} {self._state} peer={self._peername!r}>"

    # ------------------------------------------------------------- reading

    def _buffer_protocol_failed(self, exc: BaseException, method: str) -> None:
        """``get_buffer`` / ``buffer_updated`` raised: asyncio's message and
        its ``_fatal_error`` (reactor's read path, ``_read_into_protocol``)."""
        self._fatal_error(exc, f"Fatal error: protocol.{method}() call failed.")

    def _protocol_failed(self, exc: BaseException, method: str) -> None:
        # asyncio's rule for data_received and eof_received: report, close,
        # and pass the exception to connection_lost (reactor's own transport
        # aborts with connection_lost(None)).
        if method in ("data_received", "eof_received"):
            self._fatal_error(exc, f"Fatal error: protocol.{method}() call failed.")
        else:
            Transport._protocol_failed(self, exc, method)

    def get_protocol(self) -> Any:
        """The protocol this transport drives (None once it was told
        ``connection_lost``)."""
        return self._protocol

    def is_reading(self) -> bool:
        """asyncio's meaning: not paused and not closing (also after an EOF
        the protocol chose to keep)."""
        return self._reading and self._state not in (_CLOSING, *_FD_CLOSED)

    # ------------------------------------------------------------- writing

    # write() is reactor's own (no wrapper: a Python call per write costs
    # ~1,200 instructions, a tenth of an echo request's); asyncio's rules
    # come in once the transport is not open, and while loop.sendfile sends.

    def _write_not_open(self, data: Any, state: Any) -> None:
        """asyncio's rules once the transport is not open (module docs)."""
        if state in _WRITE_SIDE_ENDING:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if state is _CLOSING:
            # close() is flushing: these bytes go out before the FIN, as in
            # asyncio. The queue may have just run empty (a resume_writing
            # callback writing from inside the flush): then watch again.
            chunk = bytes(data)
            buffer = self._buffer
            if not buffer:
                buffer = self._buffer = collections.deque()
                self._reactor.add_writer(self._fd, self._write_ready)
            buffer.append(chunk)
            self._buffer_size += len(chunk)
            return
        self._dropped_writes += 1
        if self._dropped_writes >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            self._loop.call_exception_handler({"message": "socket.send() raised exception.", "transport": self})

    async def _send_file(self, file: Any, offset: int, count: int | None) -> int:
        """``loop.sendfile``: the transport's own queue goes first, then the
        file straight from the page cache (os.sendfile), with the
        transport's reads paused."""
        loop = self._loop
        fd = self._fd
        del loop._transports[fd]
        resume_reading = self.is_reading()
        self.pause_reading()
        self._begin_sendfile()
        try:
            await self._wait_flushed()
            return await loop.sock_sendfile(self._socket(), file, offset, count, fallback=False)
        finally:
            self._end_sendfile()
            if resume_reading:
                self.resume_reading()
            if not self.is_closing():
                loop._transports[fd] = self

    def _begin_sendfile(self) -> None:
        """``loop.sendfile`` is sending from now on: ``write()`` raises."""
        self.write = self._refuse_write  # type: ignore[method-assign]

    def _end_sendfile(self) -> None:
        try:
            del self.write
        except AttributeError:
            pass  # not begun

    def _refuse_write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        raise RuntimeError("unable to write; sendfile is in progress")

    def _write_ready(self) -> None:
        Transport._write_ready(self)
        waiter = self._flush_waiter
        if waiter is not None and not self._buffer:
            self._flush_waiter = None
            set_result_unless_cancelled(waiter, None)

    async def _wait_flushed(self) -> None:
        """Wait until the queue is empty (``loop.sendfile`` sends the file
        after what was written before it)."""
        if not self._buffer:
            return
        waiter = self._flush_waiter = self._loop.create_future()
        await waiter

    # ------------------------------------------------------------- closing

    def abort(self) -> None:
        """asyncio's abort: drop the queue and close now, ``connection_lost(None)``.
        The close is a plain one (FIN, or RST only if unread data is left, as
        the kernel does), not reactor's SO_LINGER reset: asyncio peers and
        asyncio's own TLS layer expect an aborted connection to read as EOF."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # A peer's error is news for the protocol; anything else is a bug
        # worth the exception handler (asyncio reports OSError only in debug).
        if not isinstance(exc, OSError) or self._loop.get_debug():
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _release(self, exc: Exception | None) -> None:
        self._leave_transports()
        # asyncio's transports know their addresses after the close (their
        # extra dict is filled at creation); reactor's ask the socket, so
        # ask it once more while the fd is still ours.
        extra = self._extra
        if "sockname" not in extra:
            sockname = self._sockname()
            if sockname is not None:
                extra["sockname"] = sockname
        if "peername" not in extra and self._peername is None:
            try:
                self._peername = (self._sock or self._socket()).getpeername()
            except OSError:
                pass
        Transport._release(self, exc)

    def _call_connection_lost(self) -> None:
        try:
            Transport._call_connection_lost(self)
        finally:
            self._end_for_server()

    def _discard(self) -> None:
        self._leave_transports()
        Transport._discard(self)
        self._end_for_server()

    def _leave_transports(self) -> None:
        """The fd is about to close: out of the loop's fd -> transport map
        (unless the number is already another's)."""
        transports = self._loop._transports
        if transports.get(self._fd) is self:
            del transports[self._fd]

    def _end_for_server(self) -> None:
        waiter = self._flush_waiter
        if waiter is not None:
            self._flush_waiter = None
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection lost while flushing for sendfile"))
        server = self._aio_server
        if server is not None:
            self._aio_server = None
            detach(server, self)

    # --------------------------------------------------------------- extras

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's ``extra`` first (``socket``, ``sockname``, ``peername``,
        and what the caller passed), then reactor's."""
        extra = self._extra
        if name in extra:
            return extra[name]
        if name == "socket":
            if self._state in _FD_CLOSED:
                return default
            wrapped = extra["socket"] = trsock.TransportSocket(self._socket_for_user())
            return wrapped
        return Transport.get_extra_info(self, name, default)

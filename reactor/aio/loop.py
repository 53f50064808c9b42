"""``ReactorEventLoop``: an asyncio event loop whose I/O is reactor's.

What comes from where:

- Scheduling is asyncio's own: ``asyncio.base_events.BaseEventLoop`` gives
  ``call_soon`` with ``context=``, timers, ``run_until_complete``, executors,
  ``getaddrinfo``, the generic ``create_server`` / ``create_connection`` /
  ``start_tls`` / ``sendfile`` logic, debug mode with slow-callback warnings,
  async-generator and executor shutdown. Futures, tasks and the TLS state
  machine (``asyncio.sslproto``) are asyncio's, as in uvloop.
- The I/O layer is this package's: fd watchers on reactor's selector
  backends (``reactor._core.watchers``: one registration per fd, select's
  FD_SETSIZE guard), servers on reactor's ``Listener`` (the accept drain in C
  or Python, the errno table, the pause/shed exhaustion policies), stream
  connections on reactor's ``Transport`` (``reactor.aio.transports``), the
  ``sock_*`` coroutines (``reactor.aio.sockets``) and UDP
  (``reactor.aio.datagram``).
- Pipes and subprocesses use asyncio's Unix pipe and subprocess transports,
  which need nothing of a loop but ``_add_reader`` / ``_add_writer``.

Rules of this module:

- BaseEventLoop's ``_run_once`` waits in ``self._selector.select()`` and
  hands what it returns to ``_process_events``, which queues the ready
  watchers' handles; only ``_run_once`` waits. On epoll that wait is
  ``FdWatchers.poll_fds``: the kernel's ``(fd, events)`` list, looked up by
  fd (no selectors key or tuple per event), with asyncio's order kept: the
  handles are queued behind the callbacks already ready.
- Cross-thread wake-ups and signals share one socketpair (the "self-pipe"):
  ``call_soon_threadsafe`` writes a zero byte; the C-level signal handler
  writes the signal number (``signal.set_wakeup_fd``).
- Whatever reactor objects are still open when the loop closes (listeners,
  connections) are closed through the resource interface, listeners first.
"""

from __future__ import annotations

import contextvars
import errno
import os
import signal
import socket
import stat
import sys
import warnings
import weakref
from asyncio import base_events, constants, coroutines, events, tasks
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVarTuple, Unpack

from .. import native as _native
from .._core.backends import backend_info
from .._core.loop import BACKEND_ENV
from .._core.watchers import EPOLL_READ, EPOLL_WRITE, EVENT_READ, EVENT_WRITE, FdWatchers, fileobj_to_fd
from .._net.listener_options import ListenerOptions
from .._net.tls import SharedBufferSSLProtocol
from .._net.transport import READ_SIZE
from ._private import logger
from ._private.children import Children
from ._private.pipes import UnixReadPipeTransport, UnixSubprocessTransport, UnixWritePipeTransport
from ._private.servers import UNIX_CLEANUP_DEFAULT
from .datagram import DatagramTransport
from .host import LoopHost
from .servers import AioListener, ReactorServer
from .sockets import SocketMethods
from .transports import StreamTransport

__all__ = ["ReactorEventLoop"]

_Ts = TypeVarTuple("_Ts")



def _ignore_signal(signum: int, frame: Any) -> None:
    """Python-level handler: the work happens on the loop, woken by the byte
    the C-level handler wrote to the wake-up fd."""


class _EpollWait:
    """What ``BaseEventLoop._run_once`` waits in (``self._selector.select``)
    on epoll: the watchers' ``poll_fds``, whose ``(fd, events)`` list
    ``ReactorEventLoop._process_events`` dispatches by fd."""

    __slots__ = ("select",)

    def __init__(self, watchers: FdWatchers) -> None:
        self.select = watchers.poll_fds


class ReactorEventLoop(SocketMethods, base_events.BaseEventLoop):
    """An asyncio event loop on reactor's backends, listeners and transports.

    ``backend``: ``None`` (``$REACTOR_BACKEND``, else ``"auto"``),
    ``"auto"``, ``"select"``, ``"poll"`` or ``"epoll"``. ``native``:
    ``"auto"`` (the C accept drain when built; ``$REACTOR_NATIVE`` decides),
    ``True`` or ``False``.
    """

    if TYPE_CHECKING:
        # BaseEventLoop's own helpers, which typeshed does not declare
        _internal_fds: int
        _ssock: Any
        _csock: Any

        def _check_closed(self) -> None: ...
        def _add_callback(self, handle: events.Handle) -> None: ...
        def _add_callback_signalsafe(self, handle: events.Handle) -> None: ...
        async def _create_connection_transport(self, sock: socket.socket, protocol_factory: Callable[[], Any],
                                               ssl: Any, server_hostname: str | None,
                                               **kwargs: Any) -> tuple[Any, Any]: ...
        async def _ensure_resolved(self, address: Any, **kwargs: Any) -> Any: ...

    #: until BaseEventLoop.__init__ runs: a loop whose arguments were refused
    #: is "closed" for __del__, which would otherwise warn about it
    _closed = True

    def __init__(self, backend: str | None = None, native: bool | str = "auto") -> None:
        # Arguments first: a loop that is never made must not be left
        # half-built for __del__ to warn about.
        if backend is None:
            backend = os.environ.get(BACKEND_ENV, "").strip() or "auto"
        info = backend_info(backend)
        use_native = _native.resolve(native)
        super().__init__()
        #: True if servers accept through the C drain
        self.native: bool = use_native
        #: the selector backend in use, e.g. "epoll"
        self.backend: str = info.name
        self.max_fd: int | None = info.max_fd
        # BaseEventLoop._run_once waits in self._selector.select(): that is
        # the watchers' select, which survives bad fds and a failing selector.
        self._watchers = FdWatchers(info.loop_selector_class(), info.name, info.max_fd, self.call_exception_handler)
        self._selector: Any = self._watchers
        #: epoll: the watchers' fd -> (reader, writer) map, and _run_once
        #: waits in poll_fds (the kernel's (fd, events), no selectors key or
        #: tuple per event) instead of select(); None on select and poll
        self._by_fd: dict[int, tuple[Any, Any]] | None = None
        if info.name == "epoll":
            self._by_fd = self._watchers.by_fd
            self._selector = _EpollWait(self._watchers)
        # fd -> the transport using it (add_reader refuses those fds)
        self._transports: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        # reactor objects living on this loop: closed with it
        self._resources: set[Any] = set()
        # servers' listening sockets: fd -> Listener
        self._listeners: dict[int, AioListener] = {}
        # create_unix_server(cleanup_socket=True): socket -> its file's inode
        self._unix_server_sockets: dict[socket.socket, int] = {}
        # every transport of this loop reads into this one buffer
        self._read_view = memoryview(bytearray(READ_SIZE))
        self._signal_handlers: dict[int, events.Handle] = {}
        self._host = LoopHost(self)
        self._children = Children(self)
        #: 3.14+: the child watcher, where asyncio's Unix loop keeps its own
        self._watcher = self._children.own
        self._make_self_pipe()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend} native={self.native} "
                f"running={self.is_running()} closed={self.is_closed()} debug={self.get_debug()}>")

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the loop: whatever reactor listeners and connections are
        still open, the self-pipe, the selector; then asyncio's own close
        (the default executor). Idempotent; RuntimeError while running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._close_resources()
        self._close_self_pipe()
        super().close()
        if not sys.is_finalizing():
            for signum in list(self._signal_handlers):
                self.remove_signal_handler(signum)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown stage, "
                          f"skipping signal handlers removal", ResourceWarning, source=self)
            self._signal_handlers.clear()
        self._watchers.close()
        self._selector = None

    def _close_resources(self) -> None:
        # Listeners first, so none resumes accepting while connections close.
        for _ in range(10):
            if not self._resources:
                return
            closing, self._resources = self._resources, set()
            for resource in sorted(closing, key=lambda r: r.close_order):
                try:
                    resource.close_for_loop()
                except Exception as exc:
                    self.call_exception_handler(
                        {"message": f"exception closing {resource!r} with the loop", "exception": exc})
        if self._resources:
            logger.error("%r: resources still being opened while the loop closed: %d", self, len(self._resources))
            self._resources.clear()

    # ----------------------------------------------------------- the pipe

    def _make_self_pipe(self) -> None:
        self._ssock, self._csock = socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._internal_fds += 1
        self._add_reader(self._ssock.fileno(), self._read_from_self)

    def _close_self_pipe(self) -> None:
        self._remove_reader(self._ssock.fileno())
        self._ssock.close()
        self._ssock = None
        self._csock.close()
        self._csock = None
        self._internal_fds -= 1

    def _read_from_self(self) -> None:
        while True:
            try:
                data = self._ssock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum:  # zero bytes are call_soon_threadsafe wake-ups
                    self._handle_signal(signum)

    def _write_to_self(self) -> None:
        # From any thread, possibly while or after the pipe is closed.
        csock = self._csock
        if csock is None:
            return
        try:
            csock.send(b"\0")
        except OSError:
            if self._debug:
                logger.debug("Fail to write a null byte into the self-pipe socket", exc_info=True)

    # --------------------------------------------------------- fd watchers

    def _process_events(self, event_list: list[tuple[Any, int]]) -> None:
        # Queues the ready watchers' handles, as asyncio's selector loop
        # does; no callback has run since the wait, so the map is the one
        # the kernel answered for.
        by_fd = self._by_fd
        if by_fd is not None:
            queue = self._ready.append  # type: ignore[attr-defined]  # _add_callback, inline: its test is made here
            for fd, events in event_list:
                pair = by_fd.get(fd)
                if pair is None:
                    continue  # unwatched since (a bad fd's handles were ended)
                reader, writer = pair
                if reader is not None and events & EPOLL_READ:
                    if reader._cancelled:
                        self._remove_reader(fd)
                    else:
                        queue(reader)
                if writer is not None and events & EPOLL_WRITE:
                    if writer._cancelled:
                        self._remove_writer(fd)
                    else:
                        queue(writer)
            return
        for key, mask in event_list:
            reader, writer = key.data
            if mask & EVENT_READ and reader is not None:
                if reader._cancelled:
                    self._remove_reader(key.fd)
                else:
                    self._add_callback(reader)
            if mask & EVENT_WRITE and writer is not None:
                if writer._cancelled:
                    self._remove_writer(key.fd)
                else:
                    self._add_callback(writer)

    def _add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any,
                    context: contextvars.Context | None = None) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._watchers.add(fileobj_to_fd(fd), EVENT_READ, handle, fd)
        return handle

    def _add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any,
                    context: contextvars.Context | None = None) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._watchers.add(fileobj_to_fd(fd), EVENT_WRITE, handle, fd)
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        if self.is_closed():
            return False
        return self._watchers.remove(self._watchers.fd_of(fd), EVENT_READ)

    def _remove_writer(self, fd: Any) -> bool:
        if self.is_closed():
            return False
        return self._watchers.remove(self._watchers.fd_of(fd), EVENT_WRITE)

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd: Any, callback: Callable[[Unpack[_Ts]], Any], *args: *_Ts) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was removed."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[[Unpack[_Ts]], Any], *args: *_Ts) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was removed."""
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # ------------------------------------------------------------ signals

    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts) -> None:
        """Run ``callback(*args)`` on the loop when signal ``sig`` arrives
        (main thread only). ValueError for an invalid or uncatchable signal,
        RuntimeError if it cannot be set up."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: checked first, so a
            # loop in another thread cannot take the process's signals.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _ignore_signal)
            signal.siginterrupt(sig, False)  # SA_RESTART: fewer EINTRs
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback_signalsafe(handle)

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore the default action for ``sig``; True if a handler was removed."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True

    def _check_signal(self, sig: Any) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    # ------------------------------------------------ transports (streams)

    # ``context``: from 3.15 asyncio runs each connection's protocol in the
    # context it passes here (a copy of the server's, or the caller's);
    # before 3.15 it passes none.

    def _make_socket_transport(self, sock: socket.socket, protocol: Any, waiter: Any = None, *,
                               extra: dict[str, Any] | None = None, server: Any = None,
                               context: contextvars.Context | None = None) -> StreamTransport:
        return StreamTransport.start(self, sock, protocol, waiter=waiter, extra=extra, server=server,
                                     context=context)

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: Any, sslcontext: Any, waiter: Any = None, *,
                            server_side: bool = False, server_hostname: str | None = None,
                            extra: dict[str, Any] | None = None, server: Any = None,
                            ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
                            context: contextvars.Context | None = None) -> Any:
        ssl_protocol = SharedBufferSSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            read_buffer=self._read_view)
        StreamTransport.start(self, rawsock, ssl_protocol, extra=extra, server=server, context=context)
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any, address: Any = None,
                                 waiter: Any = None, extra: dict[str, Any] | None = None) -> DatagramTransport:
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: int | None) -> int:
        # The transport's own queue goes first, then the file straight from
        # the page cache (os.sendfile), with the transport's reads paused.
        fd = transp._fd
        del self._transports[fd]
        resume_reading = transp.is_reading()
        transp.pause_reading()
        transp._begin_sendfile()
        try:
            await transp._wait_flushed()
            return await self.sock_sendfile(transp._socket(), file, offset, count, fallback=False)
        finally:
            transp._end_sendfile()
            if resume_reading:
                transp.resume_reading()
            if not transp.is_closing():
                self._transports[fd] = transp

    # ------------------------------------------------------------- servers

    async def create_server(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, *,
                            proxy_protocol: bool = False, proxy_from: Any = None, **kwargs: Any) -> ReactorServer:
        """``asyncio``'s ``create_server`` (every keyword), serving through
        reactor listeners; the server has ``.stats``. ``proxy_protocol=True``
        (reactor's own keyword, as for ``Reactor.listen``): every connection
        starts with a PROXY protocol v1/v2 header, read before
        ``connection_made`` (and before TLS); ``get_extra_info("peername")``
        is then the client's address. ``proxy_from``: the CIDR networks a
        header is taken from (default loopback only), as for ``listen``."""
        options = ListenerOptions(proxy_protocol=proxy_protocol, proxy_from=proxy_from)
        start_serving = kwargs.pop("start_serving", True)
        server = await super().create_server(protocol_factory, host, port, start_serving=False, **kwargs)
        return await self._adopt_server(server, start_serving, options)

    async def create_unix_server(self, protocol_factory: Callable[[], Any], path: Any = None, *,
                                 sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
                                 ssl_handshake_timeout: float | None = None,
                                 ssl_shutdown_timeout: float | None = None,
                                 start_serving: bool = True, cleanup_socket: bool = UNIX_CLEANUP_DEFAULT,
                                 proxy_protocol: bool = False) -> ReactorServer:
        """A server on a Unix stream socket at ``path`` (or on ``sock``);
        ``cleanup_socket``: remove the socket file when the server closes,
        if it is still the one bound (by inode; True from Python 3.13, as in
        asyncio); ``proxy_protocol`` as for ``create_server``."""
        options = ListenerOptions(proxy_protocol=proxy_protocol)
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # A socket file left by a dead server is replaced, as asyncio does
            # (an abstract name, starting with NUL, has no file).
            if path[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket:
            bound = sock.getsockname()
            if bound and bound[0] not in (0, "\x00"):  # an abstract name has no file
                try:
                    self._unix_server_sockets[sock] = os.stat(bound).st_ino
                except FileNotFoundError:
                    pass
        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory, ssl, backlog,
                                    ssl_handshake_timeout, ssl_shutdown_timeout)
        return await self._adopt_server(server, start_serving, options)

    async def _adopt_server(self, server: base_events.Server, start_serving: bool,
                            options: ListenerOptions) -> ReactorServer:
        # asyncio's create_server builds a base_events.Server by name; ours
        # only adds the listeners' stats (and what they are asked for), so the
        # instance changes class in place (same layout) instead of copying
        # create_server's logic.
        server.__class__ = ReactorServer
        adopted: ReactorServer = server  # type: ignore[assignment]
        adopted._listeners = []
        adopted._listener_options = options
        if start_serving:
            adopted._start_serving()
            await tasks.sleep(0)  # let the readers go through, as asyncio does
        return adopted

    def _start_serving(self, protocol_factory: Callable[[], Any], sock: socket.socket, sslcontext: Any = None,
                       server: Any = None, backlog: int = 100,
                       ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
                       context: contextvars.Context | None = None) -> None:
        # asyncio's Server calls this with its own arguments only: what reactor adds rides on the server
        options = server._listener_options if isinstance(server, ReactorServer) else None
        listener = AioListener.serve(self, sock, protocol_factory, sslcontext=sslcontext, server=server,
                                     backlog=backlog, ssl_handshake_timeout=ssl_handshake_timeout,
                                     ssl_shutdown_timeout=ssl_shutdown_timeout, options=options, context=context)
        self._listeners[sock.fileno()] = listener
        if isinstance(server, ReactorServer):
            server._listeners.append(listener)

    def _stop_serving(self, sock: socket.socket) -> None:
        inode = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        listener = self._listeners.pop(sock.fileno(), None)
        if listener is not None:
            listener.close()
        else:
            sock.close()
        if path is not None:
            # (create_unix_server's cleanup_socket) only the file we bound:
            # another server may have replaced it since
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # ------------------------------------------------------------ clients

    async def create_unix_connection(self, protocol_factory: Callable[[], Any], path: Any = None, *,
                                     ssl: Any = None, sock: socket.socket | None = None,
                                     server_hostname: str | None = None,
                                     ssl_handshake_timeout: float | None = None,
                                     ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        """Connect to the Unix stream socket at ``path`` (or use ``sock``)."""
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout)

    # ---------------------------------------------- pipes and subprocesses

    def _make_read_pipe_transport(self, pipe: Any, protocol: Any, waiter: Any = None,
                                  extra: dict[str, Any] | None = None) -> Any:
        return UnixReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe: Any, protocol: Any, waiter: Any = None,
                                   extra: dict[str, Any] | None = None) -> Any:
        return UnixWritePipeTransport(self, pipe, protocol, waiter, extra)

    async def _make_subprocess_transport(self, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any,
                                         stderr: Any, bufsize: int, extra: dict[str, Any] | None = None,
                                         **kwargs: Any) -> Any:
        with self._children.watcher() as watcher:
            waiter = self.create_future()
            transport = UnixSubprocessTransport(
                self, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=waiter, extra=extra, **kwargs)
            watcher.add_child_handler(transport.get_pid(), self._children.exited, transport)
            try:
                await waiter
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                transport.close()
                await tasks.shield(transport._wait())
                raise
        return transport

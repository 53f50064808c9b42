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

- The loop is a ``LoopCore`` (``reactor._core.core``) under asyncio's
  ``BaseEventLoop``, as reactor's own loop is: the fd watchers and their
  dispatch, the wake-up pipe ("self-pipe"), signals, resource tracking and
  close and the read buffer are that core's, written once for both loops.
  This module adds asyncio's faces of them: asyncio's names
  (``_add_reader``, ``_process_events``, ``_write_to_self``), its argument
  checks and its errors.
- ``call_soon`` and ``_run_once`` are BaseEventLoop's, compiled
  (``reactor.aio._private.ready_queue``); ``_run_once`` waits in ``self._selector.select()``: that is
  ``FdWatchers.wait``, the kernel's ``(fd, events)`` on every backend, and
  ``_process_events`` hands the list to the core's dispatch with asyncio's
  order: the ready watchers' handles queued behind the callbacks already
  ready. Only ``_run_once`` waits.
- ``call_soon_threadsafe`` wakes the loop through the core's pipe
  (``_write_to_self``), at most one byte per wait; the C-level signal
  handler writes the signal number there.
- Whatever reactor objects are still open when the loop closes (listeners,
  connections) are closed through the resource interface, listeners first,
  in a bounded number of rounds (the core's).
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
from asyncio import base_events, constants, coroutines, events, tasks
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVarTuple, Unpack

from .. import native as _native
from .._core.backends import backend_info
from .._core.core import LoopCore
from .._core.loop import BACKEND_ENV
from .._core.watchers import EVENT_READ, EVENT_WRITE, FdWatchers
from .._net.listener_options import ListenerOptions
from .._net.tls import SharedBufferSSLProtocol
from ._private import logger
from ._private.children import Children
from ._private.coroutines import iscoroutinefunction
from ._private.pipes import UnixReadPipeTransport, UnixSubprocessTransport, UnixWritePipeTransport
from ._private.ready_queue import call_soon, create_future, get_debug, monotonic_time, run_once
from ._private.servers import UNIX_CLEANUP_DEFAULT
from .datagram import DatagramTransport
from .host import LoopHost
from .servers import AioListener, ReactorServer
from .sockets import SocketMethods
from .transports import StreamTransport

__all__ = ["ReactorEventLoop"]

_Ts = TypeVarTuple("_Ts")


class _Wait:
    """What ``BaseEventLoop._run_once`` waits in (``self._selector.select``):
    the watchers' ``wait``, whose ``(fd, events)`` list ``_process_events``
    hands to the core's dispatch. ``get_key`` is the selector's: asyncio's
    pipe transports ask it, in their repr, whether their fd is watched."""

    __slots__ = ("select", "get_key")

    def __init__(self, watchers: FdWatchers) -> None:
        self.select = watchers.wait
        self.get_key = watchers.selector.get_key


class ReactorEventLoop(SocketMethods, LoopCore, base_events.BaseEventLoop):
    """An asyncio event loop on reactor's backends, listeners and transports.

    ``backend``: ``None`` (``$REACTOR_BACKEND``, else ``"auto"``),
    ``"auto"``, ``"select"``, ``"poll"`` or ``"epoll"``. ``native``:
    ``"auto"`` (the C accept drain when built; ``$REACTOR_NATIVE`` decides),
    ``True`` or ``False``.
    """

    if TYPE_CHECKING:
        # BaseEventLoop's own helpers, which typeshed does not declare
        def _check_closed(self) -> None: ...
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
        # The selector (backend, max_fd), the wake-up pipe, signals,
        # resources (closed with the loop) and the read buffer. asyncio's
        # order: a ready watcher's handle is queued behind the callbacks
        # already ready (_add_callback, inline: the core makes its test).
        self._init_core(info, io_queue=self._ready.append)
        # BaseEventLoop._run_once waits in self._selector.select(): the
        # watchers' wait, which survives bad fds and a failing selector
        self._selector: Any = _Wait(self._watchers)
        # fd -> the transport using it (add_reader refuses those fds). A
        # plain dict, where asyncio's is weak: our transports are the loop's
        # tracked resources until their fd is released, and each takes its
        # entry out then (a weak entry's KeyedRef and callback cost every
        # connection ~6,000 instructions)
        self._transports: dict[int, Any] = {}
        # servers' listening sockets: fd -> Listener
        self._listeners: dict[int, AioListener] = {}
        # create_unix_server(cleanup_socket=True): socket -> its file's inode
        self._unix_server_sockets: dict[socket.socket, int] = {}
        self._host = LoopHost(self)
        self._children = Children(self)
        #: 3.14+: the child watcher, where asyncio's Unix loop keeps its own
        self._watcher = self._children.own

    # asyncio's call_soon, one iteration (BaseEventLoop._run_once) and the
    # one-liners every future calls, with its semantics, compiled where
    # built (reactor.aio._private.ready_queue). Functions, not methods calling them:
    # one Python call less each.
    call_soon = call_soon  # type: ignore[assignment]
    create_future = create_future
    get_debug = get_debug
    time = monotonic_time
    _run_once = run_once

    def _make_handle(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> events.Handle:
        return events.Handle(callback, args, self, None)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend} native={self.native} "
                f"running={self.is_running()} closed={self.is_closed()} debug={self.get_debug()}>")

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the loop: whatever reactor listeners and connections are
        still open; asyncio's own close (the default executor); the signal
        handlers; the self-pipe and the selector. Idempotent; RuntimeError
        while running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._close_resources()
        super().close()
        if not sys.is_finalizing():
            for signum in list(self._signal_handlers):
                self.remove_signal_handler(signum)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown stage, "
                          f"skipping signal handlers removal", ResourceWarning, source=self)
            self._signal_handlers.clear()
        self._close_io()
        self._selector = None

    # ----------------------------------------------------------- the pipe

    #: asyncio's name for the wake-up: call_soon_threadsafe calls it, from
    #: any thread, possibly while or after the loop closes (the core's)
    _write_to_self = LoopCore._wake

    # --------------------------------------------------------- fd watchers

    #: what BaseEventLoop._run_once calls with what the wait returned: the
    #: core's dispatch, which queues each ready watcher's handle (the
    #: io_queue given to _init_core); no callback has run since the wait
    _process_events = LoopCore._dispatch

    def _add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any,
                    context: contextvars.Context | None = None) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._watch(fd, EVENT_READ, handle)
        return handle

    def _add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any,
                    context: contextvars.Context | None = None) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._watch(fd, EVENT_WRITE, handle)
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        return self._unwatch(fd, EVENT_READ)

    def _remove_writer(self, fd: Any) -> bool:
        return self._unwatch(fd, EVENT_WRITE)

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
        if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            self._install_signal(sig, events.Handle(callback, args, self, None))
        except ValueError as exc:
            # off the main thread: a loop in another thread cannot take the process's signals
            raise RuntimeError(str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore the default action for ``sig``; True if a handler was removed."""
        self._check_signal(sig)
        try:
            handle = self._uninstall_signal(sig)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        return handle is not None

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
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
            read_buffer=self.read_buffer)
        StreamTransport.start(self, rawsock, ssl_protocol, extra=extra, server=server, context=context)
        return ssl_protocol.app_transport

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any, address: Any = None,
                                 waiter: Any = None, extra: dict[str, Any] | None = None) -> DatagramTransport:
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: int | None) -> int:
        # (asyncio's hook, for transports marked _sendfile_compatible: ours)
        return await transp._send_file(file, offset, count)

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

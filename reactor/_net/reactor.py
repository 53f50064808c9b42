"""``Reactor``: the kernel's event loop plus the network.

The kernel (``reactor._core.loop.EventLoop``) knows callbacks, timers, fds and
signals; this layer adds what a networking library is for: listening
sockets with their accept drain, non-blocking connects, and the stream
transports between them -- the way asyncio's ``BaseSelectorEventLoop`` adds
sockets to ``BaseEventLoop``. It is a host of the net floor
(``host.Host``): it adds what the net floor keeps per loop (``net_state``)
and the choice of accept path (C or pure Python); the one receive buffer
every transport reads into is the loop core's.

``listen`` and ``connect`` spell out their keywords (no ``**options``) so that
readers, IDEs and mypy see them. ``listen`` gathers a listener's settings
into one checked ``ListenerOptions`` and hands it, with the address, to
``binding.listen_tcp``; ``connector.connect_tcp`` checks connect's.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from .. import native as _native
from .._core.core import READ_BUFFER_SIZE
from .._core.loop import Clock, EventLoop
from .binding import listen_tcp, listen_unix
from .connector import DEFAULT_HAPPY_EYEBALLS_DELAY, DEFAULT_TIMEOUT, ConnectAttempt, connect_tcp, connect_unix
from .host import LoopState
from .listener import Listener
from .listener_options import ListenerOptions
from .proxy import DEFAULT_PROXY_TIMEOUT
from .tls import DEFAULT_SSL_HANDSHAKE_TIMEOUT, DEFAULT_SSL_SHUTDOWN_TIMEOUT

__all__ = ["Reactor", "READ_BUFFER_SIZE"]

ProtocolFactory = Callable[[], Any]


class Reactor(EventLoop):
    """An event loop over one ``selectors`` backend, with TCP and Unix
    listeners, connectors and transports.

    ``backend`` is ``None`` (``$REACTOR_BACKEND``, else ``"auto"``),
    ``"auto"`` (the best available) or a name from
    :func:`reactor.available_backends`. ``native`` is ``"auto"`` (use the C
    accept accelerator when it is built), ``True`` (require it) or ``False``;
    ``$REACTOR_NATIVE`` (``0``/``1``) overrides ``"auto"``. Both variables are
    read here, when the reactor is made. ``clock`` replaces
    ``time.monotonic`` (tests run backoffs and deadlines in virtual time).
    """

    def __init__(self, backend: str | None = None, native: bool | str = "auto", *,
                 clock: Clock | None = None) -> None:
        #: True if the accept drain runs in C
        self.native: bool = _native.resolve(native)
        super().__init__(backend, clock=clock)
        #: what the net floor keeps per reactor (resolver, client idle limits, TLS)
        self.net_state = LoopState()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<Reactor backend={self.backend} native={self.native} {state}>"

    # ------------------------------------------------------------ servers

    def listen(self, protocol_factory: ProtocolFactory, host: str | None = "127.0.0.1", port: int = 0, *,
               backlog: int | None = None, reuse_port: bool = False, max_accepts: int | None = None,
               on_exhausted: str = "pause", sock: socket.socket | None = None, keepalive: Any = None,
               user_timeout: float | None = None, ssl: Any = None,
               ssl_handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT,
               ssl_shutdown_timeout: float = DEFAULT_SSL_SHUTDOWN_TIMEOUT, idle_timeout: float | None = None,
               max_connections: int | None = None, proxy_protocol: bool = False,
               proxy_timeout: float = DEFAULT_PROXY_TIMEOUT, proxy_from: Any = None) -> Listener:
        """Listen for TCP connections on ``host:port`` (default 127.0.0.1, an
        ephemeral port; ``""`` binds every IPv4 interface, ``"::"`` every IPv6
        one), or on an already bound ``sock`` (``reuse_port``: SO_REUSEPORT).
        The other keywords are the listener's settings: see
        :class:`reactor._net.listener_options.ListenerOptions` for each."""
        options = ListenerOptions(backlog=backlog, max_accepts=max_accepts, on_exhausted=on_exhausted,
                                  keepalive=keepalive, user_timeout=user_timeout, ssl=ssl,
                                  ssl_handshake_timeout=ssl_handshake_timeout,
                                  ssl_shutdown_timeout=ssl_shutdown_timeout, idle_timeout=idle_timeout,
                                  max_connections=max_connections, proxy_protocol=proxy_protocol,
                                  proxy_timeout=proxy_timeout, proxy_from=proxy_from)
        return listen_tcp(self, protocol_factory, host, port, options, sock=sock, reuse_port=reuse_port)

    def listen_unix(self, protocol_factory: ProtocolFactory, path: str, *, backlog: int | None = None,
                    max_accepts: int | None = None, on_exhausted: str = "pause", ssl: Any = None,
                    ssl_handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT,
                    ssl_shutdown_timeout: float = DEFAULT_SSL_SHUTDOWN_TIMEOUT, idle_timeout: float | None = None,
                    max_connections: int | None = None, proxy_protocol: bool = False,
                    proxy_timeout: float = DEFAULT_PROXY_TIMEOUT, proxy_from: Any = None) -> Listener:
        """Listen on a Unix stream socket at ``path`` (a stale socket file is
        replaced, a live one is ``EADDRINUSE``; the path is removed on close).
        ``ssl``, the limits and ``proxy_protocol`` as for ``listen``."""
        options = ListenerOptions(backlog=backlog, max_accepts=max_accepts, on_exhausted=on_exhausted, ssl=ssl,
                                  ssl_handshake_timeout=ssl_handshake_timeout,
                                  ssl_shutdown_timeout=ssl_shutdown_timeout, idle_timeout=idle_timeout,
                                  max_connections=max_connections, proxy_protocol=proxy_protocol,
                                  proxy_timeout=proxy_timeout, proxy_from=proxy_from)
        return listen_unix(self, protocol_factory, path, options)

    # ------------------------------------------------------------ clients

    def connect(self, protocol_factory: ProtocolFactory, host: str, port: int, *,
                timeout: float = DEFAULT_TIMEOUT, local_addr: tuple[str, int] | None = None,
                happy_eyeballs_delay: float | None = DEFAULT_HAPPY_EYEBALLS_DELAY, keepalive: Any = None,
                user_timeout: float | None = None, resolver: Callable[..., Any] | None = None,
                ssl: Any = None, server_hostname: str | None = None,
                ssl_handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT,
                idle_timeout: float | None = None) -> ConnectAttempt:
        """Connect to ``host:port`` without blocking; returns a
        :class:`ConnectAttempt` at once. ``timeout=math.inf`` means no
        deadline; ``ssl`` makes it TLS. See
        :func:`reactor._net.connector.connect_tcp`."""
        return connect_tcp(self, protocol_factory, host, port, timeout=timeout, local_addr=local_addr,
                           happy_eyeballs_delay=happy_eyeballs_delay, keepalive=keepalive,
                           user_timeout=user_timeout, resolver=resolver, ssl=ssl, server_hostname=server_hostname,
                           ssl_handshake_timeout=ssl_handshake_timeout, idle_timeout=idle_timeout)

    def connect_unix(self, protocol_factory: ProtocolFactory, path: Any, *,
                     timeout: float = DEFAULT_TIMEOUT) -> ConnectAttempt:
        """Connect to the Unix stream socket at ``path`` without blocking."""
        return connect_unix(self, protocol_factory, path, timeout=timeout)


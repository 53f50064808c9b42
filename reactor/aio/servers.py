"""Servers of ``reactor.aio``: asyncio's ``Server`` over reactor listeners.

``loop.create_server`` keeps asyncio's own logic for binding (hosts, families,
``reuse_port``, ``sock=``) and its ``Server`` object (``serve_forever``,
``wait_closed``, ``async with``); what accepts is a reactor ``Listener`` per
listening socket, so asyncio code gets reactor's accept path: the drain until
EAGAIN in one C call (or the pure twin), the errno table, the pause and shed
policies when fds run out (no busy loop, one log line per second), and the
select backend's FD_SETSIZE guard. ``server.stats`` sums the listeners'
``ListenerStats``.

``proxy_protocol=True`` (reactor's keyword on ``create_server`` /
``create_unix_server``) is the listener's own: its header reader
(``reactor._net.proxy.HeaderReader``, a plain protocol) is each
connection's first protocol, and the asyncio protocol is made, and told
``connection_made``, once the header is read. Two things then differ from
reactor's transports: the header is in the clear before TLS, so with
``ssl`` asyncio's TLS layer is made then, around the asyncio protocol, not
at accept; and that layer, or the caller's protocol, may be a
``BufferedProtocol``, which from then on is read into its own buffer, the
bytes after the header first (``proxy.HeaderReader`` hands the connection
on through ``Transport.set_protocol``, which picks the read path).
"""

from __future__ import annotations

import contextvars
import socket
from asyncio import base_events, constants, sslproto
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._net.binding import effective_backlog
from .._net.listener import Listener
from .._net.listener_options import ListenerOptions
from .._net.stats import HISTOGRAM_BUCKETS, ListenerStats
from .._net.tls import SharedBufferSSLProtocol
from .transports import StreamTransport

if TYPE_CHECKING:
    from .loop import ReactorEventLoop

__all__ = ["ReactorServer", "AioListener", "sum_stats"]

#: the counters that do not add up over listeners: the largest batch is the
#: largest of any, and the histogram adds up bucket by bucket
_NOT_SUMMED = frozenset(("max_batch", "histogram"))
#: every other counter of the stats type adds up, read from the type itself:
#: a counter added to ListenerStats is summed without a list to keep (a
#: hand-kept list here once forgot tls_failed, idle_closed and limited)
_SUMMED = tuple(name for name in ListenerStats.__slots__ if name not in _NOT_SUMMED)


def sum_stats(listeners: list[Listener]) -> ListenerStats:
    """One ``ListenerStats`` adding up several listeners' (``max_batch``:
    the largest; the histogram bucket by bucket)."""
    total = ListenerStats()
    for listener in listeners:
        stats = listener.stats
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        total.max_batch = max(total.max_batch, stats.max_batch)
        for i in range(HISTOGRAM_BUCKETS):
            total.histogram[i] += stats.histogram[i]
    return total


class ReactorServer(base_events.Server):
    """asyncio's ``Server``, serving through reactor listeners."""

    _listeners: list[Listener]
    #: reactor's own create_server keywords (asyncio's Server does not pass
    #: them on), checked once: each listening socket's listener keeps them
    _listener_options: ListenerOptions = ListenerOptions()

    if TYPE_CHECKING:
        def _start_serving(self) -> None: ...  # base_events.Server's, not in typeshed

    @property
    def stats(self) -> ListenerStats:
        """Accept counters summed over this server's listening sockets."""
        return sum_stats(self._listeners)


class _CountedSSLProtocol(SharedBufferSSLProtocol):
    """asyncio's TLS layer that counts, in its listener's ``stats.tls_failed``,
    a connection lost before its handshake was done (a failed handshake, a
    timeout, an EOF or reset in the middle), as reactor's own listeners do.
    It hooks ``connection_lost`` only -- a public protocol method, called
    once on every path -- and reads ``_extra``, where asyncio puts the
    ``ssl_object`` once the handshake succeeds."""

    def __init__(self, *args: Any, stats: ListenerStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats = stats

    def connection_lost(self, exc: BaseException | None) -> None:
        if "ssl_object" not in self._extra:
            self._stats.tls_failed += 1
        super().connection_lost(exc)


class AioListener(Listener):
    """A reactor listener whose connections are asyncio transports (and, with
    ``sslcontext``, TLS through asyncio's ``sslproto``)."""

    _loop: ReactorEventLoop
    _sslcontext: Any
    _aio_server: Any
    _ssl_timeouts: tuple[float | None, float | None]
    #: the server's context (3.15+): each connection runs in a copy of it
    _context: contextvars.Context | None

    @classmethod
    def serve(cls, loop: ReactorEventLoop, sock: socket.socket, protocol_factory: Callable[[], Any], *,
              sslcontext: Any, server: Any, backlog: int,
              ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
              ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
              options: ListenerOptions | None = None,
              context: contextvars.Context | None = None) -> AioListener:
        """Start accepting on ``sock`` (bound and listening) for ``server``,
        with reactor's ``options`` (``proxy_protocol``, ``proxy_from``; TLS
        is asyncio's, from ``sslcontext`` and its timeouts); each
        connection's protocol runs in a copy of ``context`` if given."""
        if options is None:
            options = ListenerOptions()
        effective = effective_backlog(backlog)
        listener = cls.__new__(cls)
        listener._loop = loop
        listener._context = context
        listener._sslcontext = sslcontext
        listener._aio_server = server
        listener._ssl_timeouts = (ssl_handshake_timeout, ssl_shutdown_timeout)
        factory = protocol_factory
        if options.proxy_protocol and sslcontext is not None:
            def tls_after_the_header() -> Any:  # made by the header reader (module docs)
                return listener._tls_layer(protocol_factory())

            factory = tls_after_the_header
        # Accepts per readiness event: asyncio itself accepts up to backlog
        # per event; reactor's default batch (and select's headroom rule)
        # applies to asyncio servers as to its own.
        Listener.__init__(listener, loop._host, sock, factory, options, backlog=effective)
        return listener

    def _tls_layer(self, protocol: Any) -> sslproto.SSLProtocol:
        handshake_timeout, shutdown_timeout = self._ssl_timeouts
        return _CountedSSLProtocol(
            self._loop, protocol, self._sslcontext, None, server_side=True,
            ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout,
            read_buffer=self._loop.read_buffer, stats=self.stats)

    def _make_transport(self, fd: int, protocol: Any, address: Any) -> StreamTransport:
        if self._sslcontext is not None and not self.proxy_protocol:
            # (behind the PROXY protocol ``protocol`` is the header reader,
            # and the TLS layer is made after the header: see __init__)
            protocol = self._tls_layer(protocol)
        context = self._context
        return StreamTransport(self._loop, fd, protocol, peername=address, listener=self, family=self._family,
                               nonblocking=self._nonblocking_fds, server=self._aio_server,
                               context=None if context is None else context.copy())


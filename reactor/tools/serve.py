"""``python -m reactor serve``: one process serving a stock protocol until a
signal, then a graceful stop.

Shutdown, on SIGINT or SIGTERM, is a drain that loses nothing (``_Shutdown``):
1. accept what the kernel already queued, until EAGAIN, then close the
   listener (closing it first would reset those clients);
2. idle keep-alive connections close at once; a request in progress is
   answered (http: with ``Connection: close``), then its connection closes;
   after ``SETTLE`` (0.1 s) connections that have not begun a request, and
   those of protocols that know no requests (echo), are closed: queued
   bytes are flushed, then FIN, so clients read EOF, not RST;
3. a peer that does not read, or a request not finished, cannot hold the
   exit: whatever is still open after ``grace`` seconds is aborted (RST)
   and counted (``aborted_at_exit``); the listener tells us when its last
   connection has closed;
4. print a one-line summary of the listener's stats and return 0.
A second SIGINT or SIGTERM aborts whatever is still open, at once.

Socket activation (``--fd N``, or systemd's ``LISTEN_FDS``/``LISTEN_PID``):
the inherited socket must already listen and is used as it is -- never
bound, listened again (its backlog stays the one its owner chose), nor, for
a Unix socket, unlinked: the path belongs to whoever bound it (asyncio's
``create_unix_server(sock=)`` does unlink it, and the next activation
finds no socket file).

``--trace`` (and ``--trace-json PATH``) wrap the protocol factory in a
:class:`~.trace.Tracer`; without them the listener gets the stock protocol
class itself, so tracing costs nothing when it is off. ``--trace-wire``
adds a packet tap on the bound port (``Tracer.tap``).

The stats line reads the kernel: the accept queue (``queue=``, TCP_INFO of
the listener), and through sock_diag the SYN queue (``syn_queue=``: request
sockets in SYN_RECV on the listener's address) and ``time_wait=`` (TIME_WAIT
sockets whose local end is the listener's port: connections this server
closed first). A sock_diag query walks every socket of the namespace (about
30 ms with 20,000 TIME_WAIT entries), once per stats line, never per
connection.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Callable, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .. import kernel
from .._core.handles import TimerHandle
from .._net.addresses import format_address
from .._net.binding import listen_tcp, listen_unix
from .._net.listener import Listener
from .._net.listener_options import ListenerOptions
from .._net.reactor import Reactor
from .._net.tls import TLSLayer
from .._net.transport import Transport
from ..protocols import Protocol
from .stock import stock_protocol

if TYPE_CHECKING:
    from .http import HeaderTimeout
    from .trace import Tracer

__all__ = ["ServeConfig", "serve", "protocol_factory", "format_address", "inherited_socket", "activation_fd",
           "SD_LISTEN_FDS_START"]


@dataclass
class ServeConfig:
    """What ``serve`` was asked for (the CLI's arguments)."""

    host: str = "127.0.0.1"
    port: int = 8888
    unix: str | None = None
    #: an inherited listening socket (``--fd N``, systemd's LISTEN_FDS),
    #: used as it is instead of host/port/unix
    sock: socket.socket | None = None
    protocol: str = "echo"
    backend: str = "auto"
    native: bool | str = "auto"
    backlog: int | None = None
    grace: float = 5.0
    stats_interval: float | None = None
    reuse_port: bool = False
    on_exhausted: str = "pause"
    max_accepts: int | None = None
    #: also listen on an ephemeral port whose connections are only held open
    #: (the benchmark's idle connections, registered in the same selector)
    idle_listener: bool = False
    #: print one line per connection event
    trace: bool = False
    #: write the connection events as JSON lines to this file (appended)
    trace_json: str | None = None
    #: with trace or trace_json: tap the port's segments, a ring per connection printed at its end
    trace_wire: bool = False
    #: every connection starts with a PROXY protocol v1/v2 header (behind a load balancer)
    proxy_protocol: bool = False
    #: print a ``counts:`` line (the summary's counters so far) every S
    #: seconds: a supervisor keeps a worker's counts even if it is SIGKILLed
    report_interval: float | None = None
    #: serve TLS with this server context (``--tls-cert``/``--tls-key``)
    ssl: ssl.SSLContext | None = None
    #: close a connection after S seconds without a byte either way (None: off)
    idle_timeout: float | None = None
    #: http: a request head not complete within S seconds gets 408 (None: off)
    header_timeout: float | None = None
    #: at N open connections the listener pauses accepting (None: no limit)
    max_connections: int | None = None
    #: TCP only: SO_KEEPALIVE, and TCP_USER_TIMEOUT in seconds
    keepalive: bool = False
    user_timeout: float | None = None
    #: the Unix socket file's mode (None: what bind() gives, 0o777 & ~umask)
    unix_mode: int | None = None
    #: TLS: seconds for the handshake, and for the peer's close_notify after
    #: ours on a plain close (None: the listener's defaults, 60 and 30)
    ssl_handshake_timeout: float | None = None
    ssl_shutdown_timeout: float | None = None
    #: the CIDR networks a PROXY header is taken from (None: loopback only)
    proxy_from: list[str] | None = None
    #: serve Prometheus metrics on this "HOST:PORT" (None: off)
    metrics: str | None = None

    def listener_options(self) -> ListenerOptions:
        """The listener's settings asked for here, checked (the listener's
        own defaults where a field is None: the TLS timeouts)."""
        tls_timeouts = {name: value for name, value in (("ssl_handshake_timeout", self.ssl_handshake_timeout),
                                                        ("ssl_shutdown_timeout", self.ssl_shutdown_timeout))
                        if value is not None}
        return ListenerOptions(backlog=self.backlog, max_accepts=self.max_accepts, on_exhausted=self.on_exhausted,
                               keepalive=self.keepalive, user_timeout=self.user_timeout, ssl=self.ssl,
                               idle_timeout=self.idle_timeout, max_connections=self.max_connections,
                               proxy_protocol=self.proxy_protocol, proxy_from=self.proxy_from, **tls_timeouts)


class StatsReporter:
    """Prints a stats line every interval and on SIGUSR1."""

    def __init__(self, reactor: Reactor, listener: Listener, out: TextIO,
                 before: Callable[[], None] | None = None) -> None:
        self._reactor = reactor
        self._listener = listener
        self._out = out
        self._before = before  # the tracer's flush: its lines come first
        self._last_time = reactor.time()
        self._last_accepted = 0
        overflows = kernel.listen_overflows()
        self._last_overflows = overflows["ListenOverflows"] if overflows else None

    def line(self) -> str:
        """One stats line; rates are since the previous line."""
        stats = self._listener.stats
        now = self._reactor.time()
        elapsed = max(now - self._last_time, 1e-9)
        rate = (stats.accepted - self._last_accepted) / elapsed
        self._last_time, self._last_accepted = now, stats.accepted
        open_ = self._listener.state != "closed"
        queue = kernel.listen_queue(self._listener.socket) if open_ else None
        queue_text = f"{queue[0]}/{queue[1]}" if queue else "n/a"
        counts = _port_counts(self._listener.address) if open_ else None
        syn_text, tw_text = (str(counts[0]), str(counts[1])) if counts else ("n/a", "n/a")
        overflows = kernel.listen_overflows()
        if overflows is not None and self._last_overflows is not None:
            delta = overflows["ListenOverflows"] - self._last_overflows
            self._last_overflows = overflows["ListenOverflows"]
            overflow_text = str(delta)
        else:
            overflow_text = "n/a"
        return (
            f"stats: accepted/s={rate:.0f} accepted={stats.accepted} active={stats.active} "
            f"syn_queue={syn_text} queue={queue_text} time_wait={tw_text} "
            f"accepts/wakeup={stats.accepts_per_wakeup:.2f} "
            f"empty_wakeups={stats.empty_wakeups} overflows+={overflow_text}"
        )

    def report(self) -> None:
        if self._before is not None:
            self._before()
        print(self.line(), file=self._out, flush=True)


def _port_counts(address: object) -> tuple[int, int] | None:
    """(SYN_RECV, TIME_WAIT) sockets of a TCP listener's address, from
    sock_diag; None for a Unix socket or where sock_diag cannot tell."""
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int)):
        return None
    host, port = address[0], address[1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    found = kernel.tcp_sockets(port, {"SYN_RECV", "TIME_WAIT"}, family=family)
    if found is None:
        return None
    wildcard = host in ("0.0.0.0", "::")
    ours = [entry for entry in found if entry.local[1] == port and (wildcard or entry.local[0] == host)]
    return (sum(1 for entry in ours if entry.state == "SYN_RECV"),
            sum(1 for entry in ours if entry.state == "TIME_WAIT"))


def serve(config: ServeConfig, out: TextIO = sys.stdout) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code. Raises OSError when
    the address cannot be bound (the CLI turns it into exit 1)."""
    # The tracer's files outlive the reactor: connections it closes at exit still write their last events.
    with ExitStack() as resources, Reactor(backend=config.backend, native=config.native) as reactor:
        header_timeout = None
        if config.protocol == "http" and config.header_timeout is not None:
            from .http import HeaderTimeout

            # one sweep for every connection's request head
            header_timeout = HeaderTimeout(reactor, config.header_timeout)
        factory, tracer = protocol_factory(config, out, resources, reactor.call_later, header_timeout)
        options = config.listener_options()
        if config.sock is not None:
            # Never re-bound, nor listened again unless --backlog asks; a Unix
            # path it has is not ours to unlink (asyncio's create_unix_server(sock=) does).
            listener = listen_tcp(reactor, factory, options=options, sock=config.sock)
        elif config.unix:
            listener = _listen_unix(reactor, factory, config, options)
        else:
            listener = listen_tcp(reactor, factory, config.host, config.port, options, reuse_port=config.reuse_port)
        if tracer is not None and config.trace_wire:
            tracer.tap(reactor, listener.address)  # CAP_NET_RAW, or an OSError: exit 1 with the reason
        reporter = StatsReporter(reactor, listener, out, tracer.flush if tracer is not None else None)
        shutdown = _Shutdown(reactor, listener, config.grace)
        # Handlers first: whoever reads the first line may signal at once.
        reactor.add_signal_handler(signal.SIGINT, shutdown.begin)
        reactor.add_signal_handler(signal.SIGTERM, shutdown.begin)
        reactor.add_signal_handler(signal.SIGUSR1, reporter.report)
        native = "on" if listener.native else "off"
        print(f"listening on {format_address(listener.address)} backend={reactor.backend} native={native}",
              file=out, flush=True)
        if config.idle_listener:
            idle = reactor.listen(Protocol, config.host, 0)
            print(f"idle listener on {format_address(idle.address)}", file=out, flush=True)
        if config.stats_interval:
            _every(reactor, config.stats_interval, reporter.report)
        if config.report_interval:
            _every(reactor, config.report_interval,
                   lambda: print(f"counts: {_all_counts(listener, header_timeout)}", file=out, flush=True))
        metrics = None
        if config.metrics is not None:
            from .metrics import ListenerMetrics, metrics_line, serve_metrics

            metrics = serve_metrics(reactor, config.metrics, ListenerMetrics(listener, header_timeout))
            print(metrics_line(metrics), file=out, flush=True)
        reactor.run()
        if header_timeout is not None:
            header_timeout.close()
        if tracer is not None:
            tracer.finish()
        print(
            f"stopped: {_counts(listener, config, header_timeout)} closed_at_exit={shutdown.closed_gracefully} "
            f"aborted_at_exit={shutdown.aborted} drained_at_exit={shutdown.drained} pid={os.getpid()}",
            file=out, flush=True,
        )
        if tracer is not None and config.trace:
            events = " ".join(f"{kind}={count}" for kind, count in sorted(tracer.counts.items()))
            print(f"traced: {events or 'nothing'}", file=out, flush=True)
    return 0


#: systemd's first passed fd (sd_listen_fds(3): SD_LISTEN_FDS_START)
SD_LISTEN_FDS_START = 3


def activation_fd(environ: MutableMapping[str, str] | None = None) -> int | None:
    """The listening fd systemd passed us (``LISTEN_FDS``/``LISTEN_PID``),
    or None. The variables are removed once read, as
    ``sd_listen_fds(unset_environment=1)`` does, so that no child of ours
    takes them as its own. Raises ValueError when they cannot be used:
    serve serves one socket, so LISTEN_FDS must be 1."""
    if environ is None:
        environ = os.environ
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if pid is None or count is None or pid.strip() != str(os.getpid()):
        return None  # not for us (a parent's, inherited)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if count.strip() != "1":
        raise ValueError(f"LISTEN_FDS={count}: serve uses exactly one inherited socket")
    return SD_LISTEN_FDS_START


def inherited_socket(fd: int) -> socket.socket:
    """The listening stream socket on ``fd``, its family (TCP, IPv6, Unix)
    read from the socket itself. Raises ValueError naming what is wrong: not
    open, not a socket, not a stream socket, not listening -- it is used as
    it is, so it is never bound or listened here."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ValueError(f"--fd {fd}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"--fd {fd}: not a socket")
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"--fd {fd}: not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"--fd {fd}: the socket is not listening (an inherited socket is used as it is: "
                             "bind and listen it before passing it)")
        os.set_inheritable(fd, False)  # ours now: no child of ours gets it
    except BaseException:
        sock.detach()  # not ours to close: the caller still owns the fd
        raise
    return sock


def _counts(listener: Listener, config: ServeConfig | None = None,
            header_timeout: HeaderTimeout | None = None) -> str:
    """The summary's counters (the ``stopped:`` and ``counts:`` lines)."""
    stats = listener.stats
    counts = (f"accepted={stats.accepted} aborted={stats.aborted} exhausted={stats.exhausted} "
              f"shed={stats.shed} rejected={stats.rejected} batches={stats.batches} max_batch={stats.max_batch} "
              f"empty_wakeups={stats.empty_wakeups}")
    # only behind a balancer: connections closed for a bad or missing PROXY header
    if listener.proxy_protocol:
        # and connections from a source not in --proxy-from, closed unread
        counts += f" proxy_errors={stats.proxy_errors} proxy_refused={stats.proxy_refused}"
    # The limits' counters: shown when the limit is on, or when not zero.
    # idle_closed: closed after --idle-timeout of silence; tls_failed: TLS
    # handshakes that failed or timed out; limited: accepts held back at
    # --max-connections; header_timeouts: http heads answered 408.
    on = config or ServeConfig()
    for name, value, enabled in (
        ("idle_closed", stats.idle_closed, on.idle_timeout is not None),
        ("tls_failed", stats.tls_failed, on.ssl is not None),
        ("limited", stats.limited, on.max_connections is not None),
        ("header_timeouts", header_timeout.timed_out if header_timeout else 0, header_timeout is not None),
    ):
        if enabled or value:
            counts += f" {name}={value}"
    return counts


def _all_counts(listener: Listener, header_timeout: HeaderTimeout | None) -> str:
    """Every counter (a worker's ``counts:`` line: the supervisor's summary
    and metrics read it)."""
    stats = listener.stats
    fields = {name: getattr(stats, name) for name in stats.__slots__ if name != "histogram"}
    if header_timeout is not None:
        fields["header_timeouts"] = header_timeout.timed_out
    return " ".join(f"{key}={value}" for key, value in fields.items())


def _listen_unix(reactor: Reactor, factory: Callable[[], Protocol], config: ServeConfig,
                 options: ListenerOptions) -> Listener:
    """listen_unix(), and with ``unix_mode`` the socket file gets that mode.
    It is born with it (a umask for the bind only: serve has no other thread
    yet), so no one can connect while the mode is still wider, and chmod()
    then makes it exact whatever bind() did."""
    assert config.unix is not None
    if config.unix_mode is None:
        return listen_unix(reactor, factory, config.unix, options)
    umask = os.umask(0o777 & ~config.unix_mode)
    try:
        listener = listen_unix(reactor, factory, config.unix, options)
    finally:
        os.umask(umask)
    try:
        os.chmod(config.unix, config.unix_mode)
    except BaseException:
        listener.close()
        raise
    return listener


def protocol_factory(config: ServeConfig, out: TextIO, resources: ExitStack,
                     call_later: Callable[[float, Callable[[], None]], object] | None = None,
                     header_timeout: HeaderTimeout | None = None,
                     ) -> tuple[Callable[[], Protocol], Tracer | None]:
    """The listener's protocol factory and the tracer, if any. Without
    --trace/--trace-json it is the stock protocol class itself (for http
    with a ``header_timeout``, that one's factory): the accept path runs no
    tracing code at all. The tracer is flushed when ``resources`` closes."""
    factory: Callable[[], Protocol] = stock_protocol(config.protocol)
    if header_timeout is not None:
        factory = header_timeout.factory()
    if not (config.trace or config.trace_json):
        return factory, None
    from .trace import Tracer, open_jsonl

    jsonl = resources.enter_context(open_jsonl(config.trace_json)) if config.trace_json else None
    tracer = Tracer(out if config.trace else None, jsonl, call_later=call_later)
    resources.callback(tracer.flush)  # runs before the file closes (last in, first out)
    return tracer.wrap(factory), tracer


def _every(reactor: Reactor, interval: float, callback) -> None:
    def tick() -> None:
        callback()
        reactor.call_later(interval, tick)

    reactor.call_later(interval, tick)


#: The stop's first pause: a connection accepted just before the stop (or by
#: the drain of the queue) may not have been read yet, and a request already
#: on its way (a loopback client sends it microseconds after connect, a
#: remote one an RTT later) must be answered, not met by close(): a socket
#: closed with unread bytes sends RST, one closed before the bytes arrive
#: sends FIN and the client reads EOF without a response. Measured with the
#: reload test (HTTP, Connection: close, 4 client threads, 3 SIGHUPs):
#: closing at once failed 5 of 16,224 connections (4 ConnectionResetError,
#: 1 EOF), with this pause none in 5 runs of about 15,000. A protocol that
#: knows its requests (``drain()``, the stock http) keeps a connection with
#: a request in progress past this pause, until it is answered; one that
#: has not begun a request by then is closed. Never longer than the grace
#: period.
SETTLE = 0.1


def app_protocol(transport: Transport) -> Any:
    """The protocol a connection serves (under TLS, the layer's, once its
    handshake is done; None before)."""
    protocol = transport.get_protocol()
    if isinstance(protocol, TLSLayer):
        return protocol.app_protocol if protocol.handshake_done() else None
    return protocol


class _Shutdown:
    """The graceful stop (a drain that loses nothing):

    1. the listener accepts what the kernel has queued, until EAGAIN, and
       closes (``Listener.close_draining``: closing a listening socket
       resets its queue);
    2. every connection is asked to ``drain()`` if its protocol can (the
       stock http: idle keep-alive connections close at once; a request in
       progress is answered with ``Connection: close``, then the connection
       closes); after ``SETTLE``, the connections that have not begun a
       request, and those of protocols without ``drain()``, are closed
       (flush, FIN);
    3. whatever is still open after the grace period is aborted and counted
       (``aborted_at_exit``), then the reactor stops.

    A second stop signal aborts what is left at once. The listener says
    when its last connection has closed (``add_idle_callback``), so nothing
    polls."""

    def __init__(self, reactor: Reactor, listener: Listener, grace: float,
                 on_begin: Callable[[], None] | None = None) -> None:
        self._reactor = reactor
        self._listener = listener
        self._grace = grace
        self._on_begin = on_begin
        self._started = False
        self._grace_timer: TimerHandle | None = None
        self._settle_timer: TimerHandle | None = None
        self._pending = 0  # connections open when the stop began
        self.closed_gracefully = 0
        self.aborted = 0
        #: connections accepted from the queue by the drain
        self.drained = 0

    def begin(self) -> None:
        if self._started:
            # A second SIGINT/SIGTERM: abort what is left, at once.
            if self._grace_timer is not None:
                self._grace_timer.cancel()
                self._grace_over()
            return
        self._started = True
        if self._on_begin is not None:
            self._on_begin()
        self.drained = self._listener.close_draining()
        self._pending = len(self._listener.connections())
        self._drain(settled=False)
        self._settle_timer = self._reactor.call_later(min(SETTLE, self._grace), self._settled)
        self._grace_timer = self._reactor.call_later(self._grace, self._grace_over)
        self._listener.add_idle_callback(self._all_closed)

    def _drain(self, settled: bool) -> None:
        for transport in self._listener.connections():
            if transport.is_closing():
                continue
            drain = getattr(app_protocol(transport), "drain", None)
            if drain is None:
                if settled:
                    transport.close()
            elif drain(settled):
                # Nothing in progress: FIN now (TLS: our close_notify, no wait for the peer's).
                transport.close_without_waiting()

    def _settled(self) -> None:
        self._settle_timer = None
        self._drain(settled=True)

    def _grace_over(self) -> None:
        """Whatever could not finish within the grace period is aborted."""
        self._grace_timer = None
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        still_open = self._listener.connections()
        self.aborted = len(still_open)
        for transport in still_open:
            transport.abort()  # the idle callback follows

    def _all_closed(self) -> None:
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self.closed_gracefully = self._pending - self.aborted
        # one more iteration delivers the connection_lost callbacks
        self._reactor.call_soon(self._reactor.stop)

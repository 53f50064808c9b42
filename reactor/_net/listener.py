"""Listening sockets: the accept drain that never blocks, and what a
listener does when it cannot accept. (Binding and listening the socket is
``binding.py``; the settings, checked once, are ``listener_options.py``'s
``ListenerOptions``, which the listener keeps as ``listener.options``; its
counters are ``stats.py``'s ``ListenerStats``.)

What happens on one readiness event of a listening socket:

1. Drain: accept until the queue is empty (EAGAIN) or ``max_accepts``
   attempts were made, in one crossing into C when the accelerator is built
   (``accept.NativeDrainer``), else with the pure-Python reference
   (``accept.drain_pure``). The errno policy -- retry, skip and count, stop
   for capacity, give up -- is tabled once, in ``reactor/_net/accept.py``, with
   what Linux returns and what asyncio, libuv, Twisted and trio do.
2. Readiness can be stale: another acceptor sharing the queue (a thread, a
   forked process, a dup of the fd) may have taken the connection between
   the wake-up and our accept. Finding the queue empty is then normal; it is
   counted in ``stats.empty_wakeups``.
3. Each accepted fd becomes a Transport; its peer address comes from
   accept's own return, because a connection reset while it waited in the
   queue is still returned by Linux and ``getpeername()`` on it fails with
   ENOTCONN. Its first read then reports ECONNRESET, and the transport turns
   that into ``connection_lost(ConnectionResetError)``.
4. With the select backend, an accepted fd >= FD_SETSIZE (1024) cannot be
   watched: it is closed at once and counted in ``stats.rejected``, with one
   warning per listener, so one connection too many never breaks ``select()``
   for every other connection. To refuse as few as possible, a batch on
   select is also no larger than the fds it estimates are left below
   FD_SETSIZE: the rest wait in the kernel's queue.
5. Setting a connection up can fail too: the protocol factory raises, a
   MemoryError comes from anything on the way, or registering the fd fails
   (``epoll_ctl(ADD)``: ENOSPC past ``fs.epoll.max_user_watches``, ENOMEM).
   A connection nobody watches is never read and never closed -- an fd
   leaked for ever -- so it is closed at once, counted in ``stats.rejected``,
   reported once to the exception handler, and the batch goes on. If
   ``connection_made`` had been called, the protocol gets
   ``connection_lost(exc)``.

Running out of fds (EMFILE/ENFILE) or kernel memory (ENOBUFS/ENOMEM) leaves the
connection queued, and a level-triggered selector reports the listener ready
again at once: retrying is a busy loop at 100% CPU. Two policies:

- ``"pause"`` (default): stop watching the listener and retry after a
  backoff (10 ms doubling to 1 s), or at once when one of our own
  connections closes and so frees an fd. Clients wait in the queue (and the
  kernel's SYN retries cover a full queue) instead of being refused.
- ``"shed"``: keep one spare fd open; on EMFILE/ENFILE close it, accept the
  waiting connections and close them at once (the client sees the
  connection closed instead of hanging), then reopen the spare. libuv does
  the same (``uv__emfile_trick``). If the spare cannot be reopened, or the
  spare freed nothing (ENFILE is system-wide: another process may take the
  fd first), fall back to pausing -- shedding must never spin either.

Logging while exhausted is rate-limited to one line per second per listener.

The lifecycle is data, as the transport's is: ``State``, ``Event`` and
``_TRANSITIONS`` (every legal move; any other raises ``TransitionError``):

    state      pause()  resume()       full     room    out-of-fds  retry    close()
    NEW        -        -              -        -       -           -        CLOSED    (start: ACTIVE)
    ACTIVE     PAUSED   (no-op)        LIMITED  -       EXHAUSTED   -        CLOSED
    PAUSED     (no-op)  ACTIVE/LIMITED LIMITED  -       -           -        CLOSED
    EXHAUSTED  PAUSED   ACTIVE/LIMITED LIMITED  -       -           ACTIVE   CLOSED
    LIMITED    PAUSED   (no-op)        -        ACTIVE  -           -        CLOSED
    CLOSED     (no-op)  (no-op)        -        -       -           -        (no-op)

- NEW: made, not yet watching; the constructor starts it, so no caller ever
  sees it (and "closed" now only ever means closed). ACTIVE: watched for
  readability -- the only state that is. PAUSED: the user's ``pause()``.
  EXHAUSTED: backing off after EMFILE/ENFILE/ENOBUFS/ENOMEM, a retry timer
  armed (the only state that has one). LIMITED: ``max_connections`` are open.
- ``resume()`` is RESUME, or FULL when it finds the limit reached; ``full``
  is also a drain reaching the limit; ``room`` and ``retry`` come from a
  connection closing (a freed fd ends a backoff early) and ``retry`` from
  the backoff timer.

Limits for a server facing clients (DESIGN section 7), each off by default
and free on the accept path when off:

- ``max_connections=N``: at N open connections the listener stops watching
  its socket (state ``"limited"``, counted in ``stats.limited``) and the
  kernel's queue holds the rest (then the SYN retries); the first
  connection to close resumes it. A batch never accepts past N.
- ``idle_timeout=S``: a connection silent both ways for S seconds is closed
  (``reactor/_net/idle.py``: one coarse sweep, not a timer per connection),
  counted in ``stats.idle_closed``.
- ``ssl=context``: every connection is TLS (``reactor/_net/tls.py``); the
  protocol is told ``connection_made`` once the handshake is done. A failed
  handshake closes the connection, counts in ``stats.tls_failed``, and only
  the first is logged (at WARNING; the rest at DEBUG): any client can cause
  one, and a log line per scanner is a log flood.

Behind a load balancer (``proxy_protocol=True``), every connection starts
with a PROXY protocol header (``reactor/_net/proxy.py``: the specification's
rules and ours). The listener then gives each transport a pre-protocol,
``proxy.HeaderReader``, instead of calling the factory: the real protocol is
made, and told ``connection_made``, once the header is read. Off, the
factory is the caller's own: the accept path does no work for the feature.
A header is taken only from ``proxy_from`` (default: loopback): a TCP
connection from any other source is closed at accept, unread, and counted in
``stats.proxy_refused`` (``proxy.py``: who may send one).
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
import os
import socket
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .._core.checks import check_callable
from .._core.resources import CLOSE_FIRST
from .._core.states import next_state
from .accept import ACCEPT_CAPACITY, PURE_DRAIN_NONBLOCKING, NativeDrainer, drain_pure
from .addresses import format_address, local_address_of_accepted
from .idle import IdleLimit
from .listener_options import ListenerOptions
from .proxy import HeaderReader, TrustedSources
from .sockopts import apply_dead_peer_options
from .stats import HISTOGRAM_BUCKETS, ListenerStats
from .tls import RawTLSTransport, TLSLayer
from .transport import Transport

if TYPE_CHECKING:
    from .host import Host

__all__ = ["Listener", "State", "Event", "MAX_ACCEPTS_CAP"]

logger = logging.getLogger("reactor.listener")

#: Default ceiling on accepts per readiness event (the backlog, if smaller).
#: A batch's connections stay open at least until the next iteration reads
#: them, and the listener may be drained again first: a burst holds up to
#: two batches of fds at once. Measured on loopback (2-CPU VM, select backend,
#: EchoProtocol, 64 concurrent clients connecting and resetting in a loop for
#: 4 s; peak fds counted right after each drain, 3 runs each):
#:
#:     cap    peak fds    rejected (fd >= FD_SETSIZE)
#:      16     45 -   90    0
#:      32    102 -  132    0
#:      64    162 -  187    0
#:     128    268 -  313    0
#:     256    540 -  550    0
#:     512   1036 - 1058    96 - 191
#:
#: Accept throughput does not follow the cap: the C load generator's
#: accept workload (client-close) on epoll with the C drain gave 8,845 /
#: 9,180 / 8,666 / 7,479 / 8,109 conn/s for 16 / 32 / 64 / 128 / 512 at
#: 64 concurrent (7,051 .. 7,204 at 256 concurrent; select, pure drain:
#: 5,690 / 5,831 / 5,620 for 16 / 64 / 512), all within the run-to-run
#: noise, and draining 1000 queued connections costs the same in batches
#: of 64 as of 1024 (bench/bench_drain.py: 2.75 against 2.78 ms in C). What
#: a batch does amortise is the wait itself: select and poll pay for every
#: watched fd per iteration (bench_loop: 31 us with 450 idle fds on
#: select), which over 64 accepts is 0.5 us each, against 2 us each over 16.
#: So 64: a burst costs at most about 130 fds more, and a full queue still
#: drains at the full rate. Each accepted connection's connection_made also
#: runs inline, so a smaller batch gives other connections' I/O its turn
#: sooner.
MAX_ACCEPTS_CAP = 64
#: exhaustion backoff: first pause, and the ceiling it doubles up to
BACKOFF_INITIAL = 0.010
BACKOFF_MAX = 1.0
#: at most one exhaustion log line per listener per this many seconds
LOG_INTERVAL = 1.0



# ------------------------------------------------------------ the lifecycle
#
# As the transport's (module docs): StrEnums, one table, every move through
# it. The listener is registered for reading exactly while it is ACTIVE, so
# the move itself registers and unregisters (``Listener._move``); the retry
# timer exists exactly while it is EXHAUSTED.

class State(enum.StrEnum):
    """Where a listener is (``Listener.state``; see the module docs)."""

    NEW = "new"
    ACTIVE = "active"
    PAUSED = "paused"
    EXHAUSTED = "exhausted"
    LIMITED = "limited"
    CLOSED = "closed"


class Event(enum.StrEnum):
    """What moves a listener from one state to the next."""

    START = "start"            # made: watch the socket
    PAUSE = "pause"            # the user's pause()
    RESUME = "resume"          # the user's resume()
    FULL = "full"              # max_connections are open (a drain reached it, or resume() found it)
    ROOM = "room"              # one of them closed: below max_connections again
    OUT_OF_FDS = "out-of-fds"  # accept() failed with EMFILE/ENFILE/ENOBUFS/ENOMEM: back off
    RETRY = "retry"            # the backoff ran out, or one of our connections freed an fd
    CLOSE = "close"            # the user's close(), a broken listening socket, the reactor closing


NEW, ACTIVE, PAUSED, EXHAUSTED, LIMITED, CLOSED = State
START, PAUSE, RESUME, FULL, ROOM, OUT_OF_FDS, RETRY, CLOSE = Event

#: Every legal move: state -> {event: next state}. Rule: everything that
#: affects the state machine lives here; an event missing from a state's
#: row is not a move (``pause()``, ``resume()`` and ``close()`` do nothing
#: there, every other move raises ``TransitionError``).
_TRANSITIONS: dict[State, dict[Event, State]] = {
    NEW: {START: ACTIVE, CLOSE: CLOSED},
    ACTIVE: {PAUSE: PAUSED, FULL: LIMITED, OUT_OF_FDS: EXHAUSTED, CLOSE: CLOSED},
    PAUSED: {RESUME: ACTIVE, FULL: LIMITED, CLOSE: CLOSED},
    EXHAUSTED: {RESUME: ACTIVE, RETRY: ACTIVE, FULL: LIMITED, PAUSE: PAUSED, CLOSE: CLOSED},
    LIMITED: {ROOM: ACTIVE, PAUSE: PAUSED, CLOSE: CLOSED},
    CLOSED: {},
}
#: accepting, or about to as soon as a connection closes (``is_serving()``)
_SERVING = frozenset({ACTIVE, LIMITED})
_SHED_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE))
#: the settings of a listener made without any
DEFAULT_OPTIONS = ListenerOptions()


class Listener:
    """A listening socket on a reactor, accepting into protocols.

    Made by ``Reactor.listen`` / ``Reactor.listen_unix``.
    """

    def __init__(self, reactor: Host, sock: Any, protocol_factory: Callable[[], Any],
                 options: ListenerOptions = DEFAULT_OPTIONS, *, backlog: int, unix_path: str | None = None) -> None:
        #: what the listener was asked for (``listener_options.py``), checked
        self.options = options
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self._family = sock.family
        #: every accepted connection's local address where the bind fixes
        #: it (a specific address, a Unix path), else None (addresses.py)
        self.accepted_sockname: Any = local_address_of_accepted(sock)
        self._factory = protocol_factory
        #: the server's TLS context, or None for plain TCP
        self.ssl_context: Any = options.ssl
        self._transport_class: type[Transport] = Transport
        proxy_protocol = options.proxy_protocol
        if options.ssl is not None:
            # The TLS layer is each connection's protocol; it makes the
            # user's and tells it connection_made after the handshake.
            self._factory = functools.partial(self._new_tls_layer, protocol_factory)
            self._transport_class = RawTLSTransport
        self._warned_tls = False
        #: True if every connection must start with a PROXY protocol header
        self.proxy_protocol: bool = proxy_protocol
        if proxy_protocol:
            # The pre-protocol reads the header, then makes the real protocol
            # (module docs); off, the caller's factory is called as it is.
            # Behind TLS the header comes first, in the clear (HAProxy's send-proxy).
            self._factory = functools.partial(HeaderReader, reactor, self, self._factory, options.proxy_timeout)
        # keepalive, TCP_USER_TIMEOUT and who may send a PROXY header are
        # about TCP peers: a Unix socket's peers are whoever the file's mode lets in
        tcp = self._family in (socket.AF_INET, socket.AF_INET6)
        #: who may send a PROXY header (None: proxy_protocol off); TCP peers only
        self.proxy_from: TrustedSources | None = options.proxy_from if tcp else None
        self._warned_untrusted = False
        #: at most this many connections open at once (None: no limit)
        self.max_connections: int | None = options.max_connections
        idle_timeout = options.idle_timeout
        self._idle = IdleLimit(reactor, idle_timeout, self._idle_closed) if idle_timeout is not None else None
        self.backlog: int = backlog
        #: accepts per readiness event (see MAX_ACCEPTS_CAP)
        self.max_accepts: int = (options.max_accepts if options.max_accepts is not None
                                 else max(1, min(backlog, MAX_ACCEPTS_CAP)))
        self.on_exhausted: str = options.on_exhausted
        self.stats = ListenerStats()
        self._unix_path = unix_path
        self._unix_inode = os.stat(unix_path).st_ino if unix_path else None
        keepalive, user_timeout_ms = options.keepalive, options.user_timeout_ms
        self._dead_peer = (keepalive, user_timeout_ms) if tcp and (keepalive or user_timeout_ms) else None
        self._max_fd = reactor.max_fd
        # select's batch limit (_on_readable): the fds the process had open
        # when we were made
        self._fds_below = _fds_in_use(self._fd + 1) if self._max_fd is not None else 0
        self._warned_rejected = False
        self._state = NEW
        self._backoff = BACKOFF_INITIAL
        self._retry_timer: Any = None
        self._last_log = float("-inf")
        self._unlogged = 0
        self._reserve_fd: int | None = None
        # the connections accepted here and still open, and who wants to know
        # when the last of them closes (graceful shutdown)
        self._connections: set[Transport] = set()
        self._idle_callbacks: list[Callable[[], Any]] = []
        # Which drain: C takes the fd and returns non-blocking fds; the pure
        # drain calls socket._accept (no socket object per connection) and
        # returns blocking fds. A listener runs on its reactor's thread only,
        # so it owns its drainer and the C buffers in it.
        self.native: bool = reactor.native and isinstance(sock, socket.socket)
        if self.native:
            drainer = NativeDrainer()
            self._drain = functools.partial(drainer.drain, self._fd)
            self._nonblocking_fds: bool = drainer.NONBLOCKING
        else:
            self._drain = functools.partial(drain_pure, sock._accept, hosts={})
            self._nonblocking_fds = PURE_DRAIN_NONBLOCKING
        address = sock.getsockname()
        self.address: Any = address[:2] if isinstance(address, tuple) else address
        # Watch first (it also takes the spare fd for "shed"): if the backend
        # refuses the fd, nothing else is held yet.
        self._move(START)
        reactor.track_resource(self)

    # --------------------------------------------------------------- state

    @property
    def socket(self) -> socket.socket:
        """The listening socket (for ``kernel.listen_queue``, say)."""
        return self._sock

    @property
    def state(self) -> str:
        """``"active"``, ``"paused"``, ``"exhausted"`` (backing off), ``"limited"``
        (at ``max_connections``) or ``"closed"``. (``"new"`` only inside the
        constructor, which starts the listener: no caller sees it.)"""
        return self._state

    @property
    def idle_timeout(self) -> float | None:
        """Seconds of silence after which a connection is closed, or None."""
        return self._idle.timeout if self._idle is not None else None

    def is_serving(self) -> bool:
        """True while the listener accepts (not paused, exhausted or closed;
        at ``max_connections`` it serves again as soon as one closes)."""
        return self._state in _SERVING

    def connections(self) -> list[Transport]:
        """The connections accepted here that are still open."""
        return list(self._connections)

    def add_idle_callback(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once, on the loop, as soon as no connection
        accepted here is open (at the next iteration if none is open now).
        With ``close()`` first, that is the moment a graceful shutdown is
        complete."""
        check_callable(callback, "callback")
        if self._connections:
            self._idle_callbacks.append(callback)
        else:
            self._reactor.call_soon(callback)

    def pause(self) -> None:
        """Stop accepting; new connections wait in the kernel's queue."""
        if PAUSE in _TRANSITIONS[self._state]:
            self._move(PAUSE)

    def resume(self) -> None:
        """Accept again after ``pause()`` (or end an exhaustion backoff early);
        at ``max_connections``, once one closes."""
        if RESUME in _TRANSITIONS[self._state]:
            self._move(FULL if self._at_limit() else RESUME)

    def _at_limit(self) -> bool:
        return self.max_connections is not None and self.stats.active >= self.max_connections

    def close(self) -> None:
        """Stop listening and release the socket (and a Unix socket's path).
        Connections already accepted stay open. Idempotent."""
        if self._state == CLOSED:
            return
        self._move(CLOSE)
        if self._reserve_fd is not None:
            os.close(self._reserve_fd)
            self._reserve_fd = None
        if self._unix_path is not None:
            _unlink_if_ours(self._unix_path, self._unix_inode)
            self._unix_path = None
        self._sock.close()
        self._reactor.untrack_resource(self)

    def _hand_over(self, accepted: list[tuple[int, Any]]) -> None:
        """Give each accepted fd its connection. If making one raises (only
        KeyboardInterrupt or SystemExit from a protocol get this far), the
        fds not yet handed to a transport are closed, not leaked, and the
        exception goes on."""
        new_connection = self._new_connection
        for index, (fd, address) in enumerate(accepted):
            try:
                new_connection(fd, address)
            except BaseException:
                for unclaimed, _ in accepted[index + 1:]:
                    os.close(unclaimed)
                raise

    def close_draining(self) -> int:
        """Stop listening without resetting what the kernel already queued:
        accept until the queue is empty (EAGAIN), then ``close()``. Returns
        how many connections were accepted this way (past ``max_connections``
        too: closing would reset them).

        Closing a listening socket resets every connection in its queue --
        clients whose handshake completed and whose request may already be
        sent -- unless another process holds the socket too, or the socket
        is in an SO_REUSEPORT group and ``net.ipv4.tcp_migrate_req`` is 1
        (then the kernel moves them, and the SYN_RECV requests, to another
        socket of the group). Accepting them first serves them whatever the
        sysctl says; what arrives between the last EAGAIN and the close is
        the only window left, and migration covers it where it is on. At
        most backlog + max_accepts are accepted, so a busy port cannot keep
        the drain going for ever."""
        if self._state == CLOSED:
            return 0
        stats = self.stats
        left = self.backlog + self.max_accepts
        drained = 0
        while left > 0:
            accepted, skipped, err = self._drain(min(self.max_accepts, left))
            stats.aborted += skipped
            stats.accepted += len(accepted)
            left -= len(accepted) + skipped
            drained += len(accepted)
            try:
                self._hand_over(accepted)
            except BaseException:
                self.close()
                raise
            if err != 0:
                break  # EAGAIN: the queue is empty (or an error: nothing more to take)
        self.close()
        return drained

    #: Reactor.close() closes listeners before connections
    close_order: ClassVar[int] = CLOSE_FIRST

    def close_for_loop(self) -> None:
        self.close()

    def _move(self, event: Event) -> None:
        """Take the table's move on ``event`` (``TransitionError`` if it has
        none), and keep what goes with the states: registered for reading
        exactly while ACTIVE, a retry timer only while EXHAUSTED."""
        state = self._state
        new = next_state(_TRANSITIONS, state, event, self)
        if state is ACTIVE:
            self._reactor.remove_reader(self._fd)
        elif state is EXHAUSTED and self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if new is ACTIVE:
            # If the backend refuses the fd, this raises and the state stays.
            self._reactor.add_reader(self._fd, self._on_readable)
            if self.on_exhausted == "shed" and self._reserve_fd is None:
                # Take (or, after a shed could not take it back while fds
                # were short, retake) the spare fd; if fds are still short,
                # the next resume tries again.
                self._reserve_fd = _open_reserve()
        self._state = new

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() >= 0:
            warnings.warn(f"unclosed listener {self!r}", ResourceWarning, source=self)
            sock.close()
            reserve = getattr(self, "_reserve_fd", None)
            if reserve is not None:
                os.close(reserve)

    def __repr__(self) -> str:
        return f"<Listener {self.address!r} {self._state} backlog={self.backlog}>"

    # ----------------------------------------------------------- accepting

    def _on_readable(self) -> None:
        batch = self.max_accepts
        if self._max_fd is not None:
            # select: accept no more than can still be watched. Accepted fds
            # take the lowest free numbers; below FD_SETSIZE there are about
            # that many minus what was open when we were made minus our open
            # connections (an estimate: fds the process opened since are not
            # counted, and counting them per drain would cost a listdir of
            # /proc/self/fd, ~50 us). What does not fit waits in the kernel's queue for a
            # later wake-up instead of being accepted and refused; an fd that
            # still lands too high is refused as before (_new_connection).
            # Measured with 900 idle connections and the burst of
            # MAX_ACCEPTS_CAP's table: 294 and 568 refused in two runs
            # without this limit, none with it (and none at max_accepts=512).
            room = self._max_fd - self._fds_below - self.stats.active
            if room < batch:
                batch = room if room > 1 else 1
        if self.max_connections is not None:
            room = self.max_connections - self.stats.active
            if room < batch:
                if room < 1:
                    self._limit_reached()
                    return
                batch = room
        accepted, skipped, err = self._drain(batch)
        stats = self.stats
        stats.wakeups += 1
        count = len(accepted)
        if count:
            stats.accepted += count
            stats.batches += 1
            if count > stats.max_batch:
                stats.max_batch = count
            stats.histogram[min(count.bit_length(), HISTOGRAM_BUCKETS - 1)] += 1
            self._backoff = BACKOFF_INITIAL
            self._hand_over(accepted)
        elif not skipped and err == errno.EAGAIN:
            stats.empty_wakeups += 1
        stats.aborted += skipped
        if self.max_connections is not None and self._state is ACTIVE and self._at_limit():
            self._limit_reached()
            return
        # A protocol callback may have paused or closed us during the batch:
        # then an error that ended it must not start a retry behind its back.
        if err == errno.EAGAIN or err == 0 or self._state is not ACTIVE:
            return
        if err in ACCEPT_CAPACITY:
            self._on_capacity_error(err)
        else:
            self._on_fatal_error(err)

    def _new_connection(self, fd: int, address: Any) -> None:
        if self.proxy_from is not None and not self.proxy_from.trusts(address[0]):
            self._refuse_untrusted(fd, address)
            return
        if self._max_fd is not None and fd >= self._max_fd:
            os.close(fd)
            self.stats.rejected += 1
            if not self._warned_rejected:
                self._warned_rejected = True
                logger.warning(
                    "listener %s: closed a connection on fd %d: the %s backend cannot watch fds >= %d "
                    "(FD_SETSIZE); use poll or epoll for this many connections (warned once)",
                    self.address, fd, self._reactor.backend, self._max_fd,
                )
            return
        protocol = transport = None
        try:
            protocol = self._factory()
            transport = self._make_transport(fd, protocol, address)
            if self._dead_peer is not None:
                try:
                    apply_dead_peer_options(transport._socket(), *self._dead_peer)
                except OSError:
                    pass  # reset while queued: the first read reports it
            self._connections.add(transport)
            self._reactor.track_resource(transport)
        except BaseException as exc:
            # The factory raised, or setting up did (a MemoryError can come
            # from anything here). Nobody would ever read or close this fd:
            # close it now, count it, report it, go on with the batch.
            if transport is not None:
                self._connections.discard(transport)
                transport._discard()
            else:
                os.close(fd)
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            self.stats.rejected += 1
            what = "the protocol factory failed" if protocol is None else "could not set up the connection"
            self._reactor.call_exception_handler(
                {"message": f"{what}; connection closed", "exception": exc, "listener": self, "peername": address}
            )
            return
        self.stats.active += 1
        # connection_made, then the registration for reading; if that fails
        # (epoll ENOSPC past max_user_watches, ENOMEM), the transport reports
        # it, tells us (_connection_rejected), closes and says connection_lost.
        transport._start()
        if self._idle is not None and not transport.is_closing():
            # After connection_made: one closed there is never watched.
            self._idle.watch(transport)

    def _refuse_untrusted(self, fd: int, address: Any) -> None:
        """A PROXY header would be believed from this peer, which is not a
        trusted balancer: closed unread (module docs), counted, logged once."""
        os.close(fd)
        self.stats.proxy_refused += 1
        if not self._warned_untrusted:
            self._warned_untrusted = True
            logger.warning("listener %s: closed a connection from %s, which is not in proxy_from (%s): only a "
                           "trusted balancer may send a PROXY header (counted in stats.proxy_refused; warned once)",
                           self.address, format_address(address), self.proxy_from)

    def _make_transport(self, fd: int, protocol: Any, address: Any) -> Transport:
        """The transport for an accepted ``fd`` (a subclass may make another
        kind: ``reactor.aio`` makes asyncio transports). It owns ``fd`` once
        this returns; if this raises, ``fd`` is still ours to close, so a
        subclass must not raise after the transport took it."""
        # The transport takes the bare fd and makes a socket object only if
        # the connection outlives connection_made.
        return self._transport_class(self._reactor, fd, protocol, peername=address, server=self,
                                     family=self._family, nonblocking=self._nonblocking_fds)

    def _new_tls_layer(self, protocol_factory: Callable[[], Any]) -> TLSLayer:
        options = self.options
        return TLSLayer(self._reactor, protocol_factory(), self.ssl_context, server_side=True,
                        handshake_timeout=options.ssl_handshake_timeout,
                        shutdown_timeout=options.ssl_shutdown_timeout,
                        on_handshake=self._tls_handshake_done)

    def _tls_handshake_done(self, layer: TLSLayer, exc: BaseException | None) -> None:
        if exc is None or layer.handshake_done():
            return  # done (an exception from connection_made is the transport's to report)
        self.stats.tls_failed += 1
        raw = layer._transport
        peer = raw.get_extra_info("peername") if raw is not None else None
        if not self._warned_tls:
            self._warned_tls = True
            logger.warning("listener %s: TLS handshake with %s failed: %s (counted in stats.tls_failed; "
                           "further failures are logged at DEBUG)", self.address, peer, exc)
        else:
            logger.debug("listener %s: TLS handshake with %s failed: %s", self.address, peer, exc)

    def _idle_closed(self, transport: Transport) -> None:
        self.stats.idle_closed += 1

    def _limit_reached(self) -> None:
        """``max_connections`` are open: the kernel's queue holds the rest."""
        self.stats.limited += 1
        self._move(FULL)

    def _connection_rejected(self, transport: Transport) -> None:
        """``transport`` cannot be watched (its registration failed): it is
        closing at once, and counts as rejected."""
        self.stats.rejected += 1

    def _proxy_failed(self, transport: Transport, reason: str) -> None:
        """``transport`` sent a bad PROXY header, or none in time: it is
        closing, and counts. Not reported: any client can cause it."""
        self.stats.proxy_errors += 1
        logger.debug("listener %s: closed a connection from %s: %s",
                     self.address, transport.get_extra_info("peername"), reason)

    def _connection_closed(self, transport: Transport) -> None:
        self.stats.active -= 1
        self._connections.discard(transport)
        if not self._connections and self._idle_callbacks:
            callbacks, self._idle_callbacks = self._idle_callbacks, []
            for callback in callbacks:
                self._reactor.call_soon(callback)
        # One of our fds was just freed: the retry need not wait for the timer.
        state = self._state
        if state is EXHAUSTED:
            self._move(RETRY)
        elif state is LIMITED and not self._at_limit():
            self._move(ROOM)

    # ---------------------------------------------------------- exhaustion

    def _on_capacity_error(self, err: int) -> None:
        self.stats.exhausted += 1
        if self.on_exhausted == "shed" and err in _SHED_ERRNOS and self._reserve_fd is not None:
            shed = self._shed()
            self.stats.shed += shed
            self._log_exhausted(err, f"shed {shed} connection(s)")
            if shed and self._reserve_fd is not None:
                return
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._log_exhausted(err, f"pausing accepts for {delay * 1000:.0f} ms")
        self._move(OUT_OF_FDS)
        self._retry_timer = self._reactor.call_later(delay, self._retry_after_backoff)

    def _retry_after_backoff(self) -> None:
        self._retry_timer = None
        if self._state is EXHAUSTED:
            self._move(RETRY)

    def _shed(self) -> int:
        """Free the spare fd, accept and close what waits (at most
        ``max_accepts`` attempts), take the spare back. Returns how many
        connections were shed (called only while the spare is held)."""
        reserve, self._reserve_fd = self._reserve_fd, None
        if reserve is not None:
            os.close(reserve)
        shed = attempts = 0
        while attempts < self.max_accepts:
            accepted, skipped, err = self._drain(1)
            # A connection that died in the queue counts as in every drain
            # (stats.aborted), and as an attempt: skips cannot keep us here.
            self.stats.aborted += skipped
            attempts += len(accepted) + skipped
            for fd, _ in accepted:
                os.close(fd)
                shed += 1
            if err != 0:
                break
        self._reserve_fd = _open_reserve()
        return shed

    def _log_exhausted(self, err: int, action: str) -> None:
        now = self._reactor.time()
        self._unlogged += 1
        if now - self._last_log >= LOG_INTERVAL:
            logger.warning(
                "listener %s: accept() failed with %s (%s); %s [%d time(s) since the last message]",
                self.address, errno.errorcode.get(err, err), os.strerror(err), action, self._unlogged,
            )
            self._last_log = now
            self._unlogged = 0

    def _on_fatal_error(self, err: int) -> None:
        exc = OSError(err, f"accept() on listener {self.address!r} failed: {os.strerror(err)}; listener closed")
        self.close()
        self._reactor.call_exception_handler({"message": str(exc), "exception": exc, "listener": self})


# ------------------------------------------------------------ helpers

def _fds_in_use(fallback: int) -> int:
    """How many fds this process has open (Linux: /proc/self/fd), else
    ``fallback``."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # not the listdir's own
    except OSError:
        return fallback


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _unlink_if_ours(path: str, inode: int | None) -> None:
    # Only the socket file we created: another server may have replaced it.
    try:
        if inode is None or os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass

"""Connecting without blocking: resolution, deadlines, happy eyeballs, errors.

Facts about non-blocking ``connect()`` on Linux
-----------------------------------------------

TCP (AF_INET, AF_INET6):

- ``connect()`` sends the SYN and returns EINPROGRESS: the handshake goes on
  in the kernel. Completion shows as writability (``POLLOUT``; a failure adds
  ``POLLERR | POLLHUP``), and then ``getsockopt(SO_ERROR)`` says how it
  ended: 0 for connected, else the errno (reading it clears it, so it is
  read once). A socket still in SYN_SENT is not writable.
- It can also end inside the call: on loopback the answer may be processed
  before ``connect()`` returns, so ECONNREFUSED (and, in principle, success)
  can come straight from ``connect()`` -- libuv notes Solaris always does
  this. On this project's test kernel loopback gives EINPROGRESS then
  SO_ERROR = ECONNREFUSED; both paths are handled.
- EINTR: POSIX says the connection then continues asynchronously; calling
  ``connect()`` again would give EALREADY. CPython raises InterruptedError
  for a non-blocking socket without retrying, so EINTR is EINPROGRESS here.
- Errors straight from ``connect()``, without a packet sent: ENETUNREACH (no
  route), EHOSTUNREACH (an ``unreachable`` route), EACCES / EPERM
  (a ``prohibit`` route, a firewall rule), EINVAL (a ``blackhole`` route),
  EADDRNOTAVAIL (no ephemeral port left); from ``socket()``, EAFNOSUPPORT
  (IPv6 disabled).
- What the SO_ERROR values mean:
  ECONNREFUSED -- the host answered the SYN with RST: it is up, nothing
  listens on the port. Immediate: no point waiting.
  ETIMEDOUT -- no answer to the SYN after ``tcp_syn_retries`` (6: about
  127 s) or TCP_USER_TIMEOUT: a host that is down, a firewall that drops, or
  a listener whose accept queue is full (Linux drops the SYN and counts a
  ListenOverflow; the client's SYN retries look exactly like a black hole).
  EHOSTUNREACH / ENETUNREACH -- an ICMP destination-unreachable came back
  (a router said so), or ARP / neighbour discovery for a host on our own
  link failed (after about 3 s).

Unix stream sockets (AF_UNIX):

- ``connect()`` completes inside the call: 0; ENOENT (no such file);
  ECONNREFUSED (a socket file nobody listens on: a dead server's leftover);
  EACCES; or EAGAIN when the listener's backlog is full. A blocking connect
  would sleep until the server accepts; the non-blocking one is left
  *unconnected* -- and it polls writable (POLLOUT | POLLHUP), with SO_ERROR 0.
  Waiting for writability and reading SO_ERROR, as for TCP, would report a
  connection that does not exist (asyncio does exactly that; the first read
  then fails with ENOTCONN). So on EAGAIN we retry ``connect()`` on the same
  socket from a timer, backing off from 1 ms to 50 ms, until the deadline.

What the others do
------------------

- asyncio: ``sock_connect`` calls connect(); on BlockingIOError or
  InterruptedError it waits for writability and reads SO_ERROR. No timeout
  of its own (``wait_for`` around it), and cancellation has leaked sockets:
  bpo-37658 (the transport was created after ``wait_for`` gave up) and
  gh-131728 (the writer was removed from a done callback, one iteration after
  the socket was closed, so a new socket reusing the fd number could inherit
  the stale registration). Happy eyeballs only with ``happy_eyeballs_delay``;
  when every address fails: the one error if all say the same, else
  ``OSError("Multiple exceptions: ...")``, or an ExceptionGroup with
  ``all_errors=True`` (3.12).
- libuv: ``uv_tcp_connect`` retries connect() on EINTR, takes EINPROGRESS,
  and defers an immediate ECONNREFUSED to the next loop iteration
  (``delayed_error``) so the callback never runs inside the call; other
  errors are returned synchronously. ``uv_pipe_connect`` reports EAGAIN as a
  failure. No timeout, no happy eyeballs (node adds them on top).
- Twisted: ``connect_ex``; on EINPROGRESS / EWOULDBLOCK / EALREADY it waits
  for writability and calls ``connect_ex`` again (EISCONN is success). A
  ``callLater`` timeout (30 s by default); errnos map to ``ConnectError``
  subclasses. ``HostnameEndpoint`` does happy eyeballs.
- trio: ``open_tcp_stream`` does RFC 8305 happy eyeballs (0.25 s) with
  ``wait_writable`` + SO_ERROR; when all fail it raises
  ``OSError("all attempts to connect to ... failed")`` with an ExceptionGroup
  of the individual errors as its ``__cause__``. No timeout of its own.

What this module does
---------------------

- The attempt's lifecycle is data, as the transport's is (``State``,
  ``Event``, ``_TRANSITIONS``; a move the table does not have raises
  ``TransitionError``):

      state         resolved    handshake    succeed    fail     cancel
      RESOLVING     CONNECTING  -            -          FAILED   CANCELLED
      CONNECTING    -           HANDSHAKING  CONNECTED  FAILED   CANCELLED
      HANDSHAKING   -           -            CONNECTED  FAILED   CANCELLED
      CONNECTED, FAILED, CANCELLED: done, no move

  The first three are "pending" (``done()`` is False); each callback of the
  attempt runs only in the state it belongs to (a lookup's result only while
  RESOLVING, a socket's writability only while CONNECTING), so a late one
  does nothing.
- Every step runs on the loop, never inside ``connect()``: ``connect()``
  checks its arguments, arms the deadline and schedules the start with
  ``call_soon``; so even an immediate result (a Unix socket, an immediate
  ECONNREFUSED, a failed lookup) reaches the done callbacks on the loop.
- The deadline is a reactor timer (10 s by default). On the deadline, on
  ``cancel()`` and on ``Reactor.close()`` every socket of the attempt has its
  writer removed *before* it is closed (so no stale registration outlives the
  fd), the lookup's result is dropped, and no callback of the attempt runs
  afterwards.
- Names are resolved on a small thread pool (``reactor/_net/resolver.py``);
  numeric addresses are parsed inline. ``resolver=`` replaces
  ``socket.getaddrinfo`` (same signature, still run on the pool) -- for
  tests, or a caching resolver.
- Several addresses: RFC 8305. The resolver's order is kept within each
  family (getaddrinfo already sorts by RFC 6724), families alternate starting
  with the first one's, the next attempt starts ``happy_eyeballs_delay``
  after the previous one (``None``: only when it failed) or at once when the
  previous one fails. The first connection wins; the others are closed at
  once (SYN_SENT sockets just vanish; a loser that connected in the same
  iteration is closed with FIN).
- Errors come from one table, ``CONNECT_ERRORS`` (errno -> class), with the
  errno on ``exc.errno``, the address in the message and on
  ``exc.address``. A lookup failure is ``socket.gaierror``, and so is a
  name that cannot be IDNA-encoded (checked before any resolver sees it:
  ``addresses.check_host_name``), never ``UnicodeError``.
- An error the attempt keeps for ``result()`` / ``exception()`` is kept
  without its traceback: the frames of a traceback keep their locals and,
  once finished, their callers' frames -- the attempt's own methods among
  them -- so keeping it would put the attempt in a reference cycle
  (attempt -> exception -> traceback -> frame -> attempt) that only the
  cyclic GC frees, with whatever those frames hold. Where it was raised is
  kept as text in a note (``exc.__notes__``), printed with the exception.
  (SystemExit and KeyboardInterrupt, which go up through the loop, keep
  theirs.)
- When every address fails, the error is one exception of the most specific
  class they share (all refused: still ``ConnectionRefusedError``; refused
  and unreachable: ``ConnectionError``; else ``OSError``), with their errno if
  they share it, a message listing each address with its error, and
  ``.exceptions``, the tuple of individual errors, as an ExceptionGroup has.
  It cannot *be* an ExceptionGroup: OSError and BaseExceptionGroup have
  conflicting C layouts, so no class derives from both. Being the shared
  class keeps ``except ConnectionRefusedError`` working for "the server is
  down", and ``except*`` still matches it as a whole. The deadline always
  gives ``ConnectTimeout`` (it is what ended the attempt), with
  ``.exceptions`` too when several addresses were involved.
"""

from __future__ import annotations

import enum
import errno
import functools
import math
import os
import socket
import ssl as _ssl  # "ssl" is connect_tcp's keyword, as in asyncio
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.checks import check_callable, check_duration, check_host_port
from .._core.resources import CLOSE_NORMAL
from .._core.states import next_state
from ..errors import BackendLimitError, CancelledError, ConnectTimeout, InvalidStateError, UnreachableError
from .addresses import check_host_name, format_address
from .host import check_open
from .idle import IdleLimit, check_idle_timeout
from .resolver import AddrInfo, numeric_addrinfo, pool_for
from .sockopts import apply_dead_peer_options, check_keepalive, check_user_timeout
from .tls import DEFAULT_SSL_HANDSHAKE_TIMEOUT, RawTLSTransport, TLSLayer, check_tls
from .transport import Transport

if TYPE_CHECKING:
    import concurrent.futures

    from .._core.handles import TimerHandle
    from .host import Host

__all__ = [
    "ConnectAttempt",
    "State",
    "Event",
    "connect_tcp",
    "connect_unix",
    "connect_error",
    "CONNECT_ERRORS",
    "CONNECT_IN_PROGRESS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_HAPPY_EYEBALLS_DELAY",
]

#: seconds before an attempt fails with ConnectTimeout
DEFAULT_TIMEOUT = 10.0
#: RFC 8305 section 5 recommends 250 ms between attempts (and trio uses it)
DEFAULT_HAPPY_EYEBALLS_DELAY = 0.25
#: AF_UNIX connect() retry after EAGAIN (the listener's backlog is full):
#: first delay, and the ceiling it doubles up to
UNIX_RETRY_INITIAL = 0.001
UNIX_RETRY_MAX = 0.05

#: connect() results that mean "going on in the kernel: wait for writability"
CONNECT_IN_PROGRESS = frozenset((errno.EINPROGRESS, errno.EINTR))

#: errno -> exception class for a failed connect; anything else becomes
#: ``OSError(errno, ...)``, which picks CPython's own subclass where one exists
CONNECT_ERRORS: dict[int, type[OSError]] = {
    errno.ECONNREFUSED: ConnectionRefusedError,  # RST to our SYN; AF_UNIX: nobody listens
    errno.ETIMEDOUT: ConnectTimeout,             # SYN retries or TCP_USER_TIMEOUT ran out
    errno.EHOSTUNREACH: UnreachableError,        # ICMP host unreachable, failed ARP, unreachable route
    errno.ENETUNREACH: UnreachableError,         # ICMP net unreachable, no route
    errno.ECONNRESET: ConnectionResetError,
    errno.ECONNABORTED: ConnectionAbortedError,
    errno.ENOENT: FileNotFoundError,             # AF_UNIX: no such path
    errno.EACCES: PermissionError,               # prohibit route, firewall, AF_UNIX permissions
    errno.EPERM: PermissionError,
}



# ------------------------------------------------------------ the lifecycle
#
# As the transport's (module docs): StrEnums, one table, every move through
# it; a move the table does not have raises TransitionError.

class State(enum.StrEnum):
    """Where a connect attempt is. The first three are "pending"."""

    RESOLVING = "resolving"      # made; the names are looked up (a numeric address or a path: at once)
    CONNECTING = "connecting"    # the addresses are tried (happy eyeballs)
    HANDSHAKING = "handshaking"  # TCP is connected, the TLS handshake runs (ssl= only)
    CONNECTED = "connected"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Event(enum.StrEnum):
    """What moves a connect attempt from one state to the next."""

    RESOLVED = "resolved"    # the addresses are known
    HANDSHAKE = "handshake"  # a TCP connection won; TLS comes next
    SUCCEED = "succeed"      # the transport and protocol are made (after TLS, its handshake)
    FAIL = "fail"            # every address failed, the deadline, a lookup, set-up or the handshake failed
    CANCEL = "cancel"        # cancel(), or Reactor.close()


RESOLVING, CONNECTING, HANDSHAKING, CONNECTED, FAILED, CANCELLED = State
RESOLVED, HANDSHAKE, SUCCEED, FAIL, CANCEL = Event

#: Every legal move: state -> {event: next state}; the done states have none.
_TRANSITIONS: dict[State, dict[Event, State]] = {
    RESOLVING: {RESOLVED: CONNECTING, FAIL: FAILED, CANCEL: CANCELLED},
    CONNECTING: {HANDSHAKE: HANDSHAKING, SUCCEED: CONNECTED, FAIL: FAILED, CANCEL: CANCELLED},
    HANDSHAKING: {SUCCEED: CONNECTED, FAIL: FAILED, CANCEL: CANCELLED},
    CONNECTED: {},
    FAILED: {},
    CANCELLED: {},
}
#: not done yet (``done()`` is False)
_PENDING = frozenset(state for state, row in _TRANSITIONS.items() if row)
_INET = (socket.AF_INET, socket.AF_INET6)


def connect_error(err: int | None, address: str, detail: str | None = None) -> OSError:
    """The exception for connect errno ``err`` to ``address`` (already
    formatted), from ``CONNECT_ERRORS``; ``exc.address`` is set."""
    prefix = f"connect to {address}: {detail + ': ' if detail else ''}"
    if err is None:
        exc = OSError(prefix + "failed")
    else:
        exc = CONNECT_ERRORS.get(err, OSError)(err, prefix + os.strerror(err))
    exc.address = address  # type: ignore[attr-defined]
    return exc


def _interleave(infos: list[AddrInfo]) -> list[AddrInfo]:
    """RFC 8305 section 4: first family first, then alternate, keeping the
    resolver's order within each family."""
    by_family: dict[int, deque[AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], deque()).append(info)
    queues = list(by_family.values())  # dicts keep insertion order: first family first
    ordered = []
    while queues:
        for queue in queues:
            ordered.append(queue.popleft())
        queues = [queue for queue in queues if queue]
    return ordered


def _combine(target: str, errors: list[OSError]) -> OSError:
    """One error for an attempt whose every address failed (see the module
    docs): the most specific class they share, their errno if shared, each
    address and error in the message, and ``.exceptions``."""
    if len(errors) == 1:
        return errors[0]
    common: type[OSError] = OSError
    for cls in type(errors[0]).__mro__:
        if issubclass(cls, OSError) and all(isinstance(exc, cls) for exc in errors):
            common = cls
            break
    errnos = {exc.errno for exc in errors}
    shared_errno = errnos.pop() if len(errnos) == 1 else None
    message = f"connect to {target} failed for all {len(errors)} addresses: " + "; ".join(str(e) for e in errors)
    combined = common(shared_errno, message) if shared_errno is not None else common(message)
    combined.address = target  # type: ignore[attr-defined]
    combined.exceptions = tuple(errors)  # type: ignore[attr-defined]
    return combined


def _keep_without_frames(exc: BaseException) -> None:
    """Make ``exc`` safe for the attempt to keep (see the module docs): along
    its ``__cause__`` / ``__context__`` chain, each traceback becomes a note
    (the same text it would print) and is dropped, frames and all."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        if tb is not None:
            error.add_note("where it was raised (kept as text: a connect attempt keeps no frames alive):\n"
                           + "".join(traceback.format_tb(tb)).rstrip("\n"))
            error.__traceback__ = None
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """For the attempt's loop callbacks: an unexpected exception (a resolver
    returning something that is not an address, say) fails the attempt
    instead of leaving it pending until the deadline."""

    @functools.wraps(method)
    def guarded(self: ConnectAttempt, *args: Any) -> None:
        try:
            method(self, *args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self._state not in _PENDING:
                raise
            self._fail(exc)

    return guarded


# ---------------------------------------------------------------- the attempt

class ConnectAttempt:
    """A connection being made; returned by ``Reactor.connect`` and
    ``Reactor.connect_unix``.

    Like a future, but loop-bound: ``done()``, ``cancelled()``, ``cancel()``,
    ``add_done_callback(fn)``, ``result()`` and ``exception()``. Use it from the
    loop's thread only. Done callbacks run on the loop, with the attempt as
    their argument, after the protocol's ``connection_made``.
    """

    #: Reactor.close() closes it after the listeners, before the connections
    close_order = CLOSE_NORMAL

    def __init__(self, reactor: Host, protocol_factory: Callable[[], Any], target: str,
                 timeout: float, *, happy_eyeballs_delay: float | None = None,
                 keepalive: Any = None, user_timeout_ms: int | None = None,
                 tls: tuple[_ssl.SSLContext, str | None, float] | None = None,
                 idle_timeout: float | None = None) -> None:
        self._reactor = reactor
        # (context, server_hostname, handshake timeout) for a TLS connection
        self._tls = tls
        self._handshaking: RawTLSTransport | None = None
        self._idle_timeout = idle_timeout
        self._factory: Callable[[], Any] | None = protocol_factory
        #: what the user asked for, for messages: "host:port" or the path
        self.address: str = target
        self._timeout = timeout
        self._delay = happy_eyeballs_delay
        self._dead_peer = (keepalive, user_timeout_ms) if (keepalive or user_timeout_ms) else None
        self._state = RESOLVING
        self._result: tuple[Transport, Any] | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[ConnectAttempt], Any]] = []
        # sockets of this attempt that are open: socket -> formatted address
        self._sockets: dict[socket.socket, str] = {}
        # AF_UNIX sockets waiting to retry after EAGAIN: socket -> timer
        self._retries: dict[socket.socket, TimerHandle] = {}
        self._queue: deque[AddrInfo] = deque()
        self._local: list[AddrInfo] | None = None
        self._errors: list[OSError] = []
        self._tried: list[str] = []
        self._lookup: concurrent.futures.Future | None = None
        self._stagger: TimerHandle | None = None
        self._deadline: TimerHandle | None = None
        if math.isfinite(timeout):
            self._deadline = reactor.call_later(timeout, self._on_deadline)
        reactor.track_resource(self)

    # ----------------------------------------------------------- public

    def done(self) -> bool:
        """True once connected, failed or cancelled."""
        return self._state not in _PENDING

    def cancelled(self) -> bool:
        """True if ``cancel()`` (or ``Reactor.close()``) ended the attempt."""
        return self._state is CANCELLED

    def cancel(self) -> bool:
        """Stop trying: close every socket of the attempt now; the done
        callbacks then see ``cancelled()``. False if already done."""
        if self._state not in _PENDING:
            return False
        self._finish(CANCEL)
        return True

    def add_done_callback(self, fn: Callable[[ConnectAttempt], Any]) -> None:
        """Call ``fn(attempt)`` on the loop once the attempt is done (on the
        next iteration if it already is)."""
        check_callable(fn, "fn")
        if self._state in _PENDING:
            self._callbacks.append(fn)
        else:
            self._reactor.call_soon(fn, self)

    def result(self) -> tuple[Transport, Any]:
        """``(transport, protocol)``; raises the error if the attempt failed,
        ``CancelledError`` if it was cancelled, ``InvalidStateError`` if it is
        still in progress."""
        self._check_done()
        if self._exception is not None:
            raise self._exception
        assert self._result is not None
        return self._result

    def exception(self) -> BaseException | None:
        """The error, or None if connected; raises like ``result()`` while in
        progress or when cancelled."""
        self._check_done()
        return self._exception

    @property
    def tried(self) -> tuple[str, ...]:
        """The addresses connected to so far, in the order they were started
        (for logs and tests)."""
        return tuple(self._tried)

    def __repr__(self) -> str:
        state = self._state
        return f"<ConnectAttempt {self.address} {f'pending ({state})' if state in _PENDING else state}>"

    def _check_done(self) -> None:
        if self._state in _PENDING:
            raise InvalidStateError(f"connect to {self.address} is still in progress")
        if self._state is CANCELLED:
            raise CancelledError(f"connect to {self.address} was cancelled")

    # ------------------------------------------------------ addresses

    @_guarded
    def _begin_tcp(self, host: str, port: int, local_addr: tuple[str, int] | None,
                   resolver: Callable[..., Any] | None) -> None:
        """On the loop: resolve (inline when numeric), then start connecting."""
        if self._state is not RESOLVING:
            return  # cancelled before it began
        remote = numeric_addrinfo(host, port)
        local = numeric_addrinfo(*local_addr) if local_addr is not None else None
        if remote is not None and (local_addr is None or local is not None):
            self._resolved(remote, local)
            return
        # A name the idna codec refuses fails here as a lookup would, with
        # gaierror, never UnicodeError; no resolver sees it (addresses.py).
        try:
            if remote is None:
                check_host_name(host, self.address)
            if local_addr is not None and local is None:
                check_host_name(local_addr[0], f"local address {format_address(local_addr)}")
        except socket.gaierror as exc:
            self._fail(exc)
            return
        lookup = functools.partial(_resolve, resolver or socket.getaddrinfo, host, port, remote, local_addr, local)
        self._lookup = pool_for(self._reactor).submit(lookup, self._on_lookup)

    @_guarded
    def _on_lookup(self, future: concurrent.futures.Future) -> None:
        if self._state is not RESOLVING or future is not self._lookup:
            return  # cancelled or timed out meanwhile: the result is dropped
        self._lookup = None
        exc = future.exception()
        if exc is not None:
            self._fail(exc)
            return
        remote, local = future.result()
        self._resolved(remote, local)

    def _resolved(self, remote: list[AddrInfo], local: list[AddrInfo] | None) -> None:
        self._move(RESOLVED)
        infos, seen = [], set()
        for info in remote:
            family, sockaddr = info[0], info[4]
            if family in _INET and (family, sockaddr) not in seen:
                seen.add((family, sockaddr))
                infos.append(info)
        if not infos:
            self._fail(socket.gaierror(socket.EAI_NONAME, f"{self.address}: no IPv4 or IPv6 address"))
            return
        if local is not None:
            families = {info[0] for info in local}
            infos = [info for info in infos if info[0] in families]
            if not infos:
                shown = ", ".join(format_address(info[4]) for info in local)
                exc = OSError(errno.EAFNOSUPPORT,
                              f"connect to {self.address}: no address of the same family as local_addr ({shown})")
                self._fail(exc)
                return
            self._local = local
        self._queue.extend(_interleave(infos))
        self._start_next()

    @_guarded
    def _begin_unix(self, path: str | bytes) -> None:
        if self._state is not RESOLVING:
            return  # cancelled before it began
        self._move(RESOLVED)
        self._queue.append((socket.AF_UNIX, socket.SOCK_STREAM, 0, "", path))
        self._start_next()

    # ------------------------------------------------------- connecting

    def _start_next(self) -> None:
        """Start the next address (and skip past those failing at once); arm
        the happy-eyeballs timer for the one after."""
        if self._stagger is not None:
            self._stagger.cancel()
            self._stagger = None
        while self._queue and self._state is CONNECTING:
            error = self._start_one(self._queue.popleft())
            if error is None:
                break
            self._errors.append(error)
        if self._state is not CONNECTING:
            return  # done, or connected at once and handshaking
        if self._queue and self._delay is not None:
            self._stagger = self._reactor.call_later(self._delay, self._stagger_fired)
        self._check_exhausted()

    @_guarded
    def _stagger_fired(self) -> None:
        self._stagger = None
        self._start_next()

    def _start_one(self, info: AddrInfo) -> OSError | None:
        """Open a socket and connect it to one address. Returns the error if
        it failed at once, else None (in progress, retrying, or connected)."""
        family, type_, proto, _, sockaddr = info
        address = format_address(sockaddr)
        self._tried.append(address)
        try:
            sock = socket.socket(family, type_, proto)
        except OSError as exc:
            return connect_error(exc.errno, address, "socket()")
        self._sockets[sock] = address
        try:
            sock.setblocking(False)
            if family in _INET:
                if self._dead_peer is not None:
                    apply_dead_peer_options(sock, *self._dead_peer)
                if self._local is not None:
                    error = self._bind_local(sock, family, address)
                    if error is not None:
                        self._close_socket(sock)
                        return error
            err = sock.connect_ex(sockaddr)
        except OSError as exc:
            self._close_socket(sock)
            return connect_error(exc.errno, address)
        except BaseException:
            self._close_socket(sock)
            raise
        return self._after_connect(sock, sockaddr, address, err, UNIX_RETRY_INITIAL)

    def _bind_local(self, sock: socket.socket, family: int, address: str) -> OSError | None:
        assert self._local is not None
        last: OSError | None = None
        for info in self._local:
            if info[0] != family:
                continue
            try:
                sock.bind(info[4])
                return None
            except OSError as exc:
                last = connect_error(exc.errno, address, f"cannot bind to local address {format_address(info[4])}")
        return last

    def _after_connect(self, sock: socket.socket, sockaddr: Any, address: str, err: int | None,
                       backoff: float) -> OSError | None:
        if err == 0:
            self._connected(sock, sockaddr)
        elif err in CONNECT_IN_PROGRESS:
            try:
                self._reactor.add_writer(sock, self._on_writable, sock, sockaddr)
            except BackendLimitError as exc:
                # select() cannot watch this fd; no other address would
                # fare better, so the whole attempt fails.
                self._close_socket(sock)
                self._fail(exc)
        elif err == errno.EAGAIN and sock.family == socket.AF_UNIX:
            # The listener's backlog is full and this socket is still
            # unconnected (see the module docs): try connect() again later.
            self._retries[sock] = self._reactor.call_later(
                backoff, self._retry_unix, sock, sockaddr, min(backoff * 2, UNIX_RETRY_MAX))
        else:
            self._close_socket(sock)
            return connect_error(err, address)
        return None

    @_guarded
    def _retry_unix(self, sock: socket.socket, sockaddr: Any, backoff: float) -> None:
        self._retries.pop(sock, None)
        if self._state is not CONNECTING or sock not in self._sockets:
            return
        address = self._sockets[sock]
        err: int | None
        try:
            err = sock.connect_ex(sockaddr)
        except OSError as exc:
            err = exc.errno  # None for an OSError without one: connect_error says "failed"
        error = self._after_connect(sock, sockaddr, address, err, backoff)
        if error is not None:
            self._address_failed(error)

    @_guarded
    def _on_writable(self, sock: socket.socket, sockaddr: Any) -> None:
        if self._state is not CONNECTING or sock not in self._sockets:
            return
        address = self._sockets[sock]
        err: int | None
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            err = exc.errno  # None for an OSError without one: connect_error says "failed"
        if err == 0:
            self._connected(sock, sockaddr)
            return
        self._close_socket(sock)
        self._address_failed(connect_error(err, address))

    def _address_failed(self, error: OSError) -> None:
        """One address failed after it started: record it, and start the
        next one at once rather than after the happy-eyeballs delay."""
        self._errors.append(error)
        self._start_next()

    def _check_exhausted(self) -> None:
        if self._state is CONNECTING and not self._queue and not self._sockets:
            self._fail(_combine(self.address, self._errors))

    # ------------------------------------------------------ outcomes

    def _connected(self, sock: socket.socket, sockaddr: Any) -> None:
        """``sock`` won: close the others, make the protocol and transport."""
        del self._sockets[sock]
        self._reactor.remove_writer(sock)
        factory = self._factory
        assert factory is not None
        self._release()  # the losers, the timers
        protocol: Any = None
        transport: Transport | None = None
        try:
            protocol = factory()
            if self._tls is not None:
                context, server_hostname, handshake_timeout = self._tls
                layer = TLSLayer(self._reactor, protocol, context, server_side=False,
                                 server_hostname=server_hostname, handshake_timeout=handshake_timeout,
                                 on_handshake=self._tls_handshake_done)
                transport = RawTLSTransport(self._reactor, sock, layer, peername=sockaddr)
            else:
                transport = Transport(self._reactor, sock, protocol, peername=sockaddr)
            self._reactor.track_resource(transport)
            if self._idle_timeout is not None:
                _idle_limit(self._reactor, self._idle_timeout).watch(transport)
        except BaseException as exc:
            # The factory failed, or a MemoryError setting up: nothing was
            # told connection_made, so nothing is told connection_lost.
            if transport is not None:
                transport._discard()
            else:
                sock.close()
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                self._finish(FAIL, exception=exc)
                raise
            what = "exception in the protocol factory of" if protocol is None else "could not set up the"
            self._reactor.call_exception_handler(
                {"message": f"{what} connect to {self.address}", "exception": exc, "attempt": self})
            self._finish(FAIL, exception=exc)
            return
        try:
            failure = transport._start()
        except BaseException as exc:  # SystemExit / KeyboardInterrupt from connection_made
            self._finish(FAIL, exception=exc)
            raise
        if failure is not None:
            self._finish(FAIL, exception=failure)
        elif self._tls is not None:
            # Done when the handshake is: _tls_handshake_done. The deadline
            # was for the TCP connect; the handshake has its own.
            if self._state is CONNECTING:
                assert isinstance(transport, RawTLSTransport)
                self._handshaking = transport
                self._move(HANDSHAKE)
        else:
            self._finish(SUCCEED, result=(transport, protocol))

    def _tls_handshake_done(self, layer: TLSLayer, exc: BaseException | None) -> None:
        self._handshaking = None
        if self._state not in _PENDING:
            return
        if exc is None:
            self._finish(SUCCEED, result=(layer.app_transport, layer.app_protocol))
        else:
            self._finish(FAIL, exception=exc)

    def _fail(self, exc: BaseException) -> None:
        self._finish(FAIL, exception=exc)

    def _move(self, event: Event) -> State:
        """Take the table's move on ``event``; ``TransitionError`` if it has none."""
        state = self._state = next_state(_TRANSITIONS, self._state, event, self)
        return state

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._state not in _PENDING:
            return
        waiting = list(self._sockets.values())
        message = f"connect to {self.address}: no answer within {self._timeout:g} s"
        if self._state is RESOLVING:
            message += " (still resolving the name)"
        elif waiting and waiting != [self.address]:
            message += f" (waiting on {', '.join(waiting)})"
        if self._errors:
            message += "; " + "; ".join(str(e) for e in self._errors)
        exc = ConnectTimeout(errno.ETIMEDOUT, message)
        exc.address = self.address  # type: ignore[attr-defined]
        if len(self._errors) + len(waiting) > 1:
            timeouts = [ConnectTimeout(errno.ETIMEDOUT, f"connect to {a}: no answer within {self._timeout:g} s")
                        for a in waiting]
            for timeout_exc, a in zip(timeouts, waiting, strict=False):
                timeout_exc.address = a  # type: ignore[attr-defined]
            exc.exceptions = (*self._errors, *timeouts)  # type: ignore[attr-defined]
        self._fail(exc)

    def _finish(self, event: Event, *, result: tuple[Transport, Any] | None = None,
                exception: BaseException | None = None) -> None:
        for fn in self._settle(event, result, exception):
            self._reactor.call_soon(fn, self)

    def _settle(self, event: Event, result: tuple[Transport, Any] | None,
                exception: BaseException | None) -> list[Callable[[ConnectAttempt], Any]]:
        """Take the move to a done state (``event``: SUCCEED, FAIL or CANCEL),
        record the outcome and release everything; returns the done
        callbacks to run (none if the attempt was already done)."""
        if self._state not in _PENDING:
            return []
        state = self._move(event)
        self._result = result
        raw, self._handshaking = self._handshaking, None
        if raw is not None and state is not CONNECTED:
            raw.abort()  # cancelled in the middle of the TLS handshake: its fd goes too
        if isinstance(exception, Exception):
            _keep_without_frames(exception)
        self._exception = exception
        self._factory = None
        self._release()
        self._reactor.untrack_resource(self)
        callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def _release(self) -> None:
        """Close every socket still open, stop every timer and lookup: after
        this no callback of ours can run."""
        for timer in (self._deadline, self._stagger, *self._retries.values()):
            if timer is not None:
                timer.cancel()
        self._deadline = self._stagger = None
        self._retries.clear()
        if self._lookup is not None:
            self._lookup.cancel()
            self._lookup = None
        for sock in list(self._sockets):
            self._close_socket(sock)
        self._queue.clear()

    def _close_socket(self, sock: socket.socket) -> None:
        # The writer goes before the fd: a closed fd number is reused by the
        # next socket(), and a registration left behind would then watch it.
        self._sockets.pop(sock, None)
        timer = self._retries.pop(sock, None)
        if timer is not None:
            timer.cancel()
        if sock.fileno() >= 0:
            self._reactor.remove_writer(sock)
        sock.close()

    def close_for_loop(self) -> None:
        """The reactor is closing: cancel, and run the done callbacks now
        since the loop will not run again."""
        for fn in self._settle(CANCEL, None, None):
            try:
                fn(self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._reactor.call_exception_handler(
                    {"message": f"exception in done callback {fn!r}", "exception": exc, "attempt": self})


def _resolve(getaddrinfo: Callable[..., Any], host: str, port: int, remote: list[AddrInfo] | None,
             local_addr: tuple[str, int] | None, local: list[AddrInfo] | None
             ) -> tuple[list[AddrInfo], list[AddrInfo] | None]:
    """On a pool thread: look up whatever is not numeric."""
    if remote is None:
        remote = _lookup(getaddrinfo, host, port, f"{host}:{port}")
    if local_addr is not None and local is None:
        local = _lookup(getaddrinfo, local_addr[0], local_addr[1], f"local address {local_addr[0]}:{local_addr[1]}")
    return remote, local


def _lookup(getaddrinfo: Callable[..., Any], host: str, port: int, what: str) -> list[AddrInfo]:
    try:
        infos = list(getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, 0))
    except socket.gaierror as exc:
        raise socket.gaierror(exc.errno, f"cannot resolve {what}: {exc.strerror}") from None
    except UnicodeError as exc:
        # Names are checked before they get here; this is the backstop (a
        # resolver of the user's that encodes differently, say).
        raise socket.gaierror(socket.EAI_NONAME, f"cannot resolve {what}: not a valid host name ({exc})") from None
    if not infos:
        raise socket.gaierror(socket.EAI_NONAME, f"cannot resolve {what}: no address")
    return infos


# ------------------------------------------------------------ construction

def _idle_limit(reactor: Host, timeout: float) -> IdleLimit:
    """The reactor's one idle limit of ``timeout`` seconds for connections
    it connected (listeners have their own, to count): kept per loop, in
    ``net_state``."""
    limits = reactor.net_state.client_idle_limits
    limit = limits.get(timeout)
    if limit is None:
        limit = limits[timeout] = IdleLimit(reactor, timeout)
    return limit


def connect_tcp(reactor: Host, protocol_factory: Callable[[], Any], host: str, port: int, *,
                timeout: float = DEFAULT_TIMEOUT, local_addr: tuple[str, int] | None = None,
                happy_eyeballs_delay: float | None = DEFAULT_HAPPY_EYEBALLS_DELAY, keepalive: Any = None,
                user_timeout: float | None = None, resolver: Callable[..., Any] | None = None,
                ssl: Any = None, server_hostname: str | None = None,
                ssl_handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT,
                idle_timeout: float | None = None) -> ConnectAttempt:
    """Connect to ``host:port`` over TCP without blocking.

    ``timeout``: seconds until the attempt fails with ``ConnectTimeout``
    (> 0; ``math.inf`` for none). ``local_addr``: ``(host, port)`` to bind
    before connecting (port 0: any). ``happy_eyeballs_delay``: seconds before
    the next address is tried while one is pending (``None``: one at a time).
    ``keepalive`` / ``user_timeout``: dead-peer detection (see
    ``reactor/_net/sockopts.py``); a lost link then ends the connection with
    ``connection_lost(TimeoutError)``. ``resolver``: a function with
    ``socket.getaddrinfo``'s signature, run on the resolver's threads for
    names that are not numeric addresses.

    ``ssl``: an ``ssl.SSLContext`` (or True: ``ssl.create_default_context()``)
    for TLS; the certificate is checked against ``server_hostname`` (default
    ``host``), the attempt is done once the handshake is (within
    ``ssl_handshake_timeout`` seconds, after the connect's ``timeout``), and
    fails with the ``ssl.SSLError`` of a bad certificate, its socket closed.
    ``result()`` is then the TLS transport and the protocol. ``idle_timeout``:
    seconds without a byte either way before the connection is closed.

    Returns a ``ConnectAttempt`` at once; ``protocol_factory`` is called only
    once a connection is made.
    """
    check_open(reactor)
    check_callable(protocol_factory, "protocol_factory")
    check_host_port(host, port, port_min=1)
    timeout = check_duration(timeout, "timeout", infinite=True)
    if happy_eyeballs_delay is not None:
        happy_eyeballs_delay = check_duration(happy_eyeballs_delay, "happy_eyeballs_delay", zero=True, infinite=True)
        if math.isinf(happy_eyeballs_delay):
            happy_eyeballs_delay = None  # never stagger: one address at a time
    if local_addr is not None:
        if not isinstance(local_addr, tuple) or len(local_addr) != 2:
            raise TypeError(f"local_addr must be a (host, port) tuple or None, not {local_addr!r}")
        check_host_port(local_addr[0], local_addr[1], what="local_addr ")
    keepalive = check_keepalive(keepalive)
    user_timeout_ms = check_user_timeout(user_timeout)
    if resolver is not None and not callable(resolver):
        raise TypeError(f"resolver must be callable or None, not {type(resolver).__name__}")
    context = check_tls(ssl, ssl_handshake_timeout, server_side=False, server_hostname=server_hostname)
    tls = None
    if context is not None:
        tls = (context, server_hostname if server_hostname is not None else host, float(ssl_handshake_timeout))
    attempt = ConnectAttempt(reactor, protocol_factory, format_address((host, port)), timeout,
                             happy_eyeballs_delay=happy_eyeballs_delay, keepalive=keepalive,
                             user_timeout_ms=user_timeout_ms, tls=tls,
                             idle_timeout=check_idle_timeout(idle_timeout))
    reactor.call_soon(attempt._begin_tcp, host, port, local_addr, resolver)
    return attempt


def connect_unix(reactor: Host, protocol_factory: Callable[[], Any], path: Any, *,
                 timeout: float = DEFAULT_TIMEOUT) -> ConnectAttempt:
    """Connect to the Unix stream socket at ``path`` (str, bytes or
    os.PathLike; a leading NUL is Linux's abstract namespace) without
    blocking. A full backlog is retried until ``timeout``."""
    check_open(reactor)
    check_callable(protocol_factory, "protocol_factory")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes or os.PathLike, not {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError("path must not be empty")
    timeout = check_duration(timeout, "timeout", infinite=True)
    attempt = ConnectAttempt(reactor, protocol_factory, format_address(path), timeout)
    reactor.call_soon(attempt._begin_unix, path)
    return attempt

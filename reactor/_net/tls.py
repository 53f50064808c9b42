"""TLS on reactor's transports: asyncio's TLS state machine over a reactor ``Transport``.

One TLS layer, not two: ``reactor.aio`` already runs asyncio's own
``asyncio.sslproto.SSLProtocol`` (as uvloop does), so the native API runs the
same one. Its handshake, close_notify, shutdown and flow control are
CPython's, tested by CPython's suite; this module only fits it to the native
API:

- The layer is the raw connection's protocol. Bytes from the socket are read
  straight into its buffer (it is a ``BufferedProtocol``, which the
  transport reads so: ``Transport._choose_read_path``) and fed to an
  ``ssl.SSLObject`` through memory BIOs: the handshake never blocks. Behind
  the PROXY protocol the header reader comes first and hands the
  connection to the layer (``proxy.HeaderReader``): the same transport,
  another protocol, nothing special here. The user's protocol gets ``connection_made``
  once the handshake is done, with ``TLSTransport``: the same calls as a
  plain ``Transport`` (``write``, ``writelines``, ``close``, ``abort``,
  ``pause_reading``/``resume_reading``, ``get_extra_info``: also
  ``"ssl_object"``, ``"peercert"``, ``"cipher"``), except half-close: TLS
  before 1.3 has none, and asyncio offers none, so ``can_write_eof()`` is
  False and ``write_eof()`` raises.
- Backpressure is counted through the layer: the user's protocol is paused
  once the bytes it wrote and the encrypted bytes not yet sent pass the
  high-water mark (asyncio's 512 KiB for TLS); the layer stops reading the
  socket while decrypted data waits for a paused reader (256 KiB).
- ``close()`` sends close_notify after the queued data and waits for the
  peer's (at most ``ssl_shutdown_timeout`` seconds), then closes the socket.
  ``close()`` of the raw connection (``Listener.connections()``, a graceful
  shutdown) does the same. ``abort()`` sends RST, as on plain TCP.
- ``close_without_waiting()`` is the close of a time limit (``idle_timeout``,
  an HTTP request head's): our close_notify after the queued data, if the
  socket takes it at once, then FIN and the fd freed, without waiting for
  the peer's close_notify (RFC 8446 §6.1: the initiator need not wait). A
  silent peer never answers, so waiting held every timed-out fd for
  ``ssl_shutdown_timeout`` more (measured: idle 3 s -> fd freed at 33.5 s).
  A peer that does not read, so that bytes stay queued, is aborted (RST), as
  the idle limit does on plain TCP.
- A handshake that fails (a bad certificate, a peer speaking something else,
  an EOF or reset in the middle, no handshake within
  ``ssl_handshake_timeout``) closes the connection and is reported once to
  whoever made it (``on_handshake(layer, exc)``): a listener counts it in
  ``stats.tls_failed`` and logs the first, never a traceback per client; a
  connect attempt fails with the ``ssl.SSLError`` (or ``ConnectionError``,
  ``TimeoutError``), and its fd is released.

The layer is asyncio's class; what it needs of a loop (``call_soon``,
``call_later``, ``time``, ``call_exception_handler``, ``get_debug``) is
``_LoopView`` over the host, one per loop (``Host.net_state.tls_loop``;
reactor.aio's host gives the asyncio loop itself), and it reads into the
host's one read buffer (``Host.read_buffer``). This module is where reactor touches
``asyncio.sslproto``'s private names, the same on every version from 3.11
to 3.15: the methods overridden (``_get_app_transport``,
``_on_handshake_complete``, ``_check_handshake_timeout``,
``_call_eof_received``, ``connection_lost``), the state it reads
(``_state``, ``_app_state``, ``_app_transport``, ``_extra``,
``_ssl_buffer``, ``max_size``) and the app transport's ``_closed``. One
difference between versions matters here: from 3.13 the layer ends its
transport with ``_force_close`` (a FIN) where 3.11 and 3.12 call
``abort()``, so ``TLSTransport.abort`` aborts the raw connection itself.
``tests/net/test_tls.py`` checks each name on the interpreter it runs on.
"""

from __future__ import annotations

import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.checks import check_duration
from ..errors import ReactorStateError
from .transport import _FD_CLOSED, Transport

if TYPE_CHECKING:
    from .host import Host

__all__ = ["TLSLayer", "SharedBufferSSLProtocol", "TLSTransport", "RawTLSTransport", "loop_view",
           "check_tls", "DEFAULT_SSL_HANDSHAKE_TIMEOUT", "DEFAULT_SSL_SHUTDOWN_TIMEOUT"]

logger = logging.getLogger("reactor.tls")

#: seconds a TLS handshake may take before the connection is closed (asyncio's default)
DEFAULT_SSL_HANDSHAKE_TIMEOUT = 60.0
#: seconds to wait for the peer's close_notify after ours (asyncio's default)
DEFAULT_SSL_SHUTDOWN_TIMEOUT = 30.0

# typeshed's stubs of these private classes are partial (no _state, a
# waiter that may not be None): they are typed here as what they are to us.
_SSLProtocol: Any = sslproto.SSLProtocol
_SSLProtocolTransport: Any = sslproto._SSLProtocolTransport

_WRAPPED = sslproto.SSLProtocolState.WRAPPED
_DO_HANDSHAKE = sslproto.SSLProtocolState.DO_HANDSHAKE
_FLUSHING = sslproto.SSLProtocolState.FLUSHING
_SHUTDOWN = sslproto.SSLProtocolState.SHUTDOWN

OnHandshake = Callable[["TLSLayer", "BaseException | None"], Any]


def check_tls(ssl_context: Any, handshake_timeout: Any, shutdown_timeout: Any = DEFAULT_SSL_SHUTDOWN_TIMEOUT, *,
              server_side: bool, server_hostname: Any = None) -> ssl.SSLContext | None:
    """The ``ssl=`` argument of ``listen``/``connect`` checked, and the
    context to use (``None``: plain TCP). A client may pass ``True`` for
    ``ssl.create_default_context()``; a server needs its own context (a
    certificate). The timeouts and ``server_hostname`` mean something only
    with ``ssl``, and are refused without it, as asyncio does."""
    if ssl_context is None or ssl_context is False:
        if handshake_timeout != DEFAULT_SSL_HANDSHAKE_TIMEOUT:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if shutdown_timeout != DEFAULT_SSL_SHUTDOWN_TIMEOUT:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        return None
    if ssl_context is True:
        if server_side:
            raise ValueError("ssl=True needs a certificate on a server: pass an ssl.SSLContext "
                             "with load_cert_chain() done")
        ssl_context = ssl.create_default_context()
    elif not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True (client only) or None, "
                        f"not {type(ssl_context).__name__}")
    check_duration(handshake_timeout, "ssl_handshake_timeout")
    check_duration(shutdown_timeout, "ssl_shutdown_timeout")
    if server_hostname is not None and not isinstance(server_hostname, str):
        raise TypeError(f"server_hostname must be a str or None, not {type(server_hostname).__name__}")
    return ssl_context


class _LoopView:
    """What asyncio's TLS layer calls on its loop, over a host."""

    __slots__ = ("_loop", "call_later", "call_exception_handler", "time")

    def __init__(self, loop: Host) -> None:
        self._loop = loop
        self.call_later = loop.call_later
        self.call_exception_handler = loop.call_exception_handler
        self.time = loop.time

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        loop = self._loop
        if loop.is_closing():
            # The loop is closing its connections: nothing scheduled now
            # would run, and the layer defers connection_lost.
            callback(*args)
            return None
        return loop.call_soon(callback, *args)

    def get_debug(self) -> bool:
        return False


def loop_view(host: Host) -> Any:
    """The loop the TLS layer of connections on ``host`` uses: one per
    loop, made on first use (``LoopState.tls_loop``)."""
    state = host.net_state
    view = state.tls_loop
    if view is None:
        view = state.tls_loop = _LoopView(host)
    return view


class TLSTransport(_SSLProtocolTransport):
    """What the user's protocol gets: a TLS connection with the calls of a
    plain ``Transport`` (module docs)."""

    _closed: bool  # asyncio's: close() or abort() was called
    _ssl_protocol: Any

    def write(self, data: Any) -> None:
        """Encrypt and send ``data``; ``ReactorStateError`` after ``close()``
        or ``abort()``, as on a plain transport; dropped once the connection
        is lost (the protocol has been told)."""
        if self._closed and self._ssl_protocol is not None and self._ssl_protocol._transport is not None:
            raise ReactorStateError("write() after close() or abort() (a TLS transport)")
        super().write(data)

    def abort(self) -> None:
        """Drop what is queued and reset the connection (RST), as a plain
        transport's ``abort()`` does. (asyncio's layer aborts its transport
        up to 3.12, but closes it plainly -- a FIN -- from 3.13: the raw
        connection is aborted here on every version.)"""
        layer = self._ssl_protocol
        raw = None if layer is None else layer._transport
        if raw is None or self._closed:
            super().abort()
            return
        self._closed = True
        raw.abort()  # the layer hears connection_lost, then the protocol

    def write_eof(self) -> None:
        """TLS connections do not half-close here (``can_write_eof()`` is False)."""
        raise ReactorStateError("a TLS transport cannot half-close: can_write_eof() is False")

    def close_without_waiting(self) -> None:
        """Close for a time limit: close_notify after what was written, then
        close at once, without waiting for the peer's (module docs)."""
        layer = self._ssl_protocol
        if layer is not None:
            layer.close_without_waiting()

    def __repr__(self) -> str:
        layer = self._ssl_protocol
        raw = layer._transport if layer is not None else None
        return f"<TLSTransport {'closed' if self._closed else 'open'} over {raw!r}>"


class SharedBufferSSLProtocol(_SSLProtocol):
    """asyncio's ``sslproto.SSLProtocol`` reading into ``read_buffer``, its
    loop's one read buffer, instead of a receive buffer of its own.

    asyncio's layer gives every connection a buffer of max_size (256 KiB):
    10,000 idle TLS connections would hold 2.5 GiB of buffers that are only
    ever written by recv_into and copied into the incoming BIO at once
    (``buffer_updated``). A loop reads one connection at a time, so one
    buffer serves them all: max_size is shadowed while asyncio's __init__
    allocates (1 byte), then the class value (the read size) is back.
    ``read_buffer`` None, or smaller than max_size (get_buffer would replace
    it): asyncio's own buffer. reactor.aio uses this class as it is."""

    _app_transport: Any

    def __init__(self, *args: Any, read_buffer: memoryview | None = None, **kwargs: Any) -> None:
        if read_buffer is None or len(read_buffer) < sslproto.SSLProtocol.max_size:
            super().__init__(*args, **kwargs)
            return
        self.max_size = 1  # shadowed on purpose, for __init__ only
        super().__init__(*args, **kwargs)
        del self.max_size
        # get_buffer() compares len(_ssl_buffer) with what it wants (at most
        # max_size, the shared buffer's size): it never grows it
        self._ssl_buffer = self._ssl_buffer_view = read_buffer

    @property
    def app_transport(self) -> Any:
        """The transport the user's protocol is given (asyncio's
        ``_app_transport``: a ``TLSTransport`` on reactor's transports)."""
        return self._app_transport


class TLSLayer(SharedBufferSSLProtocol):
    """asyncio's TLS state machine as the protocol of a reactor connection;
    ``on_handshake(layer, exc)`` is called once, when the handshake succeeds
    (``exc`` None) or fails."""

    _app_transport_created: bool
    _app_state: Any

    def __init__(self, loop: Host, app_protocol: Any, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT,
                 shutdown_timeout: float = DEFAULT_SSL_SHUTDOWN_TIMEOUT,
                 on_handshake: OnHandshake | None = None) -> None:
        self._on_handshake = on_handshake
        super().__init__(loop_view(loop), app_protocol, context, None, server_side=server_side,
                         server_hostname=server_hostname, ssl_handshake_timeout=handshake_timeout,
                         ssl_shutdown_timeout=shutdown_timeout, read_buffer=loop.read_buffer)

    @property
    def app_protocol(self) -> Any:
        return self._app_protocol

    def handshake_done(self) -> bool:
        """True once the handshake has succeeded (also after the close)."""
        return "ssl_object" in self._extra

    def wrapped(self) -> bool:
        """True once the handshake is done and until the shutdown starts."""
        return self._state is _WRAPPED

    def start_shutdown(self) -> None:
        """close_notify after the queued data (``TLSTransport.close()``)."""
        if self._app_transport is not None:
            self._app_transport._closed = True
        self._start_shutdown()

    def close_without_waiting(self) -> None:
        """close_notify after the queued data if the connection is up, then
        close the socket now (module docs); a handshake in progress is
        simply ended."""
        raw = self._transport
        if raw is None:
            return  # already lost
        if self._app_transport is not None:
            self._app_transport._closed = True
        if self._state is _WRAPPED:
            # asyncio's own shutdown, minus the wait: its states in order,
            # what is queued encrypted, then close_notify (unwrap() asks for
            # the peer's with SSLWantReadError, which we do not wait for).
            self._set_state(_FLUSHING)
            self._set_state(_SHUTDOWN)
            try:
                self._do_write()
                self._sslobj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError:
                raw.abort()  # the session is broken: nothing sensible to send
                return
            self._process_outgoing()
        elif self._state is _DO_HANDSHAKE:
            raw._force_close(None)
            return
        # FLUSHING or SHUTDOWN: our close_notify is already on its way.
        if raw.get_write_buffer_size():
            raw.abort()  # the peer does not read: a flush would wait for it
        else:
            Transport.close(raw)

    # ------------------------------------------------ asyncio's, overridden

    def _get_app_transport(self) -> TLSTransport:
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating the TLS transport twice")
            self._app_transport = TLSTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport

    def _on_handshake_complete(self, handshake_exc: Any) -> None:
        outcome: BaseException | None = None
        try:
            super()._on_handshake_complete(handshake_exc)
            if not self.handshake_done():
                outcome = _instance(handshake_exc) or ssl.SSLError("TLS handshake failed")
        except BaseException as exc:  # the user's connection_made raised
            outcome = exc
            raise
        finally:
            self._settle(outcome)

    def _check_handshake_timeout(self) -> None:
        if self._state is _DO_HANDSHAKE:
            self._settle(TimeoutError(
                f"TLS handshake not done within {self._ssl_handshake_timeout:g} s; connection closed"))
        super()._check_handshake_timeout()

    def _call_eof_received(self) -> None:
        # The peer's close_notify. asyncio warns when eof_received() asks to
        # keep the connection open, which TLS cannot do here (no half-close);
        # but a protocol written for plain TCP (the stock echo) asks that of
        # every connection, and a warning per connection is a log flood.
        # The answer is moot, so it is not asked for: the layer closes.
        if self._app_state is not sslproto.AppProtocolState.STATE_CON_MADE:
            return
        self._app_state = sslproto.AppProtocolState.STATE_EOF
        try:
            self._app_protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "exception in eof_received()")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._on_handshake is not None:
            self._settle(exc or ConnectionResetError("connection closed during the TLS handshake"))
        super().connection_lost(exc)

    def _settle(self, exc: BaseException | None) -> None:
        callback, self._on_handshake = self._on_handshake, None
        if callback is not None:
            callback(self, exc)


def _instance(exc: Any) -> BaseException | None:
    """asyncio passes the class ``ConnectionResetError`` for an EOF in the
    middle of a handshake: an instance, with a message."""
    if isinstance(exc, type):
        return exc("connection closed by the peer during the TLS handshake")
    return exc


class RawTLSTransport(Transport):
    """The socket under a TLS connection: a reactor ``Transport`` whose
    protocol is the ``TLSLayer`` (or, behind the PROXY protocol, the header
    reader first, which hands the connection to the layer). The layer lends
    its buffer, so the transport reads into it (``Transport.set_protocol``
    decides; every TLS connection does, so those names share the table)."""

    _SHARED_ATTRIBUTES = (*Transport._SHARED_ATTRIBUTES, "_read_ready", "_lends_buffer")
    _UNSHARED_ATTRIBUTES = tuple(name for name in Transport._UNSHARED_ATTRIBUTES
                                 if name not in ("_read_ready", "_lends_buffer"))

    def close(self) -> None:
        """close_notify first while the connection is up (a graceful
        shutdown closes connections through here), then FIN."""
        layer = self._protocol
        if isinstance(layer, TLSLayer) and layer.wrapped():
            layer.start_shutdown()  # it calls close() again once the shutdown is done
            return
        Transport.close(self)

    def close_without_waiting(self) -> None:
        """Close for a time limit: our close_notify, if the connection is
        up, then FIN at once, not waiting for the peer's (module docs)."""
        layer = self._protocol
        if isinstance(layer, TLSLayer):
            layer.close_without_waiting()
        else:
            Transport.close(self)

    def _write_not_open(self, data: Any, state: Any) -> None:
        # The layer may flush encrypted bytes while it is being ended (a
        # fatal error closes us first, then it tries to send): nothing to do.
        if state in _FD_CLOSED:
            return
        Transport._write_not_open(self, data, state)


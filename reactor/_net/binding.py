"""Making a listening socket: bind, listen, then hand it to a ``Listener``.

``listen_tcp`` and ``listen_unix`` take the address (or an inherited socket)
and a checked ``ListenerOptions`` (``listener_options.py``), make the socket
listen, and return the ``Listener`` that accepts on it (``listener.py``).
Whatever fails on the way closes the socket: nothing half-made outlives the
call.

Facts about the socket calls, and what we do:

- ``bind()`` fails with EADDRINUSE when a listening socket, or a socket in
  TIME_WAIT without SO_REUSEADDR on ours, holds the address. SO_REUSEADDR is
  always set on TCP, so a restarted server binds while the previous run's
  connections wait out TIME_WAIT; SO_REUSEPORT only when asked (it lets
  another process join the port's accept queues). The error names the
  address.
- ``listen(backlog)``: the kernel clamps the backlog to
  ``net.core.somaxconn`` silently; we clamp it ourselves (``effective_backlog``)
  so ``listener.backlog`` is the real queue length.
- An inherited socket (socket activation, ``listen(sock=)``) that already
  listens is used as it is: not listened again (its owner chose the backlog,
  which ``kernel.listen_queue`` reads back), and, made without a path here,
  its Unix path is never removed.
- A Unix socket file outlives its server: a stale one (connect() is refused:
  nobody listens) is replaced, a live one is EADDRINUSE, and any other file
  there is left alone (``FileExistsError``).

Set-up runs on the calling thread: a host name is resolved there
(getaddrinfo may block), so listen on a numeric address from a running
loop's callbacks.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import kernel
from .._core.checks import check_callable, check_host_port, check_optional_int
from .addresses import check_host_name, format_address
from .host import check_open
from .listener import Listener
from .listener_options import ListenerOptions

if TYPE_CHECKING:
    from .host import Host

__all__ = ["listen_tcp", "listen_unix", "bind_tcp", "effective_backlog", "DEFAULT_BACKLOG"]

#: backlog when none is given (then clamped to somaxconn, as the kernel would)
DEFAULT_BACKLOG = 4096


def effective_backlog(backlog: Any) -> int:
    """``backlog`` checked, defaulted and clamped to ``net.core.somaxconn``,
    as the kernel would clamp it silently."""
    backlog = check_optional_int(backlog, "backlog", minimum=0)
    return min(DEFAULT_BACKLOG if backlog is None else backlog, kernel.somaxconn())


def listen_tcp(reactor: Host, protocol_factory: Callable[[], Any], host: str | None = "127.0.0.1",
               port: int = 0, options: ListenerOptions | None = None, *, sock: socket.socket | None = None,
               reuse_port: bool = False) -> Listener:
    """Listen for TCP connections on ``host:port`` (default 127.0.0.1, an
    ephemeral port; ``""`` every IPv4 interface, ``"::"`` every IPv6 one),
    or on an already bound ``sock``, with ``options`` (the defaults if
    None). A ``sock`` that is already listening (socket activation; a Unix
    stream socket too) is used as it is when ``options.backlog`` is None:
    no listen() call, and its path, if any, is never removed."""
    check_open(reactor)
    check_callable(protocol_factory, "protocol_factory")
    if options is None:
        options = ListenerOptions()
    effective = effective_backlog(options.backlog)
    if sock is None:
        if host is None:
            host = "127.0.0.1"  # never every interface unless asked (DESIGN)
        # "" is allowed: the caller asked for every IPv4 interface (bind_tcp)
        check_host_port(host, port, allow_empty=True)
        sock = bind_tcp(host, port, reuse_port)
    elif sock.type != socket.SOCK_STREAM:
        raise ValueError("sock must be a SOCK_STREAM socket")
    try:
        if options.backlog is None and _is_listening(sock):
            # Socket activation: an inherited listening socket (TCP or Unix)
            # is used as it is -- not listened again (its backlog is the one
            # its owner chose) and, made without a path, never unlinked.
            queue = kernel.listen_queue(sock)
            effective = queue[1] if queue is not None else effective
        else:
            sock.listen(effective)
        sock.setblocking(False)
        return Listener(reactor, sock, protocol_factory, options, backlog=effective)
    except BaseException:
        sock.close()
        raise


def _is_listening(sock: socket.socket) -> bool:
    # listen(sock=) also takes a socket-like object (the accept-policy tests'
    # scripted fake) that may have no getsockopt: then it is not listening
    # yet, and is listened as before.
    getsockopt = getattr(sock, "getsockopt", None)
    if getsockopt is None:
        return False
    try:
        return bool(getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


def bind_tcp(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A TCP socket bound (not listening) to the first address of
    ``host:port``, with SO_REUSEADDR, SO_REUSEPORT if asked, and IPV6_V6ONLY.

    ``""`` binds every IPv4 interface (0.0.0.0), as ``sock.bind(("", port))``
    does in Python; ``"::"`` every IPv6 one (IPv6 only: one listener per
    family, as asyncio makes). A name that cannot be IDNA-encoded, or found,
    is ``socket.gaierror`` naming it."""
    what = f"listen address {host!r}"
    if host == "":
        # getaddrinfo("") fails; (None, AI_PASSIVE) is the wildcard. AF_INET:
        # one socket, and 0.0.0.0 is what "" means to bind() and to asyncio's
        # first socket; glibc would order :: first or second by gai.conf.
        lookup_host, family = None, socket.AF_INET
    else:
        check_host_name(host, what)
        lookup_host, family = host, socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(lookup_host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise socket.gaierror(exc.errno, f"cannot resolve {what}: {exc.strerror}") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        # Restart without waiting out TIME_WAIT of the previous run's connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ValueError("reuse_port=True but this platform has no SO_REUSEPORT")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means IPv6 only: one listener per family, as asyncio does.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {format_address(sockaddr)}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def listen_unix(reactor: Host, protocol_factory: Callable[[], Any], path: str,
                options: ListenerOptions | None = None) -> Listener:
    """Listen on a Unix stream socket at ``path``, with ``options`` (the
    defaults if None; ``ssl``, the limits and ``proxy_protocol`` as for TCP:
    HAProxy sends it to Unix servers too; ``proxy_from`` is checked but
    filters nothing here, who may connect is the socket file's mode, and
    the keepalive options are TCP's).

    A socket file left by a dead server (connecting to it is refused) is
    replaced; a live one raises ``OSError(EADDRINUSE)``; any other file
    there raises ``FileExistsError``. The path is removed on close. Telling
    a stale file from a live one takes one local connect(), which a server
    with a full accept queue may hold for up to a second.
    """
    check_open(reactor)
    check_callable(protocol_factory, "protocol_factory")
    if options is None:
        options = ListenerOptions()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    path = os.fspath(path)
    effective = effective_backlog(options.backlog)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror}") from None
        sock.listen(effective)
        sock.setblocking(False)
        return Listener(reactor, sock, protocol_factory, options, backlog=effective, unix_path=path)
    except BaseException:
        sock.close()
        raise


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, f"cannot listen on {path}: a file that is not a socket is there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        # Nobody listens: a dead server's leftover.
        os.unlink(path)
        return
    except OSError:
        return  # let bind() report what is wrong
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: a server is listening there")

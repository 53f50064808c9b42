"""A listener's settings: one immutable value, checked once, when it is made.

``Reactor.listen`` and ``listen_unix`` keep their keywords as the public
face; each builds a ``ListenerOptions`` from them, and so do reactor.aio's
servers and ``serve``. Binding (``binding.py``) reads the backlog from it,
and the ``Listener`` keeps it (``listener.options``) and reads the rest.
Before, the same 16-18 loose values went down four signatures in a row
(``listen`` -> ``listen_tcp`` -> the checks -> ``Listener.__init__``), and a
new setting had to be added to each.

What "checked once" means: ``__post_init__`` checks every field with the
vocabulary of ``reactor/_core/checks.py`` (the argument named in each
error) and stores its normalised form (a float for seconds, the keepalive
triple as ints, ``proxy_from`` as ``TrustedSources``, the ``ssl`` context).
A ``ListenerOptions`` that exists is valid, and ``dataclasses.replace`` on
one checks again: the normalised forms are accepted as they are.

What is not here, because it is a matter of the socket rather than of the
listener: the address (``host``, ``port``, the Unix ``path``), ``sock=``
and ``reuse_port`` -- ``binding.py``'s keywords.
"""

from __future__ import annotations

import dataclasses
import ssl as _ssl
from dataclasses import dataclass
from typing import Any

from .._core.checks import check_duration, check_flag, check_optional_int
from .idle import check_idle_timeout
from .proxy import DEFAULT_PROXY_TIMEOUT, TrustedSources, check_proxy_from
from .sockopts import check_keepalive, check_user_timeout
from .tls import DEFAULT_SSL_HANDSHAKE_TIMEOUT, DEFAULT_SSL_SHUTDOWN_TIMEOUT, check_tls

__all__ = ["ListenerOptions", "ON_EXHAUSTED"]

#: the exhaustion policies (``listener.py``'s module docs)
ON_EXHAUSTED = ("pause", "shed")


@dataclass(frozen=True)
class ListenerOptions:
    """Everything a listener is asked to do, checked (module docs). Each
    field is ``Reactor.listen``'s keyword of the same name.

    ``backlog``: None -> min(4096, somaxconn); larger values are clamped to
    somaxconn, and the effective value is ``listener.backlog``. With a
    ``sock`` that is already listening, None uses it as it is.
    ``max_accepts``: accepts per readiness event (None: the backlog, at most
    ``listener.MAX_ACCEPTS_CAP``, 64; on select also no more than the fds
    left below FD_SETSIZE). ``on_exhausted``: ``"pause"`` or ``"shed"``.
    ``keepalive`` / ``user_timeout``: dead-peer detection applied to every
    accepted TCP connection (``sockopts.py``). ``ssl``: an
    ``ssl.SSLContext`` with a certificate: every connection is TLS, its
    handshake within ``ssl_handshake_timeout`` seconds, its close_notify
    answered within ``ssl_shutdown_timeout``. ``idle_timeout``: seconds
    without a byte either way before a connection is closed.
    ``max_connections``: open connections at most; at the limit the
    listener stops accepting until one closes. ``proxy_protocol``: every
    connection must start with a PROXY protocol v1 or v2 header, read
    (within ``proxy_timeout`` seconds) before ``connection_made``, and only
    from ``proxy_from``: CIDR networks (a list, or one comma-separated str;
    default loopback only); on TCP any other source is closed at accept.
    """

    backlog: int | None = None
    max_accepts: int | None = None
    on_exhausted: str = "pause"
    keepalive: Any = None
    user_timeout: float | None = None
    ssl: _ssl.SSLContext | None = None
    ssl_handshake_timeout: float = DEFAULT_SSL_HANDSHAKE_TIMEOUT
    ssl_shutdown_timeout: float = DEFAULT_SSL_SHUTDOWN_TIMEOUT
    idle_timeout: float | None = None
    max_connections: int | None = None
    proxy_protocol: bool = False
    proxy_timeout: float = DEFAULT_PROXY_TIMEOUT
    proxy_from: Any = None
    #: ``user_timeout`` in milliseconds, as TCP_USER_TIMEOUT takes it
    user_timeout_ms: int | None = dataclasses.field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: the normalised values are stored once, here
        check_optional_int(self.max_accepts, "max_accepts", minimum=1)
        if self.on_exhausted not in ON_EXHAUSTED:
            raise ValueError(f"on_exhausted must be 'pause' or 'shed', not {self.on_exhausted!r}")
        check_flag(self.proxy_protocol, "proxy_protocol")
        set_field(self, "proxy_timeout", check_duration(self.proxy_timeout, "proxy_timeout"))
        if not (self.proxy_protocol and isinstance(self.proxy_from, TrustedSources)):
            set_field(self, "proxy_from", check_proxy_from(self.proxy_from, self.proxy_protocol))
        set_field(self, "ssl", check_tls(self.ssl, self.ssl_handshake_timeout, self.ssl_shutdown_timeout,
                                         server_side=True))
        set_field(self, "ssl_handshake_timeout", float(self.ssl_handshake_timeout))
        set_field(self, "ssl_shutdown_timeout", float(self.ssl_shutdown_timeout))
        set_field(self, "idle_timeout", check_idle_timeout(self.idle_timeout))
        check_optional_int(self.max_connections, "max_connections", minimum=1)
        set_field(self, "keepalive", check_keepalive(self.keepalive))
        set_field(self, "user_timeout_ms", check_user_timeout(self.user_timeout))
        if self.user_timeout is not None:
            set_field(self, "user_timeout", float(self.user_timeout))
        check_optional_int(self.backlog, "backlog", minimum=0)

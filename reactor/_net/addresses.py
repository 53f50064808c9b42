"""How the library writes socket addresses, and what a host name must be
before it is looked up.

Facts about host names:

- CPython's socket functions encode a ``str`` host with the ``idna`` codec
  (IDNA 2003, RFC 3490) before they call ``getaddrinfo()``; numeric
  addresses go through it too and pass unchanged. A name the codec refuses
  -- a label over 63 characters, an empty label (``"a..b"``), a character
  nameprep rejects (a lone surrogate) -- raises ``UnicodeError`` from the
  lookup, where every caller expects ``socket.gaierror``, and where a
  connect attempt would carry it as its error.
- So we encode first, exactly as CPython will, and turn a refusal into
  ``socket.gaierror(EAI_NONAME)`` naming the host: to the caller it is a
  name that cannot be resolved, which is what it is (DESIGN section 2). A
  custom resolver never sees such a name.
- ``""`` as a *bind* address is Python's spelling of INADDR_ANY
  (``sock.bind(("", port))``); ``getaddrinfo("")`` itself fails. Listeners
  map it to ``getaddrinfo(None, ..., AI_PASSIVE)`` on AF_INET: 0.0.0.0, every
  IPv4 interface (see ``binding.bind_tcp``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

__all__ = ["format_address", "check_host_name", "local_address_of_accepted"]


def format_address(sockaddr: Any) -> str:
    """``127.0.0.1:80``, ``[::1]:80``, or a Unix path (``@name`` if abstract)."""
    if isinstance(sockaddr, tuple):
        host, port = sockaddr[0], sockaddr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(sockaddr, bytes):
        sockaddr = os.fsdecode(sockaddr)
    if sockaddr.startswith("\0"):
        return "@" + sockaddr[1:]
    return sockaddr


def check_host_name(host: str, what: str) -> None:
    """Raise ``socket.gaierror(EAI_NONAME)`` saying ``cannot resolve
    {what}`` if ``host`` cannot be IDNA-encoded (see the module docs);
    ``what`` names the host for the message (``"example.com:80"``)."""
    try:
        host.encode("idna")
    except UnicodeError as exc:
        # str.encode wraps the codec's own words ("label empty or too long"):
        # "encoding with 'idna' codec failed (UnicodeError: ...)"
        reason = str(exc)
        inner = reason.partition("(UnicodeError: ")[2]
        if inner.endswith(")"):
            reason = inner[:-1]
        raise socket.gaierror(
            socket.EAI_NONAME, f"cannot resolve {what}: not a valid host name (IDNA: {reason})") from None


def local_address_of_accepted(sock: socket.socket) -> Any:
    """The local address (``getsockname()``) every connection the listening
    ``sock`` accepts will have, or None where it varies. The kernel names an
    accepted socket's local end by the listener's own address -- the same
    tuple for an IPv4 or IPv6 address it was bound to (flowinfo 0), the
    listener's path for a Unix socket -- except on a wildcard bind (0.0.0.0,
    ::), where it is the address the client reached. Known once per
    listener, a connection's ``sockname`` needs no getsockname(2) and, for a
    bare fd, no socket object made to ask it."""
    try:
        name = sock.getsockname()
    except OSError:
        return None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = name[0].partition("%")[0]  # a link-local address may carry its scope
        try:
            return None if ipaddress.ip_address(host).is_unspecified else name
        except ValueError:
            return None
    if sock.family == getattr(socket, "AF_UNIX", None) and name:
        return name
    return None

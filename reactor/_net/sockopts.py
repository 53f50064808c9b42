"""Socket options for dead-peer detection, shared by listeners and connectors.

A peer that vanishes without a FIN or RST (power loss, a cable pulled, a
NAT entry expired) is invisible to a socket that only reads: it waits forever.
Two kernel mechanisms surface it as ETIMEDOUT (``TimeoutError``):

- SO_KEEPALIVE probes an idle connection: after ``idle`` seconds without
  traffic, ``count`` probes ``interval`` seconds apart (TCP_KEEPIDLE,
  TCP_KEEPINTVL, TCP_KEEPCNT on Linux).
- TCP_USER_TIMEOUT bounds how long sent data may stay unacknowledged (and, on
  Linux, also caps keepalive): the way to notice a lost link while writing.

And the one way to end a connection with RST instead of FIN: SO_LINGER
{on, 0 s}, after which close() drops unsent data, sends RST and frees the
socket at once (no TIME_WAIT). ``LINGER_RST`` is that option's value, for
``Transport.abort()`` and for every tool and test that resets on purpose.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from .._core.checks import check_optional_duration

__all__ = ["check_keepalive", "check_user_timeout", "apply_dead_peer_options", "LINGER_RST"]

#: the largest ``user_timeout``: TCP_USER_TIMEOUT's milliseconds are a C int (about 24.8 days)
MAX_USER_TIMEOUT = (2**31 - 1) / 1000
#: SO_LINGER {l_onoff=1, l_linger=0}: close() then sends RST and drops unsent data
LINGER_RST = struct.pack("ii", 1, 0)



def check_keepalive(keepalive: Any) -> tuple[int, int, int] | bool | None:
    """Validate ``keepalive``: None/False (off), True (kernel defaults) or
    ``(idle_s, interval_s, count)``."""
    if keepalive is None or keepalive is False or keepalive is True:
        return keepalive
    if not isinstance(keepalive, tuple) or len(keepalive) != 3:
        raise TypeError("keepalive must be None, a bool, or a tuple (idle_s, interval_s, count)")
    idle, interval, count = keepalive
    values = (int(round(idle)), int(round(interval)), int(count))
    if min(values) < 1:
        raise ValueError(f"keepalive values must be >= 1, not {keepalive!r}")
    return values


def check_user_timeout(user_timeout: Any) -> int | None:
    """Validate ``user_timeout`` (seconds, > 0, or None); returns milliseconds.
    TCP_USER_TIMEOUT is a C int of milliseconds: more than ``MAX_USER_TIMEOUT``
    seconds would fail at setsockopt() on every connection, so it fails here."""
    seconds = check_optional_duration(user_timeout, "user_timeout")
    if seconds is None:
        return None
    if seconds > MAX_USER_TIMEOUT:
        raise ValueError(f"user_timeout must be at most {MAX_USER_TIMEOUT:g} seconds, not {user_timeout!r}")
    return max(1, int(seconds * 1000))


def apply_dead_peer_options(sock: socket.socket, keepalive: Any, user_timeout_ms: int | None) -> None:
    """Set the already validated options on a TCP socket."""
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if isinstance(keepalive, tuple) and hasattr(socket, "TCP_KEEPIDLE"):
            idle, interval, count = keepalive
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    if user_timeout_ms is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)

"""Linux facts a server needs and no portable API gives.

- ``somaxconn``: the kernel silently clamps ``listen(backlog)`` to
  ``net.core.somaxconn``; we clamp first so that ``Listener.backlog`` tells the
  truth.
- The accept queue of a listening TCP socket is visible through ``TCP_INFO``:
  for a socket in LISTEN state, Linux reports the current queue length in
  ``tcpi_unacked`` and the maximum (the effective backlog) in ``tcpi_sacked``.
- When the accept queue is full, the kernel drops the final ACK of the
  handshake (or the SYN) and counts it in TcpExt ``ListenOverflows`` and
  ``ListenDrops`` (``/proc/net/netstat``, per network namespace). The client
  sees nothing but a retransmission about a second later.
- fd limits are ``RLIMIT_NOFILE``; an unprivileged process may raise its soft
  limit up to the hard one.

Every function returns None (or a neutral value) where the fact is not
available, rather than raising: these are diagnostics.
"""

from __future__ import annotations

import resource
import socket
import struct
import sys

__all__ = [
    "somaxconn",
    "listen_queue",
    "listen_overflows",
    "fd_limits",
    "raise_fd_limit",
    "open_fd_count",
]

#: What Linux uses when /proc/sys/net/core/somaxconn cannot be read (5.4+).
DEFAULT_SOMAXCONN = 4096
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
# struct tcp_info: 8 single-byte fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked, ...
_TCP_INFO_QUEUE = struct.Struct("=8x4xIII" "II")


def somaxconn() -> int:
    """The kernel's ceiling on a listen backlog (``net.core.somaxconn``)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return DEFAULT_SOMAXCONN if sys.platform.startswith("linux") else socket.SOMAXCONN


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """``(current, maximum)`` of a listening TCP socket's accept queue, or
    None where TCP_INFO cannot tell (not Linux, not TCP, not listening)."""
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 64)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_QUEUE.size or raw[0] != 10:  # 10 == TCP_LISTEN
        return None
    _ato, _snd_mss, _rcv_mss, unacked, sacked = _TCP_INFO_QUEUE.unpack_from(raw)
    return unacked, sacked


def listen_overflows(path: str = "/proc/net/netstat") -> dict[str, int] | None:
    """TcpExt ``ListenOverflows`` and ``ListenDrops`` of this network
    namespace, or None where they cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines, lines[1:], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            try:
                return {key: int(table[key]) for key in ("ListenOverflows", "ListenDrops")}
            except (KeyError, ValueError):
                return None
    return None


def fd_limits() -> tuple[int, int]:
    """``(soft, hard)`` RLIMIT_NOFILE; ``resource.RLIM_INFINITY`` as -1."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_fd_limit(target: int | None = None) -> int:
    """Raise the soft fd limit towards ``target`` (default: the hard limit);
    returns the soft limit now in force. Never lowers it."""
    soft, hard = fd_limits()
    want = hard if target is None else target
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or (want != resource.RLIM_INFINITY and want <= soft):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft
    return want


def open_fd_count() -> int | None:
    """How many fds this process has open (``/proc/self/fd``), or None."""
    import os

    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listdir's own fd
    except OSError:
        return None

"""The accept drain and its errno policy: the one place that decides what each
``accept()`` error means, with both drains side by side: the pure-Python
reference (``drain_pure``) and the C drain's face (``NativeDrainer``, over
``_native/accel.c``), which must match it. Each drain says whether the fds it
returns are already non-blocking (``NONBLOCKING``), so the listener never has
to guess that from which accelerator is on.

What Linux's accept(2) can return, and what we do:

- EAGAIN / EWOULDBLOCK: the queue is empty. The normal end of a drain -- also
  right after a readiness event, when another acceptor (thread, process,
  SO_REUSEPORT sibling sharing the queue) took the connection first.
- EINTR: a signal arrived; retry (CPython's ``_accept`` already retries, the C
  drain does it itself).
- ECONNABORTED: the connection was aborted while it waited in the queue.
  Linux rarely reports this: a connection reset by the client before accept is
  still *returned* by accept (``getpeername`` then fails with ENOTCONN and the
  first read gives ECONNRESET), so the transport must cope with that too.
  EPROTO, EPERM (a firewall rule), and the network errors the man page says
  Linux passes on from the new socket (ENETDOWN, ENOPROTOOPT, EHOSTDOWN,
  ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, ETIMEDOUT), and ECONNRESET
  (a reset the kernel reports from accept itself rather than at the first
  read): that one connection is lost, the queue is fine. Skip, count in
  ``stats.aborted``, go on.
- EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of fds or
  memory. The connection stays queued, so a level-triggered selector reports
  the listener readable again at once: retrying now is a busy loop. Stop and
  let the listener's exhaustion policy act (pause with backoff, or shed).
- EBADF, EINVAL, ENOTSOCK, EFAULT: the listening socket itself is broken
  (closed under us, not listening). Nothing to retry: close the listener and
  report.

What others do: asyncio (``selector_events._accept_connection``) accepts up
to ``backlog`` times per event, treats EMFILE/ENFILE/ENOBUFS/ENOMEM by removing
the reader and re-adding it after one second, and swallows
BlockingIOError/ConnectionAbortedError/InterruptedError. libuv (``uv__server_io``)
loops until EAGAIN, and on EMFILE/ENFILE uses a reserved fd (``uv__emfile_trick``)
to accept and close the surplus. Twisted (``tcp.Port.doRead``) accepts a
bounded number per event (``numberAccepts``), treats EMFILE/ENFILE/ENOBUFS/ENOMEM
by giving up for this event, and ECONNABORTED by continuing. trio
(``_highlevel_socket``) tables the errnos per OS: it retries EINTR and the
"connection died in the queue" set and raises the capacity set to the user.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from .. import native as _native
from ..errors import NativeUnavailableError

__all__ = [
    "ACCEPT_RETRY",
    "ACCEPT_SKIP",
    "ACCEPT_CAPACITY",
    "ACCEPT_FATAL",
    "DrainResult",
    "drain_pure",
    "PURE_DRAIN_NONBLOCKING",
    "NativeDrainer",
]


def _errnos(*names: str) -> frozenset[int]:
    """Errno values by name, skipping the ones this platform lacks."""
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


#: retry at once
ACCEPT_RETRY = _errnos("EINTR")
#: this connection died before we took it: count it and go on
ACCEPT_SKIP = _errnos(
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET",
)
#: out of fds or memory: stop the drain, let the exhaustion policy act
ACCEPT_CAPACITY = _errnos("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
#: the listening socket is unusable: close it and report
ACCEPT_FATAL = _errnos("EBADF", "EINVAL", "ENOTSOCK", "EFAULT")

#: (accepted [(fd, peer address)], skipped count, errno that ended the drain
#: or 0 when ``max_accepts`` was reached)
DrainResult = tuple[list[tuple[int, Any]], int, int]


def drain_pure(accept: Callable[[], tuple[int, Any]], max_accepts: int,
               hosts: dict[str, str] | None = None) -> DrainResult:
    """Call ``accept()`` (a listening socket's ``_accept``: returns ``(fd,
    address)`` and creates no socket object) until the queue is empty, an error
    ends the drain, or ``max_accepts`` attempts were made.

    ``hosts``, a dict the caller keeps from one drain to the next, makes the
    peers of one host share one host string (as the C drain's cache does):
    ``_accept`` makes a new one per connection, 64 bytes that every idle
    connection would hold in its peer address. Cleared at
    ``HOST_CACHE_SIZE`` hosts.

    Skipped connections count towards ``max_accepts`` so that even a queue
    full of aborted connections gives the loop back after a bounded amount of
    work. Never blocks: the listening socket is non-blocking.
    """
    accepted: list[tuple[int, Any]] = []
    skipped = 0
    attempts = 0
    while attempts < max_accepts:
        try:
            fd, address = accept()
        except BlockingIOError:
            return accepted, skipped, errno.EAGAIN
        except OSError as exc:
            code = exc.errno
            if code in ACCEPT_RETRY:
                continue
            attempts += 1
            if code in ACCEPT_SKIP:
                skipped += 1
                continue
            return accepted, skipped, code or errno.EINVAL
        attempts += 1
        if hosts is not None and address.__class__ is tuple:  # AF_INET, AF_INET6: (host, port, ...)
            host = address[0]
            shared = hosts.get(host)
            if shared is None:
                if len(hosts) >= HOST_CACHE_SIZE:
                    hosts.clear()
                hosts[host] = host
            else:
                address = (shared,) + address[1:]
        accepted.append((fd, address))
    return accepted, skipped, 0


#: ``drain_pure`` returns what ``socket._accept`` gives: blocking fds (the
#: transport sets them non-blocking, FIONBIO, before its first read)
PURE_DRAIN_NONBLOCKING = False


# ------------------------------------------------------------ the C drain
#
# How the C drain stays cheap: one call into C per batch (the C loop calls
# accept4() until the queue is empty or the batch is full); its buffers are
# allocated once per drainer and grown only when a bigger batch is asked;
# everything the hot path needs (errno, skipped count, family, then fd, IPv4
# address and port per connection) comes back in one flat C array that a
# single ffi.unpack turns into a list, sliced into columns at C speed; and
# IPv4 peer addresses are formatted through a small cache keyed by the 32-bit
# address, because a server sees the same few client hosts over and over (on
# loopback, a handful). Measured per connection on a 1000-connection drain:
# about 0.2 us of decoding next to about 2.7 us inside accept4().

#: Drain buffers start with this many slots ...
INITIAL_CAPACITY = 64
#: ... and grow, when a bigger batch is asked, up to this many (the default
#: somaxconn, so one call empties a full queue). A larger ``max_accepts`` is
#: served by several C calls in a row; their cost is nothing next to 4096
#: accept4() calls, and the buffers stay under 600 KiB per thread.
MAX_CAPACITY = 4096
#: The IPv4 / IPv6 host-string caches are cleared when they reach this size
#: (a server facing the whole internet would otherwise grow them forever).
HOST_CACHE_SIZE = 4096

# struct sockaddr_in6 after sin6_family: port, flowinfo (network order),
# address; sin6_scope_id at offset 24 is in host order (CPython does not
# byte-swap it either).
_SIN6 = struct.Struct("!2xHI16s")
_SCOPE_ID = struct.Struct("=I")
# sockaddr_un: the path starts after the 2-byte sun_family.
_SUN_PATH = 2
# sa_family: host order, first in every sockaddr.
_SA_FAMILY = struct.Struct("=H")
# CPython's fallback for an unknown family: (family, the 14 bytes of sa_data).
_SA_DATA = 14

class NativeDrainer:
    """The C accept drain with its own buffers. Not thread-safe: cffi releases
    the GIL during the C call, so two threads must not share one drainer (a
    listener owns one and runs on its reactor's thread)."""

    #: accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): the fds come back non-blocking
    NONBLOCKING = True

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        module = _native.load()
        if module is None:
            raise NativeUnavailableError(f"the C accept drain is unavailable: {_native.native_error()}")
        self._ffi = module.ffi
        self._c_drain = module.lib.reactor_accept_drain
        self._stride = module.lib.REACTOR_ADDR_STRIDE
        self._head = module.lib.REACTOR_DRAIN_HEAD
        self._ctl = self._ffi.new("struct reactor_drain *")
        # The skip set comes from ACCEPT_SKIP above: one list for both drains.
        self._skip = self._ffi.new("int[]", sorted(ACCEPT_SKIP))
        self._ctl.skip = self._skip
        self._ctl.nskip = len(ACCEPT_SKIP)
        self._host4: dict[int, str] = {}
        self._host6: dict[bytes, str] = {}
        self.capacity = 0
        self._grow(max(1, min(capacity, MAX_CAPACITY)))

    def _grow(self, capacity: int) -> None:
        new = self._ffi.new
        # Python owns the arrays; the struct only points at them.
        self._out = new("unsigned int[]", self._head + 3 * capacity)
        self._addrlens = new("unsigned int[]", capacity)
        self._addrs = new("unsigned char[]", capacity * self._stride)
        ctl = self._ctl
        ctl.out, ctl.addrlens, ctl.addrs = self._out, self._addrlens, self._addrs
        ctl.capacity = capacity
        self.capacity = capacity

    def drain(self, lfd: int, max_accepts: int) -> DrainResult:
        """Accept from the listening socket ``lfd`` like
        ``drain_pure(sock._accept, max_accepts)``: ``(accepted [(fd,
        address)], skipped, errno)`` with errno 0 when ``max_accepts``
        attempts were made, EAGAIN when the queue ran empty. The fds are
        non-blocking and close-on-exec; addresses are what
        ``socket.accept()`` would give."""
        if max_accepts <= 0:
            return [], 0, 0
        if max_accepts > self.capacity and self.capacity < MAX_CAPACITY:
            self._grow(min(max(max_accepts, 2 * self.capacity), MAX_CAPACITY))
        ctl = self._ctl
        out = self._out
        capacity = self.capacity
        accepted: list[tuple[int, Any]] = []
        skipped = 0
        remaining = max_accepts
        while True:
            n = self._c_drain(ctl, lfd, remaining if remaining < capacity else capacity)
            if n:
                try:
                    # One unpack reads the head and every (fd, host, port).
                    values = self._ffi.unpack(out, 3 + 3 * n)
                    err, skipped_now = values[0], values[1]
                    batch = self._decode(values, n)
                except BaseException:
                    # Never lose an accepted fd, even to a MemoryError here.
                    for i in range(n):
                        os.close(out[3 + 3 * i])
                    for fd, _ in accepted:
                        os.close(fd)
                    raise
                if accepted:
                    accepted += batch
                else:
                    accepted = batch
            else:
                err, skipped_now = out[0], out[1]
            skipped += skipped_now
            remaining -= n + skipped_now
            # A full C batch (err 0) with attempts left: go on with the next.
            # (A batch that made no attempt cannot happen; if it did, looping
            # on would never end.)
            if err or remaining <= 0 or not (n or skipped_now):
                return accepted, skipped, err

    # ------------------------------------------------------------ decoding

    def _decode(self, values: list[int], n: int) -> list[tuple[int, Any]]:
        """``[(fd, address)]`` from the unpacked ``out`` array."""
        if values[2] == socket.AF_INET:
            # The hot path: a dict lookup per peer for the host string.
            cache = self._host4
            if n == 1:  # the common wake-up under light load: skip the slicing
                host = values[4]
                return [(values[3], (cache.get(host) or self._name4(host), values[5]))]
            hosts = values[4::3]
            try:
                names = list(map(cache.__getitem__, hosts))
            except KeyError:
                names = [cache.get(h) or self._name4(h) for h in hosts]
            return list(zip(values[3::3], zip(names, values[5::3], strict=False), strict=False))
        return [(values[3 + 3 * i], self._address(values, i)) for i in range(n)]

    def _name4(self, host: int) -> str:
        cache = self._host4
        if len(cache) >= HOST_CACHE_SIZE:
            cache.clear()
        name = cache[host] = socket.inet_ntop(socket.AF_INET, host.to_bytes(4, "big"))
        return name

    def _address(self, values: list[int], i: int) -> Any:
        """One peer address decoded from its raw sockaddr, as CPython's
        ``makesockaddr()`` does it."""
        addrlen = self._addrlens[i]
        if addrlen < 2:  # the kernel gave no address at all
            return None
        raw = self._ffi.buffer(self._addrs + i * self._stride, self._stride)
        family = _SA_FAMILY.unpack_from(raw)[0]
        if family == socket.AF_INET:
            host = values[4 + 3 * i]
            return self._host4.get(host) or self._name4(host), values[5 + 3 * i]
        if family == socket.AF_INET6:
            port, flowinfo, packed = _SIN6.unpack_from(raw)
            host6 = self._host6.get(packed)
            if host6 is None:
                if len(self._host6) >= HOST_CACHE_SIZE:
                    self._host6.clear()
                host6 = self._host6[packed] = socket.inet_ntop(socket.AF_INET6, packed)
            return host6, port, flowinfo, _SCOPE_ID.unpack_from(raw, 24)[0]
        if family == socket.AF_UNIX:
            path = raw[_SUN_PATH:min(addrlen, self._stride)]
            if path[:1] == b"\0":
                # Linux abstract namespace: CPython returns the raw bytes,
                # leading NUL included.
                return path
            # A path (NUL-terminated) or, for an unbound client, nothing: ''.
            nul = path.find(b"\0")
            return os.fsdecode(path if nul < 0 else path[:nul])
        return family, raw[2:2 + _SA_DATA]

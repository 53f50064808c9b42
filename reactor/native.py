"""Loading the optional C accelerator, or saying why it is not there; and the
C accept drain's Python face, ``drain_native``.

The accelerator is the cffi extension ``reactor._accel``, built by setup.py from
``_native/`` when a C compiler is present. Everything works without it: the
pure-Python accept drain has the same semantics and the same tests.

``REACTOR_NATIVE`` (environment):
  unset / ``auto``  use the accelerator when it loads (``Reactor(native="auto")``)
  ``0``             never use it, even when ``Reactor(native=True)`` is asked
                    (that raises, so a forced-pure run cannot silently differ)
  ``1``             require it: a ``native="auto"`` reactor raises
                    ``NativeUnavailableError`` when it cannot be loaded

A build left over from an older source tree is refused, not called: the C side
reports an ABI version and it must equal :data:`ABI_VERSION`.

How ``drain_native`` stays cheap: one call into C per batch (the C loop calls
``accept4()`` until the queue is empty or the batch is full); the buffers it
fills are allocated once per thread and grown only when a bigger batch is
asked; everything the hot path needs (errno, skipped count, family, then fd,
IPv4 address and port per connection) comes back in one flat C array that a
single ``ffi.unpack`` turns into a list, sliced into columns at C speed; and
IPv4 peer addresses are formatted through a small cache keyed by the 32-bit
address, because a server sees the same few client hosts over and over (on
loopback, a handful). Measured per connection on a 1000-connection drain:
about 0.2 us of decoding next to about 2.7 us inside accept4().
"""

from __future__ import annotations

import importlib
import os
import socket
import struct
import threading
from types import ModuleType
from typing import Any

from ._accept import ACCEPT_SKIP, DrainResult
from .errors import NativeUnavailableError

__all__ = [
    "ABI_VERSION",
    "native_available",
    "native_error",
    "load",
    "extension",
    "extension_error",
    "resolve",
    "env_setting",
    "NativeDrainer",
    "drain_native",
]

#: The ABI version of ``_native/accel.c`` this module was written against
#: (``reactor_accel_abi_version()``); a build reporting another is stale.
ABI_VERSION = 2

_module: ModuleType | None = None
_error: str | None = None
_loaded = False
_ext: ModuleType | None = None
_ext_error: str | None = None
_ext_loaded = False


def env_setting() -> str:
    """The ``REACTOR_NATIVE`` switch: ``"auto"``, ``"0"`` or ``"1"``."""
    value = os.environ.get("REACTOR_NATIVE", "auto").strip().lower() or "auto"
    if value in ("0", "off", "false", "no"):
        return "0"
    if value in ("1", "on", "true", "yes"):
        return "1"
    return "auto"


def extension() -> ModuleType | None:
    """The compiled module (``ffi`` and ``lib``) if it is built and of the
    right ABI, whatever ``REACTOR_NATIVE`` says; cached. For tools that are
    not the library's accept path (the benchmark load generator), which the
    switch is not about."""
    global _ext, _ext_error, _ext_loaded
    if not _ext_loaded:
        _ext_loaded = True
        try:
            module = importlib.import_module("reactor._accel")
        except ImportError as exc:
            _ext_error = f"the C accelerator is not built ({exc})"
        else:
            try:
                found: Any = module.lib.reactor_accel_abi_version()
            except AttributeError:  # older than the version function itself
                found = "unknown"
            if found == ABI_VERSION:
                _ext = module
            else:
                _ext_error = (
                    f"the C accelerator is a stale build (ABI {found}, this reactor needs {ABI_VERSION}): "
                    f"rebuild it with `pip install -e .` (module {module.__file__})"
                )
    return _ext


def extension_error() -> str | None:
    """Why :func:`extension` gives None (not built, stale), or None."""
    extension()
    return _ext_error


def load() -> ModuleType | None:
    """The compiled module (with ``ffi`` and ``lib``), or None when it is not
    built, stale, or disabled by ``REACTOR_NATIVE=0``; cached."""
    global _module, _error, _loaded
    if not _loaded:
        _loaded = True
        if env_setting() == "0":
            _error = "disabled by REACTOR_NATIVE=0"
        else:
            _module = extension()
            _error = _ext_error
    return _module


def native_available() -> bool:
    """True if the C accelerator is built and allowed (REACTOR_NATIVE != 0)."""
    return load() is not None


def native_error() -> str | None:
    """Why the accelerator cannot be used, or None when it can."""
    load()
    return _error


def resolve(native: Any) -> bool:
    """Turn a ``Reactor(native=...)`` argument into whether to use C."""
    if native == "auto" and isinstance(native, str):
        if env_setting() == "1" and not native_available():
            raise NativeUnavailableError(f"REACTOR_NATIVE=1 requires the accelerator: {native_error()}")
        return native_available()
    if native is True:
        if not native_available():
            raise NativeUnavailableError(f"native=True but {native_error()}")
        return True
    if native is False:
        return False
    raise ValueError(f"native must be 'auto', True or False, not {native!r}")


# ------------------------------------------------------------ the C drain

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
    the GIL during the C call, so two threads must not share one drainer
    (``drain_native`` keeps one per thread)."""

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        module = load()
        if module is None:
            raise NativeUnavailableError(f"the C accept drain is unavailable: {native_error()}")
        self._ffi = module.ffi
        self._c_drain = module.lib.reactor_accept_drain
        self._stride = module.lib.REACTOR_ADDR_STRIDE
        self._head = module.lib.REACTOR_DRAIN_HEAD
        self._ctl = self._ffi.new("struct reactor_drain *")
        # The skip set comes from _accept.ACCEPT_SKIP: one list for both drains.
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
            return list(zip(values[3::3], zip(names, values[5::3])))
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


_local = threading.local()


def drain_native(lfd: int, max_accepts: int) -> DrainResult:
    """The C accept drain (see :meth:`NativeDrainer.drain`), with buffers
    kept per thread. Raises ``NativeUnavailableError`` when the accelerator
    cannot be used."""
    try:
        drain = _local.drain
    except AttributeError:
        drain = _local.drain = NativeDrainer().drain
    return drain(lfd, max_accepts)

"""A bounded TCP load generator for the benchmarks: the C engine in
``_native/loadgen.c`` when the accelerator is built, else a pure-Python twin
(one selectors loop per process, several processes).

Rules: it only ever connects to 127.0.0.0/8; every run ends by itself when
its ``duration`` is up (and earlier at ``count`` completed units, or when its
``stop_fd`` becomes readable); every connection it opened is closed when it
returns.

Modes, and what one completed unit is:

``connect-close``  connect, close (FIN) as soon as established: one connection
``client-close``   connect, wait for the server's FIN, close: one connection
                   (the server closes first, so TIME_WAIT lands on its side)
``rst``            connect, close with SO_LINGER {1, 0} (RST): one connection
``echo``           on ``concurrency`` connections, send ``size`` bytes, read
                   them back, verify, repeat: one round trip
``hold``           open ``concurrency`` connections and keep them open (one
                   the server closes is counted in ``errors["eof"]`` and
                   reopened): one connection opened; ``count`` caps how many
                   are opened in all, the run still lasts ``duration``

Connections come from ``sources`` addresses 127.0.0.2, 127.0.0.3, ... (see
loadgen.c: one address has ~28000 ephemeral ports, and the closing side keeps
each 4-tuple in TIME_WAIT for 60 s). ``rate`` (optional) sets the starts
a second, open loop: start k is due k / rate seconds after the run began,
whatever became of the earlier ones, and its latency counts from when it was
due (a server that stalls cannot hold back the starts that would have seen
the stall); ``late`` counts starts that left 1 ms or more after they were
due, or never did (the client ran out of slots or CPU: it did not offer the
load asked for). In ``echo`` mode the rate paces requests over the
``concurrency`` connections, all opened at once, each waiting idle between
requests. The C engine wakes for each start with a timerfd; the Python
twin's sleeps are whole milliseconds, so its starts leave in small bursts.

The C engine runs without the GIL (cffi releases it around every call in API
mode), so ``run_load`` can drive a server in the same process from a thread;
:func:`start_load` does that and can be stopped early. The C engine is used
whenever it is built, whatever ``REACTOR_NATIVE`` says: that switch is about
the library's accept path, and a benchmark comparing the two paths wants the
same load on both.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import ipaddress
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import native
from .._net.sockopts import LINGER_RST

__all__ = [
    "MODES",
    "LoadConfig",
    "LoadResult",
    "run_load",
    "start_load",
    "BackgroundLoad",
    "c_engine_available",
    "bucket",
    "percentile",
]

#: mode name -> the C side's REACTOR_LOAD_* number
MODES = {"connect-close": 0, "client-close": 1, "rst": 2, "echo": 3, "hold": 4}
_STOPPED_BY = {1: "duration", 2: "count", 3: "stop"}
#: latency buckets (see loadgen.c): 0..31 us exact, then 16 per power of two
NBUCKETS = 464
MAX_DURATION = 3600.0
MAX_SIZE = 16 * 1024 * 1024
#: fds a process keeps for itself besides the load's connections
FD_HEADROOM = 64
#: how long a worker process may take beyond its duration (start-up, close)
WORKER_GRACE = 30.0
# Linux: let connect() choose the source port for the full 4-tuple (loadgen.c).
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SCAN_NS = 50_000_000


@dataclass(frozen=True)
class LoadConfig:
    """One run's settings, validated (see :func:`run_load`)."""

    host: str
    port: int
    mode: str
    concurrency: int
    duration: float
    count: int | None = None
    size: int = 64
    sources: int = 8
    rate: float | None = None
    timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        try:
            address = ipaddress.IPv4Address(self.host)
        except ValueError:
            raise ValueError(f"host must be an IPv4 address in 127.0.0.0/8, not {self.host!r}")
        if not address.is_loopback:
            raise ValueError(f"the load generator only targets 127.0.0.0/8, not {self.host}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if not 1 <= self.concurrency <= 1_000_000:
            raise ValueError(f"concurrency must be 1..1000000, not {self.concurrency}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be > 0 and <= {MAX_DURATION:g} s (the run is always bounded)")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be None or >= 1, not {self.count}")
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be 1..{MAX_SIZE}, not {self.size}")
        if not 0 <= self.sources <= 65536:
            raise ValueError(f"sources must be 0..65536, not {self.sources}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be None or > 0, not {self.rate}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0, not {self.timeout}")

    @property
    def source_base(self) -> int:
        """127.0.0.2 as a host-order integer."""
        return int(ipaddress.IPv4Address("127.0.0.2"))


@dataclass
class LoadResult:
    """What a run did. ``completed`` counts the mode's units (connections,
    or round trips for echo); ``p50_us``/``p99_us`` are their latency
    (connect to close, or one round trip), ``connect_*`` the handshake's;
    ``errors`` counts errno names plus ``timeout``, ``eof`` (the server
    closed early) and ``mismatch`` (echo data differed)."""

    mode: str
    engine: str  # "c" or "python"
    completed: int
    connections: int
    errors: dict[str, int]
    p50_us: float | None
    p99_us: float | None
    connect_p50_us: float | None
    connect_p99_us: float | None
    cpu_s: float
    wall_s: float
    stopped_by: str  # "duration", "count" or "stop"
    started: int = 0
    late: int = 0  # with a rate: starts that left 1 ms or more after they were due, or never
    open_at_end: int = 0
    processes: int = 1
    hist: list[int] = field(default_factory=list, repr=False)
    connect_hist: list[int] = field(default_factory=list, repr=False)

    @property
    def per_second(self) -> float:
        """Completed units per second of wall time."""
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0


# --------------------------------------------------------------- histograms


def bucket(us: int) -> int:
    """The latency bucket of ``us`` microseconds (same as loadgen.c)."""
    if us < 32:
        return max(us, 0)
    if us >= 1 << 32:
        return NBUCKETS - 1
    msb = us.bit_length() - 1
    return 32 + (msb - 5) * 16 + ((us >> (msb - 4)) & 15)


def _bucket_middle(index: int) -> float:
    if index < 32:
        return index + 0.5
    msb = 5 + (index - 32) // 16
    width = 1 << (msb - 4)
    return (16 + (index - 32) % 16) * width + width / 2


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of a bucket histogram, as the middle
    of its bucket (within 1/32 of the true value), or None if empty."""
    total = sum(hist)
    if not total:
        return None
    rank = max(1, -(-total * q // 100))  # the ceil(q% of total)-th sample
    seen = 0
    for index, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return _bucket_middle(index)
    return None  # pragma: no cover


# ---------------------------------------------------------------- raw runs
# A "raw" result is a plain dict (JSON-able, so worker processes can send it):
# the counters of struct reactor_load_result, errors keyed by name.

_RAW_COUNTERS = ("completed", "connected", "started", "open_at_end", "timeouts", "eofs", "mismatches", "late")


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, f"errno{code}")


def c_engine_available() -> bool:
    """True when the compiled load generator can be used."""
    return native.extension() is not None


def _run_c(cfg: LoadConfig, stop_fd: int | None) -> dict[str, Any]:
    module = native.extension()
    if module is None:
        raise RuntimeError(f"the C load generator is unavailable: {native.extension_error()}")
    ffi, lib = module.ffi, module.lib
    c = ffi.new("struct reactor_load_config *")
    c.host = int(ipaddress.IPv4Address(cfg.host))
    c.port = cfg.port
    c.mode = MODES[cfg.mode]
    c.concurrency = cfg.concurrency
    c.duration = cfg.duration
    c.count = cfg.count or 0
    c.size = cfg.size
    c.nsources = cfg.sources
    c.source_base = cfg.source_base
    c.rate = cfg.rate or 0.0
    c.timeout = cfg.timeout
    c.stop_fd = -1 if stop_fd is None else stop_fd
    r = ffi.new("struct reactor_load_result *")
    rc = lib.reactor_load_run(c, r)  # the GIL is released for the whole run
    if rc:
        raise OSError(rc, f"the load generator could not start: {os.strerror(rc)}")
    raw: dict[str, Any] = {name: getattr(r, name) for name in _RAW_COUNTERS}
    raw["errors"] = {_errno_name(e): n for e, n in enumerate(ffi.unpack(r.errors, 256)) if n}
    raw["hist"] = ffi.unpack(r.op_hist, NBUCKETS)
    raw["connect_hist"] = ffi.unpack(r.connect_hist, NBUCKETS)
    raw["wall_s"], raw["cpu_s"] = r.wall_s, r.cpu_s
    raw["stopped_by"] = _STOPPED_BY.get(r.stopped_by, "duration")
    return raw


# The Python engine: the same state machine as loadgen.c, on selectors.
_FREE, _CONNECTING, _WAIT_EOF, _SEND, _RECV, _HOLD, _IDLE = range(7)
#: a start this late (ns) is counted in ``late`` (LOAD_LATE_NS in loadgen.c)
_LATE_NS = 1_000_000
_R, _W = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Slot:
    __slots__ = ("index", "sock", "state", "events", "done", "offset", "t_connect", "t_op", "deadline")

    def __init__(self, index: int) -> None:
        self.index = index
        self.sock: socket.socket | None = None
        self.state = _FREE
        self.events = 0
        self.done = self.offset = self.t_connect = self.t_op = self.deadline = 0


class _PyEngine:
    """One process's share of a run; see loadgen.c for the reasoning."""

    def __init__(self, cfg: LoadConfig, stop_fd: int | None) -> None:
        self.cfg = cfg
        self.stop_fd = stop_fd
        self.mode = cfg.mode
        self.dest = (cfg.host, cfg.port)
        self.sources = [str(ipaddress.IPv4Address(cfg.source_base + i)) for i in range(cfg.sources)]
        self.next_source = 0
        self.timeout_ns = int(cfg.timeout * 1e9)
        self.slots = [_Slot(i) for i in range(cfg.concurrency)]
        self.free = list(reversed(self.slots))
        self.active = 0
        self.opened = 0
        self.start = 0  # the run's start (ns): the schedule's origin
        self.scheduled = 0  # with a rate: starts taken from the schedule so far
        self.idle: collections.deque[_Slot] = collections.deque()  # echo with a rate, first in first out
        self.sync_failures = 0
        self.pattern = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(cfg.size + 256)) if cfg.mode == "echo" else b""
        self.raw: dict[str, Any] = {name: 0 for name in _RAW_COUNTERS}
        self.errors: dict[str, int] = {}
        self.hist = [0] * NBUCKETS
        self.connect_hist = [0] * NBUCKETS
        self.sel = selectors.DefaultSelector()

    # -- bookkeeping
    def count_error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    def release(self, slot: _Slot, rst: bool = False) -> None:
        sock = slot.sock
        assert sock is not None
        if slot.state == _IDLE:
            self.idle.remove(slot)
        self.sel.unregister(sock)
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        sock.close()
        slot.sock = None
        slot.state = _FREE
        self.free.append(slot)
        self.active -= 1

    def fail(self, slot: _Slot, code: int) -> None:
        self.count_error(_errno_name(code))
        self.release(slot)

    def set_events(self, slot: _Slot, events: int) -> None:
        if slot.events != events:
            self.sel.modify(slot.sock, events, slot)  # type: ignore[arg-type]
            slot.events = events

    def may_start(self) -> bool:
        count = self.cfg.count
        if count is None:
            return True
        if self.mode == "hold":
            return self.opened < count
        # idle connections (echo with a rate) work towards nothing
        return self.raw["completed"] + self.active - len(self.idle) < count

    def next_due(self) -> int:
        assert self.cfg.rate
        return self.start + int(self.scheduled * 1e9 / self.cfg.rate)

    def take_due(self, now: int) -> int | None:
        """With a rate: the time the next start was due, taken from the
        schedule, or None if it is not due yet."""
        due = self.next_due()
        if due > now:
            return None
        self.scheduled += 1
        if now - due >= _LATE_NS:
            self.raw["late"] += 1
        return due

    def idle_push(self, slot: _Slot) -> None:
        """Echo with a rate: wait for the schedule, watched for input (an
        early close, or bytes nobody asked for)."""
        slot.state = _IDLE
        slot.deadline = 1 << 63
        self.idle.append(slot)
        self.set_events(slot, _R)

    # -- connections
    def open_one(self, now: int, due: int) -> None:
        slot = self.free.pop()
        self.raw["started"] += 1
        self.opened += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._failed_early(slot, exc.errno or errno.EINVAL)
            return
        try:
            sock.setblocking(False)
            if self.sources:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[self.next_source], 0))
                self.next_source = (self.next_source + 1) % len(self.sources)
            if self.mode == "echo":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(self.dest)
        except OSError as exc:
            sock.close()
            self._failed_early(slot, exc.errno or errno.EINVAL)
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed_early(slot, code)
            return
        slot.sock = sock
        slot.state = _CONNECTING
        slot.events = _W
        slot.t_connect = now
        slot.t_op = due  # now, or (with a rate) when the schedule wanted it
        slot.deadline = now + self.timeout_ns
        self.sel.register(sock, _W, slot)
        self.active += 1

    def _failed_early(self, slot: _Slot, code: int) -> None:
        self.count_error(_errno_name(code))
        self.free.append(slot)
        self.sync_failures += 1

    def drain_input(self, sock: socket.socket) -> int:
        """1 at EOF, 0 when nothing more is there (or after 16 reads: a
        server that never stops sending must not starve the loop), -errno
        on error."""
        for _ in range(16):
            try:
                if not sock.recv(65536):
                    return 1
            except BlockingIOError:
                return 0
            except OSError as exc:
                return -(exc.errno or errno.EIO)
        return 0

    def on_connected(self, slot: _Slot, events: int, now: int) -> None:
        raw = self.raw
        raw["connected"] += 1
        self.connect_hist[bucket((now - slot.t_connect) // 1000)] += 1
        mode = self.mode
        if mode in ("connect-close", "rst"):
            raw["completed"] += 1
            self.hist[bucket((now - slot.t_op) // 1000)] += 1
            self.release(slot, rst=mode == "rst")
            return
        if mode == "echo":
            if self.cfg.rate:
                self.idle_push(slot)  # its first request leaves when the schedule says
            else:
                self.echo_start(slot, now)
            return
        if mode == "hold":
            raw["completed"] += 1
            slot.state = _HOLD
            slot.deadline = 1 << 63
        else:
            slot.state = _WAIT_EOF
        self.set_events(slot, _R)
        if events & _R:  # the server may already have closed
            self.on_input(slot, now)

    def on_input(self, slot: _Slot, now: int) -> None:
        rc = self.drain_input(slot.sock)  # type: ignore[arg-type]
        if rc == 1 and slot.state == _WAIT_EOF:
            self.raw["completed"] += 1
            self.hist[bucket((now - slot.t_op) // 1000)] += 1
            self.release(slot)
        elif rc == 1:
            self.raw["eofs"] += 1
            self.release(slot)
        elif rc < 0:
            self.fail(slot, -rc)

    def echo_start(self, slot: _Slot, now: int) -> None:
        slot.offset = (self.raw["completed"] + slot.index) % 251
        slot.done = 0
        slot.t_op = now
        slot.deadline = now + self.timeout_ns
        slot.state = _SEND
        self.echo_send(slot)

    def echo_send(self, slot: _Slot) -> None:
        size = self.cfg.size
        sock = slot.sock
        assert sock is not None
        while slot.done < size:
            try:
                slot.done += sock.send(self.pattern[slot.offset + slot.done:slot.offset + size])
            except BlockingIOError:
                self.set_events(slot, _W)
                return
            except OSError as exc:
                self.fail(slot, exc.errno or errno.EIO)
                return
        slot.state = _RECV
        slot.done = 0
        self.set_events(slot, _R)

    def echo_recv(self, slot: _Slot, now: int) -> None:
        size = self.cfg.size
        sock = slot.sock
        assert sock is not None
        while slot.done < size:
            try:
                data = sock.recv(min(size - slot.done, 65536))
            except BlockingIOError:
                return
            except OSError as exc:
                self.fail(slot, exc.errno or errno.EIO)
                return
            if not data:
                self.raw["eofs"] += 1
                self.release(slot)
                return
            start = slot.offset + slot.done
            if data != self.pattern[start:start + len(data)]:
                self.raw["mismatches"] += 1
                self.release(slot, rst=True)
                return
            slot.done += len(data)
        self.raw["completed"] += 1
        self.hist[bucket((now - slot.t_op) // 1000)] += 1
        if self.cfg.rate:
            self.idle_push(slot)  # the schedule says when its next request leaves
            return
        self.active -= 1
        again = self.may_start()
        self.active += 1
        if again:
            self.echo_start(slot, now)
        else:
            self.release(slot)

    def on_event(self, slot: _Slot, events: int, now: int) -> None:
        state = slot.state
        if state == _CONNECTING:
            # selectors folds EPOLLERR into both events: SO_ERROR decides.
            code = slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
            if code:
                self.fail(slot, code)
            else:
                self.on_connected(slot, events, now)
        elif state in (_WAIT_EOF, _HOLD):
            self.on_input(slot, now)
        elif state == _SEND:
            self.echo_send(slot)
        elif state == _RECV:
            self.echo_recv(slot, now)
        elif state == _IDLE:
            # Nothing was asked: an EOF is an early close, bytes are a bad reply.
            rc = self.drain_input(slot.sock)  # type: ignore[arg-type]
            if rc == 1:
                self.raw["eofs"] += 1
                self.release(slot)
            elif rc < 0:
                self.fail(slot, -rc)
            else:
                self.raw["mismatches"] += 1
                self.release(slot, rst=True)

    def fill(self, now: int) -> None:
        """Open connections in free slots, as far as the count and the rate
        allow (see loadgen.c's fill); with a rate, take every start that is
        due, each with the time it was due."""
        paced = bool(self.cfg.rate)
        echo = self.mode == "echo"
        self.sync_failures = 0
        for _ in range(len(self.free)):
            # echo with a rate opens every connection at once: the rate is its requests'
            if not self.free or not ((paced and echo) or self.may_start()):
                break
            due = self.take_due(now) if paced and not echo else now
            if due is None:
                break
            self.open_one(now, due)
        if not (paced and echo):
            return
        while self.idle and self.may_start():
            due = self.take_due(now)
            if due is None:
                break
            slot = self.idle.popleft()
            self.echo_start(slot, due)
            if slot.state != _FREE:
                slot.deadline = now + self.timeout_ns  # the timeout runs from the send

    def start_waiting(self) -> bool:
        """With a rate: can a scheduled start leave as soon as it is due?"""
        if self.mode == "echo":
            return bool(self.idle) and self.may_start()
        return bool(self.free) and self.may_start()

    def count_missed(self, stop: int, end: int) -> None:
        """Starts due 1 ms or more before the end that never left are late
        too; with a count the schedule stops on purpose."""
        if not self.cfg.rate or self.cfg.count is not None:
            return
        stop = min(stop, end)
        if stop >= self.start + _LATE_NS:
            due = int((stop - _LATE_NS - self.start) * self.cfg.rate / 1e9) + 1
            self.raw["late"] += max(0, due - self.scheduled)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        cpu0 = time.thread_time()
        start = self.start = time.monotonic_ns()
        end = start + int(cfg.duration * 1e9)
        next_scan = start + _SCAN_NS
        stopped_by = "duration"
        if self.stop_fd is not None:
            self.sel.register(self.stop_fd, _R, None)
        try:
            while True:
                now = time.monotonic_ns()
                if now >= end:
                    break
                if cfg.count is not None and self.mode != "hold" and self.raw["completed"] >= cfg.count:
                    stopped_by = "count"
                    break
                if now >= next_scan:
                    for slot in self.slots:
                        if slot.state != _FREE and now >= slot.deadline:
                            self.raw["timeouts"] += 1
                            self.release(slot)
                    next_scan = now + _SCAN_NS
                self.fill(now)
                wake = min(end, next_scan)
                if cfg.rate and self.start_waiting():
                    wake = min(wake, self.next_due())
                if self.sync_failures:
                    wake = min(wake, now + 1_000_000)
                ready = self.sel.select(max(0.0, (wake - now) / 1e9))
                now = time.monotonic_ns()
                for key, events in ready:
                    if key.data is None:
                        stopped_by = "stop"
                        raise StopIteration
                    self.on_event(key.data, events, now)
        except StopIteration:
            pass
        finally:
            self.count_missed(time.monotonic_ns(), end)
            for slot in self.slots:
                if slot.sock is not None:
                    self.raw["open_at_end"] += 1
                    slot.sock.close()
            self.sel.close()
        raw = dict(self.raw)
        raw["errors"] = self.errors
        raw["hist"] = self.hist
        raw["connect_hist"] = self.connect_hist
        raw["wall_s"] = (time.monotonic_ns() - start) / 1e9
        raw["cpu_s"] = time.thread_time() - cpu0
        raw["stopped_by"] = stopped_by
        return raw


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run_python(cfg: LoadConfig, stop_fd: int | None, processes: int) -> list[dict[str, Any]]:
    if processes <= 1:
        return [_PyEngine(cfg, stop_fd).run()]
    shares = [n for n in _split(cfg.concurrency, processes) if n]
    counts = _split(cfg.count, len(shares)) if cfg.count is not None else [None] * len(shares)
    rate = cfg.rate / len(shares) if cfg.rate else None
    configs = [
        dataclasses.replace(cfg, concurrency=c, count=n, rate=rate)
        for c, n in zip(shares, counts, strict=False)
        if n is None or n > 0
    ]
    # Workers import this module from the same tree as we did.
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    pass_fds = () if stop_fd is None else (stop_fd,)
    procs = []
    try:
        for worker_cfg in configs:
            argv = [sys.executable, "-m", "reactor.tools.loadgen", "--worker",
                    json.dumps(dataclasses.asdict(worker_cfg))]
            if stop_fd is not None:
                argv += ["--stop-fd", str(stop_fd)]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, pass_fds=pass_fds))
        raws = []
        for proc in procs:
            out, _ = proc.communicate(timeout=cfg.duration + WORKER_GRACE)
            if proc.returncode:
                raise RuntimeError(f"load worker exited with status {proc.returncode}")
            raws.append(json.loads(out))
        return raws
    finally:
        for proc in procs:  # only on an error: the workers we started, by pid
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _merge(cfg: LoadConfig, engine: str, raws: list[dict[str, Any]]) -> LoadResult:
    total = {name: sum(r[name] for r in raws) for name in _RAW_COUNTERS}
    errors: dict[str, int] = {}
    for r in raws:
        for key, n in r["errors"].items():
            errors[key] = errors.get(key, 0) + n
    for key, name in (("timeouts", "timeout"), ("eofs", "eof"), ("mismatches", "mismatch")):
        if total[key]:
            errors[name] = errors.get(name, 0) + total[key]
    hist = [sum(col) for col in zip(*(r["hist"] for r in raws), strict=False)]
    connect_hist = [sum(col) for col in zip(*(r["connect_hist"] for r in raws), strict=False)]
    reasons = {r["stopped_by"] for r in raws}
    stopped_by = "stop" if "stop" in reasons else ("count" if reasons == {"count"} else "duration")
    return LoadResult(
        mode=cfg.mode,
        engine=engine,
        completed=total["completed"],
        connections=total["connected"],
        errors=errors,
        p50_us=percentile(hist, 50),
        p99_us=percentile(hist, 99),
        connect_p50_us=percentile(connect_hist, 50),
        connect_p99_us=percentile(connect_hist, 99),
        cpu_s=sum(r["cpu_s"] for r in raws),
        wall_s=max(r["wall_s"] for r in raws),
        stopped_by=stopped_by,
        started=total["started"],
        late=total["late"],
        open_at_end=total["open_at_end"],
        processes=len(raws),
        hist=hist,
        connect_hist=connect_hist,
    )


# -------------------------------------------------------------- public API


def run_load(
    host: str,
    port: int,
    mode: str = "connect-close",
    concurrency: int = 16,
    duration: float = 1.0,
    count: int | None = None,
    size: int = 64,
    sources: int = 8,
    *,
    rate: float | None = None,
    timeout: float = 2.0,
    engine: str = "auto",
    processes: int | None = None,
    stop_fd: int | None = None,
) -> LoadResult:
    """Run a load against ``host:port`` (IPv4, 127.0.0.0/8 only) and return
    what it did. Blocks until the run ends: after ``duration`` seconds, at
    ``count`` completed units, or when ``stop_fd`` becomes readable.

    ``engine``: ``"c"`` (error if not built), ``"python"``, or ``"auto"``
    (C when built). ``processes`` is for the Python engine only (default:
    one per CPU, at most 4, at most ``concurrency``); the C engine runs in
    the calling thread, without the GIL.
    """
    if host == "localhost":
        host = "127.0.0.1"
    cfg = LoadConfig(host, port, mode, concurrency, duration, count, size, sources, rate, timeout)
    if engine == "auto":
        engine = "c" if c_engine_available() else "python"
    if engine not in ("c", "python"):
        raise ValueError(f"engine must be 'auto', 'c' or 'python', not {engine!r}")
    if engine == "python" and processes is None:
        processes = max(1, min(os.cpu_count() or 1, 4, concurrency))
    per_process = -(-concurrency // (processes or 1)) if engine == "python" else concurrency
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and per_process + FD_HEADROOM > soft:
        raise ValueError(
            f"concurrency {per_process} per process needs more fds than RLIMIT_NOFILE allows ({soft}); "
            "raise it (reactor.kernel.raise_fd_limit) or lower the concurrency"
        )
    if engine == "c":
        return _merge(cfg, "c", [_run_c(cfg, stop_fd)])
    return _merge(cfg, "python", _run_python(cfg, stop_fd, processes or 1))


class BackgroundLoad:
    """A :func:`run_load` running in a thread; ``stop()`` ends it early,
    ``result()`` waits for it. Use as a context manager so it is always
    stopped and joined."""

    def __init__(self, **kwargs: Any) -> None:
        self._stop_r, self._stop_w = os.pipe()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, kwargs=kwargs, name="reactor-loadgen", daemon=True)
        self._thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self._result = run_load(stop_fd=self._stop_r, **kwargs)
        except BaseException as exc:  # handed to result()
            self._error = exc

    def stop(self) -> None:
        """Ask the run to end now (it closes its connections and returns)."""
        if self._stop_w >= 0:
            os.write(self._stop_w, b"x")

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait up to ``timeout`` seconds for the run's result."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the load is still running")
        self._close()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _close(self) -> None:
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._stop_r = self._stop_w = -1

    def __enter__(self) -> BackgroundLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()
            self._thread.join()
        self._close()


def start_load(**kwargs: Any) -> BackgroundLoad:
    """Start :func:`run_load` (same arguments, but keyword-only) in a thread."""
    return BackgroundLoad(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reactor.tools.loadgen``: run a load and print its result as JSON.
    (``--worker`` is the Python engine's per-process entry point.)"""
    parser = argparse.ArgumentParser(prog="python -m reactor.tools.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--stop-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--mode", default="connect-close", choices=list(MODES))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--engine", default="auto", choices=["auto", "c", "python"])
    args = parser.parse_args(argv)
    if args.worker:
        raw = _PyEngine(LoadConfig(**json.loads(args.worker)), args.stop_fd).run()
        json.dump(raw, sys.stdout)
        return 0
    if args.port is None:
        parser.error("--port is required")
    result = run_load(
        args.host, args.port, args.mode, args.concurrency, args.duration, args.count, args.size, args.sources,
        rate=args.rate, engine=args.engine,
    )
    summary = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("hist", "connect_hist")}
    summary["per_second"] = round(result.per_second, 1)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

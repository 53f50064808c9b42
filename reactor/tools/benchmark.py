"""The measurement engine behind ``python -m reactor bench``.

How a figure is made, and why:

- Each server runs in its own process (``python -m reactor serve`` or a peer
  from ``reactor/tools/peers/``, shipped in the package), started fresh for
  each configuration; the load generator (C, from the accelerator, else its
  Python twin) runs in this process. With two or more CPUs they are pinned to different ones, so the
  server's CPU time is its own.
- On a 2-core machine the load generator saturates before a fast server
  does, so connections/s alone says more about the client than the server.
  The fair figure is the **server's CPU time per connection** (utime + stime
  of the server process from ``/proc/PID/stat``, over the measured window,
  divided by the connections completed in it), shown whole and split into
  user and system time: the system part is the kernel's (accept4, close, the
  TCP stack on loopback), the user part is what the server's own code costs.
  We print both, and warn when the load generator used most of its CPU.
  ``/proc`` counts each in ``SC_CLK_TCK`` units (10 ms), and the kernel
  splits the (exact) total between them by sampling at its timer tick: a
  1.5 s run of a busy server is ~150 units, so the split is good to a few
  percent; a ``--quick`` run's is coarser (see :meth:`ConfigResult.cpu_split`).
- Every server gets a warm-up, then ``repeat`` measured runs per pass; the
  tables show the median and the spread (min..max as ± percent of the median).
- Two passes. The saturation pass (closed loop: ``concurrency`` in flight)
  gives the server CPU per unit, the figure the table leads with; its rate
  is printed only where the server was busy ``SERVER_BOUND`` of the run or
  more (elsewhere the client set it, and it would rank nothing). The
  latency pass (open loop, the C load generator's rate mode) offers every
  server of the first idle count the same load, below each one's capacity
  and the client's (:func:`_offered_rate`), and reports p50/p99/p99.9 from
  when each start was due, pooled over the runs, and the starts the client
  could not make on time (``late``).
- Interleaved: a group's servers (one idle count; the peers are in the
  first group) are started together and measured in turn, repeat after
  repeat (A B C A B C ...), so drift on a shared machine lands on every row
  alike, not on the peers that used to run last. Servers whose idle
  connections do not fit the fd limit side by side are restarted for each
  repeat instead, still in turn.
- ``--idle N`` first opens N connections to a second listener in the same
  server process and leaves them idle, so each wake-up of select and poll
  walks N more fds while epoll does not. select cannot watch fds past
  FD_SETSIZE (1024): such configurations are reported "n/a (FD_SETSIZE)".
- The kernel's TcpExt ListenOverflows / ListenDrops are read before and
  after each run: a server that does not keep up makes the kernel drop
  handshakes, which clients see as a one-second retransmission; the table's
  notes say so wherever the counter moved.
- Peers (asyncio, uvloop, the C floor, Tornado, Twisted; trio on request)
  serve the same close/echo protocol with their usual public API, under the
  same load, in the same run: ratios between them are honest, absolute
  numbers depend on the machine.
  The ``c`` peer (``_native/cserver.c``: one epoll loop, accept4 until
  EAGAIN, one recv and one send per round trip, no Python on the data path)
  is the physical floor: what the kernel charges per operation before any
  event loop adds its own. Its row is the number to subtract.
- ``--json`` and ``--plot`` paths are checked before anything runs
  (:func:`check_output_paths`): a typo costs a second, not a whole run.
- How long a run takes: ``repeat`` × ``duration`` per row and pass, plus
  starts, warm-ups and idle connections. The default accept run (16 reactor
  rows and 5 peers, 3 × 1 s each, and the latency pass for the 11 rows at
  idle 0) takes about 2 1/2 minutes on the 2-core VM; ``--quick`` (idle 0,
  one 0.5 s run each) about 15 seconds.
- ``--api`` says how reactor's rows are written: ``reactor`` (a reactor
  Protocol, ``python -m reactor serve``), ``aio`` (an asyncio Protocol on
  ``reactor.aio``) or ``aio-streams`` (``asyncio.start_server`` on
  ``reactor.aio``). The aio rows and the asyncio/uvloop peers (``asyncio``,
  ``asyncio-streams``, ``uvloop``, ``uvloop-streams``) run one script,
  ``reactor/tools/peers/asyncio_server.py``, so the same asyncio code is
  measured on each loop. Like reactor's rows, the aio rows take every backend, accept path
  and idle count (the script's ``--idle-listener``); peers run at the first
  idle count only, interleaved with the rows there.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import kernel, native
from .._core.backends import FD_SETSIZE, available_backends
from . import loadgen
from .facts import machine_facts

__all__ = ["BenchOptions", "Background", "Target", "ConfigResult", "RunResult", "run_bench", "PEERS", "format_table",
           "table_legend", "check_output_paths", "write_json", "write_plot", "SCHEMA_VERSION"]

#: the asyncio server: the asyncio/uvloop peers and the aio rows all run it
ASYNCIO_SCRIPT = "asyncio_server.py"
#: peer name -> (script in PEERS_DIR, extra args, module that must import)
PEERS: dict[str, tuple[str, list[str], str]] = {
    "asyncio": (ASYNCIO_SCRIPT, ["--loop", "asyncio", "--api", "protocol"], "asyncio"),
    "asyncio-streams": (ASYNCIO_SCRIPT, ["--loop", "asyncio", "--api", "streams"], "asyncio"),
    "uvloop": (ASYNCIO_SCRIPT, ["--loop", "uvloop", "--api", "protocol"], "uvloop"),
    "uvloop-streams": (ASYNCIO_SCRIPT, ["--loop", "uvloop", "--api", "streams"], "uvloop"),
    "tornado": ("tornado_server.py", [], "tornado"),
    "twisted": ("twisted_server.py", [], "twisted"),
    "trio": ("trio_server.py", [], "trio"),
    # the floor: C, in the accelerator; its module is checked by _why_skip
    "c": ("c_server.py", [], "cffi"),
}
#: --api name -> the ASYNCIO_SCRIPT --api it runs on reactor.aio (None: ``python -m reactor serve``)
APIS: dict[str, str | None] = {"reactor": None, "aio": "protocol", "aio-streams": "streams"}
#: the peer servers: a directory of this package, so an installed reactor has them
PEERS_DIR = Path(__file__).resolve().parent / "peers"
#: the directory holding this reactor package, put first on an aio server's
#: PYTHONPATH so that it runs the reactor being benchmarked
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: seconds to wait for a server's first line, a stats line, or its exit
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
#: fds a server needs besides the idle connections and the load's
FD_MARGIN = 32
#: warn when the load generator used more than this share of one CPU
SATURATED = 0.9
#: the peers of a default run: asyncio, uvloop, the C floor, Tornado and Twisted (where installed)
DEFAULT_PEERS = ("asyncio", "uvloop", "c", "tornado", "twisted")
#: a latency-pass run lasts this share of a saturation run, unless told (the default run's 2 minutes)
LATENCY_SHARE = 0.6
#: a run's server used at least this share of its CPU: the server, not the client, set the rate
SERVER_BOUND = 0.85
#: the latency pass's offered load, without --rate: this share of the costliest server's capacity
AUTO_RATE_SHARE = 0.4
#: ... and at most this share of the client's: the fastest saturation rate measured. An open-loop
#: start costs the load generator about twice a closed-loop one (a wake-up each; on loopback the
#: handshake's kernel work runs in the sender's context), and a client that falls behind its
#: schedule would charge its own delay to the server (measured 2026-12-07 on the 2-core VM: the
#: C load generator alone spends ~60 µs per closed-loop connection, 100-150 µs per open-loop one)
CLIENT_RATE_SHARE = 0.25
#: the latency pass's offered load when there is no saturation pass to size it from (--open-loop)
DEFAULT_RATE = 5000.0
#: connection slots of the accept latency pass: enough that a server's stall of tens of ms at the
#: offered load does not run the client out of slots (which would count as late starts)
OPEN_LOOP_SLOTS = 1024
#: the JSON document's layout; bumped when a field a reader relies on changes.
#: 1: the unversioned documents before it; 2: adds schema_version, the user and
#: system split of server CPU (server_user_s, server_sys_s, user_us_per_unit,
#: sys_us_per_unit) and the c peer; 3: the runs are interleaved ("run_order"), each result has
#: "latency" (the fixed-load pass: offered rate, pooled percentiles, its runs), and runs carry
#: server_busy, late and offered_rate
SCHEMA_VERSION = 3


@dataclass
class BenchOptions:
    """What to measure (the CLI's arguments)."""

    workload: str = "accept"  # "accept" or "echo"
    backends: list[str] = field(default_factory=lambda: ["select", "poll", "epoll"])
    natives: list[bool] = field(default_factory=lambda: [True, False])
    # 800: the most idle fds select can watch beside the load (FD_SETSIZE 1024)
    idle: list[int] = field(default_factory=lambda: [0, 800, 10000])
    # the peers a default run interleaves with reactor's rows; one not installed is a "skipped" row
    peers: list[str] = field(default_factory=lambda: list(DEFAULT_PEERS))
    apis: list[str] = field(default_factory=lambda: ["reactor"])
    concurrency: int = 64
    duration: float = 1.0
    warmup: float = 0.2
    repeat: int = 3
    size: int = 64
    #: only the fixed-load (latency) pass, no saturation pass
    open_loop: bool = False
    #: the fixed offered load of the latency pass, per second; None: AUTO_RATE_SHARE of the
    #: capacity of the costliest server of the first idle count (1e6 / its CPU µs per unit)
    rate: float | None = None
    #: run the latency pass at all (at the first idle count)
    latency: bool = True
    #: seconds per latency-pass run; None: LATENCY_SHARE of ``duration`` (its percentiles are
    #: pooled over the runs: 3 x 0.6 s at 3,300/s is ~6,000 samples a row, 60 beyond its p99)
    latency_duration: float | None = None

    def latency_seconds(self) -> float:
        return self.latency_duration or LATENCY_SHARE * self.duration
    host: str = "127.0.0.1"


@dataclass
class Target:
    """One server to measure: reactor with a backend and accept path, written
    against one of the ``APIS``, or a peer."""

    kind: str  # "reactor" or "peer"
    backend: str = ""
    native: bool = False
    peer: str = ""
    api: str = "reactor"  # kind "reactor" only: a key of APIS

    @property
    def label(self) -> str:
        if self.kind == "peer":
            return self.peer
        return f"{self.api} {self.backend} {'native' if self.native else 'pure'}"

    def command(self, protocol: str, idle: bool) -> list[str]:
        on_off = "on" if self.native else "off"
        if self.kind == "peer":
            script, extra, _ = PEERS[self.peer]
            cmd = [sys.executable, str(PEERS_DIR / script), *extra, "--mode", protocol, "--port", "0"]
        elif APIS[self.api] is None:
            cmd = [sys.executable, "-m", "reactor", "serve", "--port", "0", "--protocol", protocol,
                   "--backend", self.backend, "--native", on_off, "--grace", "1"]
        else:
            cmd = [sys.executable, str(PEERS_DIR / ASYNCIO_SCRIPT), "--loop", "reactor", "--api", str(APIS[self.api]),
                   "--backend", self.backend, "--native", on_off, "--mode", protocol, "--port", "0"]
        return cmd + (["--idle-listener"] if idle else [])

    def env(self) -> dict[str, str] | None:
        """The server's environment: an aio server and the c peer import this
        reactor (its script's directory, not this package's, is on its sys.path)."""
        if (self.kind == "peer" and self.peer != "c") or (self.kind == "reactor" and APIS[self.api] is None):
            return None
        return child_env()


def child_env() -> dict[str, str]:
    """This environment, with the directory holding this reactor package
    first on PYTHONPATH: a child Python runs the reactor being benchmarked."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class RunResult:
    """One measured run."""

    units: int  # connections (accept) or round trips (echo) completed
    wall_s: float
    rate: float  # units per second, client side
    server_cpu_s: float
    server_user_s: float
    server_sys_s: float
    cpu_us_per_unit: float | None
    user_us_per_unit: float | None
    sys_us_per_unit: float | None
    p50_us: float | None
    p99_us: float | None
    connect_p50_us: float | None
    connect_p99_us: float | None
    accepted_per_s: float | None
    accepts_per_wakeup: float | None
    empty_wakeups: int | None
    listen_overflows: int | None
    listen_drops: int | None
    loadgen_cpu_s: float
    loadgen_saturated: bool
    errors: dict[str, int]
    #: server CPU time / wall time: near 1, the server set the rate
    server_busy: float = 0.0
    #: the latency pass's offered load (None: the saturation pass)
    offered_rate: float | None = None
    #: the latency pass: starts that left 1 ms or more after they were due, or never
    late: int = 0
    p999_us: float | None = None


@dataclass
class ConfigResult:
    """Every run of one target at one idle count."""

    target: Target
    idle: int
    status: str = "ok"  # "ok", "n/a (FD_SETSIZE)", "skipped: ...", "failed: ..."
    runs: list[RunResult] = field(default_factory=list)
    #: the latency pass at a fixed offered load (first idle count only)
    latency_runs: list[RunResult] = field(default_factory=list)
    #: its unit latencies (due -> done), pooled over its runs: load generator buckets
    latency_hist: list[int] = field(default_factory=list, repr=False)

    def latency_percentile(self, q: float) -> float | None:
        """The q-th percentile of the latency pass, pooled over its runs."""
        return loadgen.percentile(self.latency_hist, q) if self.latency_hist else None

    def latency_median(self, name: str) -> float | None:
        values = [getattr(run, name) for run in self.latency_runs if getattr(run, name) is not None]
        return statistics.median(values) if values else None

    def latency_spread(self, name: str) -> float | None:
        return spread_of([getattr(run, name) for run in self.latency_runs if getattr(run, name) is not None])

    def server_bound(self) -> bool:
        """True when the server, not the client, set the saturation pass's rate."""
        busy = self.median("server_busy")
        return busy is not None and busy >= SERVER_BOUND

    def median(self, name: str) -> float | None:
        """The median of one figure over the runs; for ``user_us_per_unit`` and
        ``sys_us_per_unit``, the two parts of the median ``cpu_us_per_unit``
        (see :meth:`cpu_split`), so that they add up to it."""
        if name in ("user_us_per_unit", "sys_us_per_unit"):
            split = self.cpu_split()
            return None if split is None else split[0 if name == "user_us_per_unit" else 1]
        values = [getattr(run, name) for run in self.runs if getattr(run, name) is not None]
        return statistics.median(values) if values else None

    def cpu_split(self) -> tuple[float, float] | None:
        """The median CPU µs per unit as (user, system), in the proportion of
        all the runs' user and system time together. The split comes from the
        timer tick, counted in 10 ms units: a few hundred in a configuration,
        sometimes a handful in one run; pooling the runs keeps it steady, and
        the medians of each part alone would not add up to the total."""
        total = self.median("cpu_us_per_unit")
        user = sum(run.server_user_s for run in self.runs)
        system = sum(run.server_sys_s for run in self.runs)
        if total is None or user + system <= 0:
            return None
        return total * user / (user + system), total * system / (user + system)

    def spread(self, name: str) -> float | None:
        """Half the range of the runs, as a fraction of the median."""
        return spread_of([getattr(run, name) for run in self.runs if getattr(run, name) is not None])

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.target.label, "kind": self.target.kind,
            "api": self.target.api if self.target.kind == "reactor" else None,
            "backend": self.target.backend or None,
            "native": self.target.native if self.target.kind == "reactor" else None,
            "idle": self.idle, "status": self.status,
            "median": {name: self.median(name) for name in _MEDIAN_FIELDS},
            "spread": {name: self.spread(name) for name in _SPREAD_FIELDS},
            "runs": [dataclasses.asdict(run) for run in self.runs],
            "latency": None if not self.latency_runs else {
                "offered_rate": self.latency_runs[0].offered_rate,
                "p50_us": self.latency_percentile(50), "p99_us": self.latency_percentile(99),
                "p999_us": self.latency_percentile(99.9),
                "median": {name: self.latency_median(name) for name in _MEDIAN_FIELDS},
                "spread": {name: self.latency_spread(name) for name in _SPREAD_FIELDS},
                "runs": [dataclasses.asdict(run) for run in self.latency_runs],
                "hist": self.latency_hist,  # the load generator's buckets (loadgen.bucket), pooled
            },
        }


def spread_of(values: list[float]) -> float | None:
    """Half the range of ``values``, as a fraction of their median."""
    middle = statistics.median(values) if values else 0
    if len(values) < 2 or not middle:
        return None
    return (max(values) - min(values)) / 2 / middle


_MEDIAN_FIELDS = ("rate", "cpu_us_per_unit", "user_us_per_unit", "sys_us_per_unit", "p50_us", "p99_us",
                  "connect_p50_us", "connect_p99_us", "accepted_per_s", "accepts_per_wakeup", "empty_wakeups",
                  "listen_overflows", "listen_drops", "loadgen_cpu_s", "server_busy", "late")
_SPREAD_FIELDS = ("rate", "cpu_us_per_unit", "user_us_per_unit", "sys_us_per_unit")


# ------------------------------------------------------------------ servers

class ServerProcess:
    """A server child: its port, its CPU time, its stats on SIGUSR1."""

    def __init__(self, command: list[str], cpu: int | None, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        try:
            first = self.next_line("listening on ")
            self.port = int(first.split()[2].rsplit(":", 1)[1])
        except BaseException:
            # No one will call stop() on a server that never said where it listens.
            self.kill()
            raise
        self.first_line = first
        self.idle_port: int | None = None
        if cpu is not None:
            try:
                os.sched_setaffinity(self.proc.pid, {cpu})
            except OSError:
                pass

    def _pump(self) -> None:
        assert self.proc.stdout is not None  # Popen(stdout=PIPE)
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None  # Popen(stderr=PIPE)
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip("\n")])[-20:]

    def next_line(self, prefix: str, timeout: float | None = None) -> str:
        """The next stdout line that starts with ``prefix`` (others are skipped)."""
        timeout = START_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                tail = "\n".join(self.stderr_tail[-5:])
                raise RuntimeError(f"server printed no {prefix!r} line within {timeout:.0f} s"
                                   + (f"; its stderr: {tail}" if tail else "")) from None
            if line is None:
                self.proc.wait(STOP_TIMEOUT)
                tail = "\n".join(self.stderr_tail[-5:])
                raise RuntimeError(f"server exited with code {self.proc.returncode}: {tail}")
            if line.startswith(prefix):
                return line

    def cpu_times(self) -> tuple[float, float]:
        """(utime, stime) of the server process in seconds, from /proc/PID/stat
        (fields 14 and 15; the command name before them may hold spaces, so
        the line is split after its last ')')."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, from /proc."""
        return sum(self.cpu_times())

    def stats(self) -> dict[str, float] | None:
        """The server's own counters (reactor and aio servers only), via SIGUSR1."""
        self.proc.send_signal(signal.SIGUSR1)
        line = self.next_line("stats: ", timeout=10)
        fields = {}
        for item in line[len("stats: "):].split():
            key, _, value = item.partition("=")
            try:
                fields[key] = float(value)
            except ValueError:
                pass
        return fields

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        """End the server at once (it failed to start)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _open_idle(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (from 127.0.0.1; the load
    uses 127.0.0.2 and up)."""
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((host, port), timeout=10))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# ------------------------------------------------------------------ running

def plan(options: BenchOptions) -> list[tuple[Target, int]]:
    """Every (target, idle) pair to measure, group by group: for each idle
    count, each api × backend × accept path, and at the first idle count the
    peers too, in the same group: a group's servers are measured in turn,
    repeat after repeat (A B C A B C ...), so drift over the run lands on
    every row alike instead of on whatever runs last."""
    pairs = []
    for index, idle in enumerate(options.idle):
        for api in options.apis:
            for backend in options.backends:
                for use_native in options.natives:
                    pairs.append((Target("reactor", backend=backend, native=use_native, api=api), idle))
        if index == 0:
            pairs.extend((Target("peer", peer=peer), idle) for peer in options.peers)
    return pairs


def _why_skip(target: Target, idle: int, options: BenchOptions) -> str | None:
    if target.kind == "peer":
        if target.peer not in PEERS:
            return f"skipped: unknown peer (choose from {', '.join(PEERS)})"
        if not (PEERS_DIR / PEERS[target.peer][0]).exists():
            return f"skipped: {PEERS_DIR / PEERS[target.peer][0]} not found (a broken install?)"
        module = PEERS[target.peer][2]
        try:
            __import__(module)
        except ImportError:
            return f"skipped: {module} is not installed (pip install 'reactor-loop[peers]')"
        if target.peer == "c":
            built = native.extension()
            if built is None:
                return f"skipped: the C accelerator is not built ({native.extension_error()})"
            if not hasattr(built.lib, "reactor_cserver_run"):
                return "skipped: the C accelerator predates _native/cserver.c (pip install -e . rebuilds it)"
        return None
    if target.api not in APIS:
        return f"skipped: unknown api (choose from {', '.join(APIS)})"
    if APIS[target.api] is not None and not (PEERS_DIR / ASYNCIO_SCRIPT).exists():
        return f"skipped: {PEERS_DIR / ASYNCIO_SCRIPT} not found (a broken install?)"
    if target.backend not in available_backends():
        return "skipped: backend not available here"
    if target.native and not native.native_available():
        return f"skipped: {native.native_error()}"
    if target.backend == "select" and idle + options.concurrency + FD_MARGIN >= FD_SETSIZE:
        return "n/a (FD_SETSIZE)"
    # The idle connections' two ends live in two processes (this one and the
    # server), each with its own limit, already raised to the hard limit.
    soft, _ = kernel.fd_limits()
    if soft != -1 and idle + options.concurrency + FD_MARGIN > soft:
        return f"skipped: fd limit {soft} too low for {idle} idle connections"
    return None


def cpu_pair() -> tuple[int | None, int | None]:
    """The CPUs for the server and for the load (the first two this process
    may use), or (None, None) on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


@dataclass
class _Live:
    """A started server of a group, with its idle connections."""

    result: ConfigResult
    server: ServerProcess
    idle_socks: list[socket.socket]

    def stop(self) -> None:
        for sock in self.idle_socks:
            sock.close()
        self.idle_socks = []
        self.server.stop()


def _start(result: ConfigResult, options: BenchOptions) -> _Live | None:
    """Start one server, open its idle connections and warm it up; on a
    failure the row says so and None is returned."""
    target, idle = result.target, result.idle
    server_cpu, _ = cpu_pair()
    protocol = "close" if options.workload == "accept" else "echo"
    server = None
    idle_socks: list[socket.socket] = []
    try:
        server = ServerProcess(target.command(protocol, idle > 0), server_cpu, target.env())
        if target.kind == "reactor":
            _check_engine(server.first_line, target)
        if idle:
            server.idle_port = int(server.next_line("idle listener on ").rsplit(":", 1)[1])
            idle_socks = _open_idle(options.host, server.idle_port, idle)
        _load(server.port, options, options.warmup)
        return _Live(result, server, idle_socks)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result.status = f"failed: {exc}"
        for sock in idle_socks:
            sock.close()
        if server is not None:
            server.stop()
        return None


def _start_all(results: list[ConfigResult], options: BenchOptions) -> dict[int, _Live]:
    """Start several servers at once (each in a thread: most of a start is
    waiting for the child's first line), keyed by ``id(result)``."""
    if not results:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(results)) as pool:
        started = list(pool.map(lambda result: _start(result, options), results))
    return {id(result): live for result, live in zip(results, started, strict=True) if live is not None}


def _batches(group: list[ConfigResult], options: BenchOptions) -> list[list[ConfigResult]]:
    """Split a group into batches of servers that can run side by side: this
    process holds every idle connection of a batch (the other end is in the
    servers), so the batch must fit the fd limit."""
    soft, _ = kernel.fd_limits()
    budget = (soft if soft != -1 else 1 << 30) - OPEN_LOOP_SLOTS - options.concurrency - FD_MARGIN
    batches: list[list[ConfigResult]] = []
    used = budget + 1
    for result in group:
        need = result.idle + FD_MARGIN
        if used + need > budget and (not batches or batches[-1]):
            batches.append([])
            used = 0
        batches[-1].append(result)
        used += need
    return batches


def _offered_rate(group: list[ConfigResult], options: BenchOptions) -> float:
    """The latency pass's offered load: --rate, else AUTO_RATE_SHARE of the
    capacity (1e6 / CPU µs per unit) of the costliest server measured, and
    at most CLIENT_RATE_SHARE of the fastest rate any run reached (the
    client's own limit), rounded down to two significant figures: every
    server gets the same load, below each one's capacity and the client's."""
    if options.rate:
        return options.rate
    measured = [r for r in group if r.status == "ok" and r.runs]
    costs = [c for c in (r.median("cpu_us_per_unit") for r in measured) if c]
    rates = [rate for rate in (r.median("rate") for r in measured) if rate]
    if not costs or not rates:
        return DEFAULT_RATE
    rate = min(AUTO_RATE_SHARE * 1e6 / max(costs), CLIENT_RATE_SHARE * max(rates))
    scale = 10 ** max(0, len(str(int(rate))) - 2)
    return max(100.0, float(int(rate // scale) * scale))


@dataclass
class Background:
    """The kernel's ListenOverflows over a whole bench, beside what moved
    during its measured runs: the rest happened while nothing of ours was
    loading a server, so it is other programs' (the counter is the whole
    network namespace's)."""

    overflows: int = 0  # outside the measured runs
    seconds: float = 0.0  # how long that was

    def per_run(self, duration: float) -> float:
        """How many of other programs' overflows a run of ``duration`` s may expect."""
        return self.overflows * duration / self.seconds if self.seconds > 0 else 0.0


def run_bench(options: BenchOptions, progress: Callable[[str], None] = print,
              order: list[tuple[str, int, str]] | None = None,
              background: Background | None = None) -> list[ConfigResult]:
    """Measure every configuration of ``options``; ``progress`` gets a line
    per run. Group by group (an idle count), every server of the group is
    started, then measured in turn, repeat after repeat: the saturation pass
    (server CPU per unit), then at the first idle count the latency pass at
    one fixed offered load for all. Servers of a group that do not fit the fd
    limit side by side (10,000 idle connections each) are restarted for each
    repeat instead, still in turn. ``order`` (if given) gets (label, idle,
    pass) of each run as it is made; ``background`` (if given) the
    overflows outside the runs."""
    kernel.raise_fd_limit()
    counter_before, started = kernel.listen_overflows(), time.monotonic()
    results = [ConfigResult(target, idle) for target, idle in plan(options)]
    for result in results:
        result.status = _why_skip(result.target, result.idle, options) or "ok"
    _, load_cpu = cpu_pair()
    saved_affinity = os.sched_getaffinity(0)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    total = sum(1 for r in results if r.status == "ok") * options.repeat
    done = 0
    try:
        for index, idle in enumerate(options.idle):
            group = [r for r in results if r.idle == idle and r.status == "ok"]
            passes = [] if options.open_loop else ["cpu"]
            if index == 0 and (options.latency or options.open_loop):
                passes.append("latency")
            batches = _batches(group, options)
            held: dict[int, _Live] = {}
            stopping: list[threading.Thread] = []
            try:
                for name in passes:
                    rate = _offered_rate(group, options) if name == "latency" else None
                    if rate is not None:
                        what = "connections" if options.workload == "accept" else "requests"
                        progress(f"latency pass: {rate:,.0f} {what}/s offered to every server, open loop")
                    for repeat in range(options.repeat):
                        for batch in batches:
                            held.update(_start_all([r for r in batch if r.status == "ok" and id(r) not in held],
                                                   options))
                            for result in batch:
                                live = held.get(id(result))
                                if live is None or result.status != "ok":
                                    continue
                                try:
                                    run, hist = _one_run(live.server, result.target, options, rate)
                                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                                    result.status = f"failed: {exc}"
                                    continue
                                (result.latency_runs if rate else result.runs).append(run)
                                if rate:
                                    _pool(result, hist)
                                if order is not None:
                                    order.append((result.target.label, idle, name))
                                if name == "cpu":
                                    done += 1
                                progress(_progress_line(result, run, repeat, options, done, total))
                            if len(batches) > 1:
                                # a server's stop (closing its idle connections, its exit) overlaps the
                                # next one's start: it is over long before the next measured run
                                for result in batch:
                                    live = held.pop(id(result), None)
                                    if live is not None:
                                        stopping.append(threading.Thread(target=live.stop))
                                        stopping[-1].start()
            finally:
                for live in held.values():
                    live.stop()
                for thread in stopping:
                    thread.join()
    finally:
        os.sched_setaffinity(0, saved_affinity)
    counter_after = kernel.listen_overflows()
    if background is not None and counter_before and counter_after:
        runs = [run for r in results for run in r.runs + r.latency_runs]
        during = sum(run.listen_overflows or 0 for run in runs)
        background.overflows = max(0, counter_after["ListenOverflows"] - counter_before["ListenOverflows"] - during)
        background.seconds = max(0.0, time.monotonic() - started - sum(run.wall_s for run in runs))
    return results


def _pool(result: ConfigResult, hist: list[int]) -> None:
    """Add a latency-pass run's histogram to the row's."""
    if hist:
        if not result.latency_hist:
            result.latency_hist = [0] * len(hist)
        result.latency_hist = [a + b for a, b in zip(result.latency_hist, hist, strict=True)]


def _progress_line(result: ConfigResult, run: RunResult, repeat: int, options: BenchOptions, done: int,
                   total: int) -> str:
    unit = "conn" if options.workload == "accept" else "req"
    head = (f"[{done}/{total}]" if run.offered_rate is None else "[latency]") + \
        f" {result.target.label}, idle {result.idle}, run {repeat + 1}/{options.repeat}:"
    cpu = "-" if run.cpu_us_per_unit is None else f"{run.cpu_us_per_unit:.1f}"
    text = f"{head} {cpu} µs CPU/{unit}, server busy {run.server_busy:.0%}"
    if run.offered_rate is not None:
        text += f", p99 {_fmt(run.p99_us)} µs, late {run.late}"
    if run.listen_overflows:
        text += f", {run.listen_overflows} listen overflows"
    return text


def measure(target: Target, idle: int, options: BenchOptions) -> ConfigResult:
    """One target alone: start the server, open the idle connections, warm
    up, run ``repeat`` times (the passes of :func:`run_bench`)."""
    single = dataclasses.replace(options, idle=[idle], peers=[], backends=[], apis=[])
    result = ConfigResult(target, idle)
    result.status = _why_skip(target, idle, options) or "ok"
    if result.status != "ok":
        return result
    live = _start(result, single)
    if live is None:
        return result
    _, load_cpu = cpu_pair()
    saved_affinity = os.sched_getaffinity(0)
    try:
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        for _ in range(options.repeat):
            if not options.open_loop:
                result.runs.append(_one_run(live.server, target, options, None)[0])
        if options.open_loop:
            rate = options.rate or DEFAULT_RATE
            for _ in range(options.repeat):
                run, hist = _one_run(live.server, target, options, rate)
                result.latency_runs.append(run)
                _pool(result, hist)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result.status = f"failed: {exc}"
    finally:
        os.sched_setaffinity(0, saved_affinity)
        live.stop()
    return result


def _check_engine(first_line: str, target: Target) -> None:
    """A reactor or aio server says ``backend=NAME native=on|off``: it must be what was asked."""
    said = dict(item.partition("=")[::2] for item in first_line.split()[3:] if "=" in item)
    asked = {"backend": target.backend, "native": "on" if target.native else "off"}
    if {key: said.get(key) for key in asked} != asked:
        raise RuntimeError(f"server says {' '.join(first_line.split()[3:]) or 'nothing'} "
                           f"after its address, asked for backend={asked['backend']} native={asked['native']}")


def _load(port: int, options: BenchOptions, duration: float, rate: float | None = None) -> loadgen.LoadResult:
    """The saturation pass (closed loop: ``concurrency`` in flight, each
    starting again as soon as it is done), or with ``rate`` the latency pass
    (open loop: starts on a fixed schedule). Accept: the client waits for
    the server's FIN (client-close), so a unit includes the server's accept
    and close; echo: one round trip."""
    mode = "echo" if options.workload == "echo" else "client-close"
    concurrency = options.concurrency
    if rate and options.workload == "accept":
        concurrency = max(concurrency, OPEN_LOOP_SLOTS)
    return loadgen.run_load(options.host, port, mode, concurrency, duration, size=options.size, rate=rate)


def _one_run(server: ServerProcess, target: Target, options: BenchOptions,
             rate: float | None = None) -> tuple[RunResult, list[int]]:
    """One measured run, and its units' latency histogram (pooled by the latency pass)."""
    is_reactor = target.kind == "reactor"
    stats_before = server.stats() if is_reactor else None
    overflows_before = kernel.listen_overflows()
    user_before, sys_before = server.cpu_times()
    load = _load(server.port, options, options.latency_seconds() if rate else options.duration, rate)
    user_after, sys_after = server.cpu_times()
    overflows_after = kernel.listen_overflows()
    stats_after = server.stats() if is_reactor else None
    server_user, server_sys = user_after - user_before, sys_after - sys_before
    server_cpu = server_user + server_sys

    def per_unit(seconds: float) -> float | None:
        return seconds / load.completed * 1e6 if load.completed else None

    accepted_per_s = accepts_per_wakeup = empty = None
    if stats_before and stats_after:
        accepted = stats_after.get("accepted", 0) - stats_before.get("accepted", 0)
        accepted_per_s = accepted / load.wall_s if load.wall_s else None
        accepts_per_wakeup = stats_after.get("accepts/wakeup")
        empty = int(stats_after.get("empty_wakeups", 0) - stats_before.get("empty_wakeups", 0))
    overflows = drops = None
    if overflows_before and overflows_after:
        overflows = overflows_after["ListenOverflows"] - overflows_before["ListenOverflows"]
        drops = overflows_after["ListenDrops"] - overflows_before["ListenDrops"]
    run = RunResult(
        units=load.completed, wall_s=load.wall_s, rate=load.per_second, server_cpu_s=server_cpu,
        server_user_s=server_user, server_sys_s=server_sys, cpu_us_per_unit=per_unit(server_cpu),
        user_us_per_unit=per_unit(server_user), sys_us_per_unit=per_unit(server_sys),
        p50_us=load.p50_us, p99_us=load.p99_us, connect_p50_us=load.connect_p50_us,
        connect_p99_us=load.connect_p99_us, accepted_per_s=accepted_per_s, accepts_per_wakeup=accepts_per_wakeup,
        empty_wakeups=empty, listen_overflows=overflows, listen_drops=drops, loadgen_cpu_s=load.cpu_s,
        loadgen_saturated=load.cpu_s > SATURATED * load.wall_s, errors=dict(load.errors),
        server_busy=server_cpu / load.wall_s if load.wall_s else 0.0, offered_rate=rate, late=load.late,
        p999_us=loadgen.percentile(load.hist, 99.9),
    )
    return run, load.hist


# ------------------------------------------------------------------ output

def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _one_line(status: str) -> str:
    """A status for a table row: a failure's first line and its last (a
    traceback's exception), the whole of it stays in the JSON."""
    lines = [line.strip() for line in status.splitlines() if line.strip()]
    return " ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else status


def layout_table(rows: list[list[str]], left: int = 1) -> list[str]:
    """Fixed-width lines: the first row is the header (underlined); a shorter
    row is a status row whose last cell spans the figure columns. The first
    ``left`` columns are left-aligned (names), the rest right-aligned."""
    width = len(rows[0])
    widths = [max(len(row[i]) for row in rows if len(row) == width or i < 2) for i in range(width)]

    def cell(i: int, text: str) -> str:
        return f"{text:<{widths[i]}}" if i < left else f"{text:>{widths[i]}}"

    lines = []
    for number, row in enumerate(rows):
        if len(row) < width:
            lines.append(f"{cell(0, row[0])}  {cell(1, row[1])}  {row[2]}")
            continue
        lines.append("  ".join(cell(i, text) for i, text in enumerate(row)).rstrip())
        if number == 0:
            lines.append("-" * len(lines[0]))
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_table(results: Sequence[ConfigResult], options: BenchOptions, background: Background | None = None) -> str:
    """The saturation table (server CPU per unit first; a rate only where the
    server set it), then the latency table (every server at one offered
    load), then what the reader needs to read them: overflows, late starts,
    client errors, the legend."""
    unit = "conn" if options.workload == "accept" else "req"
    accept = options.workload == "accept"
    baseline = next((r for r in results if r.target.kind == "peer" and r.target.peer == "asyncio"
                     and r.status == "ok" and r.runs), None)
    base_cpu = baseline.median("cpu_us_per_unit") if baseline else None
    sections: list[str] = []
    if not options.open_loop:
        headers = ["server", "idle", f"CPU µs/{unit}", "±", "user µs", "sys µs", "CPU vs asyncio", "server busy",
                   f"{unit}/s (server-bound)"]
        if accept:
            headers += ["acc/wake", "empty", "overflows"]
        rows: list[list[str]] = [headers]
        for result in results:
            if result.status != "ok" or not result.runs:
                rows.append([result.target.label, str(result.idle), _one_line(result.status) if result.status != "ok"
                             else "no runs"])
                continue
            cpu = result.median("cpu_us_per_unit")
            row = [result.target.label, str(result.idle), _fmt(cpu, ".1f"), _pct(result.spread("cpu_us_per_unit")),
                   _fmt(result.median("user_us_per_unit"), ".1f"), _fmt(result.median("sys_us_per_unit"), ".1f"),
                   f"{base_cpu / cpu:.2f}x" if base_cpu and cpu else "-", _pct(result.median("server_busy")),
                   _fmt(result.median("rate")) if result.server_bound() else "client-bound"]
            if accept:
                row += [_fmt(result.median("accepts_per_wakeup"), ".2f"), _fmt(result.median("empty_wakeups")),
                        _fmt(sum(run.listen_overflows or 0 for run in result.runs))]
            rows.append(row)
        sections.append(f"saturation: {options.concurrency} {'connections' if accept else 'requests'} in flight "
                        f"(closed loop), medians of {options.repeat} run(s) of {options.duration:g} s, servers "
                        "interleaved")
        sections += layout_table(rows) + [""]
    latency_rows = [r for r in results if r.latency_runs or (r.idle == options.idle[0] and r.status != "ok")]
    offered = next((r.latency_runs[0].offered_rate for r in results if r.latency_runs), None)
    if offered is not None:
        latency_what = "connect to the server's FIN" if accept else "one round trip"
        headers = ["server", "idle", f"CPU µs/{unit}", "±", "p50 µs", "p99 µs", "p99.9 µs", "late"]
        if accept:
            headers += ["overflows"]
        rows = [headers]
        for result in latency_rows:
            if not result.latency_runs:
                rows.append([result.target.label, str(result.idle), _one_line(result.status)])
                continue
            row = [result.target.label, str(result.idle), _fmt(result.latency_median("cpu_us_per_unit"), ".1f"),
                   _pct(result.latency_spread("cpu_us_per_unit")), _fmt(result.latency_percentile(50)),
                   _fmt(result.latency_percentile(99)), _fmt(result.latency_percentile(99.9)),
                   _fmt(sum(run.late for run in result.latency_runs))]
            if accept:
                row.append(_fmt(sum(run.listen_overflows or 0 for run in result.latency_runs)))
            rows.append(row)
        sections.append(f"latency at a fixed offered load: {offered:,.0f} {unit}/s to every server (open loop; "
                        f"latency from when each start was due to {latency_what}), percentiles pooled over "
                        f"{options.repeat} run(s) of {options.latency_seconds():g} s")
        sections += layout_table(rows) + [""]
    return "\n".join(sections + table_legend(options.workload) + _notes(results, options, background))


def _notes(results: Sequence[ConfigResult], options: BenchOptions, background: Background | None) -> list[str]:
    """What a reader must know to trust the tables: overflows, late starts, client errors."""
    notes = []
    for result in results:
        errors: dict[str, int] = {}
        for run in result.runs + result.latency_runs:
            for name, count in run.errors.items():
                errors[name] = errors.get(name, 0) + count
        if errors:
            listed = ", ".join(f"{name} {count}" for name, count in sorted(errors.items()))
            notes.append(f"client errors, {result.target.label} idle {result.idle}: {listed}"
                         + (" -- ECHO DATA DIFFERED" if "mismatch" in errors else ""))
    overflowed = [(r, sum(run.listen_overflows or 0 for run in r.runs + r.latency_runs)) for r in results]
    overflowed = [(r, n) for r, n in overflowed if n]
    # what other programs add to the namespace's counter in as many runs: a row within twice that
    # (and a few) shows nothing about its server
    per_run = background.per_run(options.duration) if background is not None and background.seconds > 0 else None
    if per_run is None:
        own, noise = overflowed, []
    else:
        own = [(r, n) for r, n in overflowed if n > 2 * per_run * len(r.runs + r.latency_runs) + 3]
        noise = [(r, n) for r, n in overflowed if (r, n) not in own]
    if own:
        listed = ", ".join(f"{r.target.label} idle {r.idle}: {n:,}" for r, n in own)
        notes.append(
            f"listen overflows ({listed}): the kernel's TcpExtListenOverflows counter moved during these runs. "
            "Each is a completed handshake the kernel dropped because the server's accept queue "
            f"(backlog {min(4096, kernel.somaxconn())}) was full: the client outran accept. The client sees "
            "nothing at once; its ACK is ignored and the connection starts over after a retransmission (about "
            "1 s), which lands in its latency. In the saturation pass it means the server fell behind the "
            "offered connections, not that it failed; in the latency pass, that the offered load was above what "
            "it could take. The counter is the whole network namespace's: other programs on this machine add "
            "to it too.")
    if noise and background is not None:
        listed = ", ".join(f"{r.target.label} idle {r.idle}: {n:,}" for r, n in noise)
        notes.append(
            f"listen overflows, a few ({listed}): no more than other programs on this machine caused while none "
            f"of our runs was measuring ({background.overflows:,} in {background.seconds:.0f} s, about "
            f"{per_run:.1f} per {options.duration:g} s run; the counter is the whole network namespace's): "
            "not these servers' accept queues.")
    late = [(r, sum(run.late for run in r.latency_runs), sum(run.units for run in r.latency_runs))
            for r in results if r.latency_runs]
    late = [(r, n, units) for r, n, units in late if n > max(1, units // 100)]
    if late:
        listed = ", ".join(f"{r.target.label}: {n:,}" for r, n, _ in late)
        notes.append(f"late starts over 1% ({listed}): the load generator could not start connections on "
                     "schedule (out of slots while the server stalled, or out of CPU); latency still counts from "
                     "when each start was due, but the offered load was lower than asked.")
    if any(run.loadgen_saturated for r in results for run in r.runs):
        notes.append("client-bound: the load generator used over 90% of its CPU in some saturation runs: there "
                     "the rate is the client's, so only CPU µs per unit compares those servers.")
    engine = "C" if loadgen.c_engine_available() else "Python (no C compiler: rates are the client's limit)"
    notes.append(f"load generator: {engine}.")
    return notes


def table_legend(workload: str) -> list[str]:
    """What each column of :func:`format_table` means, printed under it."""
    unit = "conn" if workload == "accept" else "req"
    what = "connections accepted and closed" if workload == "accept" else "round trips"
    legend = [
        f"columns: CPU µs/{unit}: the figure that compares servers, server CPU time (/proc/PID/stat) per "
        f"{unit}, median of the runs = user µs (its own code) + sys µs (the kernel's);",
        "    sampled at the timer tick, counted in 10 ms units, pooled over the runs: coarse on a short run",
        "  ±: half the runs' range, as % of the median",
        f"  CPU vs asyncio: asyncio's CPU per {unit} / this row's (> 1: cheaper)",
        f"  server busy: server CPU time / wall time; {unit}/s ({what} per second) is shown only where it is "
        f"{SERVER_BOUND:.0%} or more: elsewhere the client set the rate (client-bound) and it would rank nothing",
        "  p50/p99/p99.9 µs: latency at the fixed offered load; late: starts 1 ms or more behind schedule, or never",
    ]
    if workload == "accept":
        legend.append("  acc/wake: accepts per wake-up; empty: wake-ups that accepted none; "
                      "overflows: kernel ListenOverflows during the runs (explained below when not 0)")
    legend.append("  c: the C reference server (_native/cserver.c, no event loop): the kernel's floor")
    return legend


def machine_description() -> dict[str, Any]:
    """CPU model, cores, kernel, Python and the versions of what was measured."""
    facts = machine_facts()
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts["cpu_model"] = model
    versions: dict[str, str | None] = {}
    for package in ("uvloop", "tornado", "twisted", "trio", "cffi"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    facts["packages"] = versions
    facts["loadgen"] = "c" if loadgen.c_engine_available() else "python"
    return facts


def check_output_paths(json_path: str | None, plot_path: str | None) -> str | None:
    """Why ``--json PATH`` or ``--plot PATH`` could not be written, or None:
    asked before the run, so that a typo does not cost a whole run. The
    directory must exist and be writable, the path must not be a directory
    (nor an existing file we may not replace); ``--plot`` needs matplotlib."""
    for flag, path in (("--json", json_path), ("--plot", plot_path)):
        if path is None:
            continue
        if not path:
            return f"{flag}: expected a file path, not an empty string"
        target = Path(path)
        directory = target.parent
        if target.is_dir():
            return f"{flag} {path}: is a directory, not a file"
        if not directory.is_dir():
            return f"{flag} {path}: the directory {str(directory)!r} does not exist"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{flag} {path}: the directory {str(directory)!r} is not writable"
        if target.exists() and not os.access(target, os.W_OK):
            return f"{flag} {path}: the file exists and is not writable"
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "--plot needs matplotlib: pip install -e '.[plot]'"
    return None


def write_json(path: str, results: Sequence[ConfigResult], options: BenchOptions,
               order: Sequence[tuple[str, int, str]] = (), background: Background | None = None) -> None:
    """Every figure, the options and the machine, as JSON; ``order``: the
    runs as they were made (label, idle, pass), from :func:`run_bench`."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "workload": options.workload,
        "options": dataclasses.asdict(options),
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [result.as_dict() for result in results],
        "run_order": [{"server": label, "idle": idle, "pass": name} for label, idle, name in order],
        "background_overflows": None if background is None else dataclasses.asdict(background),
    }
    Path(path).write_text(json.dumps(document, indent=2))


#: plot styles: a colour per reactor backend, a marker per api; each peer its own
#: colour and marker (c, the floor, in black)
_BACKEND_COLOURS = {name: f"C{index}" for index, name in enumerate(("select", "poll", "epoll", "kqueue", "devpoll"))}
_API_MARKERS = {"reactor": "o", "aio": "s", "aio-streams": "^"}
_PEER_STYLES = {"c": ("black", "*"), "asyncio": ("C5", "D"), "asyncio-streams": ("C5", "d"),
                "uvloop": ("C6", "P"), "uvloop-streams": ("C6", "p"), "tornado": ("C7", "v"),
                "twisted": ("C8", "<"), "trio": ("C9", ">")}


def write_plot(path: str, results: Sequence[ConfigResult], options: BenchOptions, date: str | None = None) -> None:
    """The figure of :func:`plot_figure` as a PNG. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plot_figure(results, options, machine_description(), date)
    try:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_figure(results: Sequence[ConfigResult], options: BenchOptions, machine: dict[str, Any],
                date: str | None = None) -> Any:
    """Server CPU per unit against idle connections (first: the figure that
    compares servers): one line per api × backend × accept path, each peer as
    points at the idle counts it was measured at (the first only), all with
    error bars from the runs' spread (± half their range); then the latency
    pass, every server at the same offered load: p50 to p99.9 per server. No
    throughput panel: the saturation pass's rate is mostly the client's, and
    a panel of it would rank servers against their CPU figure. The legend sits
    outside the axes, the machine and the date in the title and the footer."""
    import matplotlib.pyplot as plt

    date = date or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    unit = "connection" if options.workload == "accept" else "request"
    figure, (ax_cpu, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    styles: dict[str, dict[str, Any]] = {}
    series: dict[tuple[str, ...], list[ConfigResult]] = {}
    for result in results:
        if result.status == "ok":
            target = result.target
            key = ("peer", target.peer) if target.kind == "peer" else (target.api, target.backend, str(target.native))
            series.setdefault(key, []).append(result)
    for points in series.values():
        points.sort(key=lambda r: r.idle)
        target = points[0].target
        if target.kind == "peer":
            colour, marker = _PEER_STYLES.get(target.peer, ("gray", "x"))
            label = "c (the floor)" if target.peer == "c" else target.peer
            style: dict[str, Any] = {"color": colour, "marker": marker, "markersize": 9, "label": label,
                                     "linestyle": ":" if len(points) > 1 else "none"}
        else:
            name = f"{target.backend} {'native' if target.native else 'pure'}"
            style = {"color": _BACKEND_COLOURS.get(target.backend, "black"),
                     "marker": _API_MARKERS.get(target.api, "x"), "linestyle": "-" if target.native else "--",
                     "label": name if target.api == "reactor" else f"{target.api} {name}"}
        idle = [r.idle for r in points]
        values = [r.median("cpu_us_per_unit") or 0.0 for r in points]
        errors = [(r.spread("cpu_us_per_unit") or 0.0) * value for r, value in zip(points, values, strict=True)]
        ax_cpu.errorbar(idle, values, yerr=errors, capsize=3, linewidth=1.2, **style)
        styles[target.label] = style
    idle_values = sorted({r.idle for r in results}) or [0]
    ax_cpu.set_xlabel("idle connections (select: none past FD_SETSIZE)")
    if max(idle_values) > 100:
        ax_cpu.set_xscale("symlog", linthresh=100)
        ax_cpu.set_xlim(left=-10, right=max(idle_values) * 1.5)
    else:
        ax_cpu.set_xlim(left=-1, right=max(max(idle_values) * 1.1, 1))
    ax_cpu.set_xticks(idle_values)
    ax_cpu.set_xticklabels([f"{value:,}" for value in idle_values])
    ax_cpu.set_ylim(bottom=0)
    ax_cpu.grid(True, alpha=0.3)
    ax_cpu.set_ylabel(f"server CPU µs per {unit} (lower is better)")
    ax_cpu.set_title(f"server CPU per {unit}, saturated")
    # the latency pass: one vertical bar per server from p50 to p99.9, a tick at p99
    measured = [r for r in results if r.latency_runs and r.latency_hist]
    for x, result in enumerate(measured):
        style = styles.get(result.target.label, {"color": "gray", "marker": "x"})
        p50, p99, p999 = (result.latency_percentile(q) or 0.0 for q in (50, 99, 99.9))
        ax_lat.vlines(x, p50, p999, color=style["color"], linewidth=2)
        ax_lat.plot([x], [p50], marker=style["marker"], color=style["color"], linestyle="none")
        ax_lat.plot([x], [p99], marker="_", markersize=14, color=style["color"], linestyle="none")
    ax_lat.set_xticks(range(len(measured)))
    ax_lat.set_xticklabels([r.target.label for r in measured], rotation=60, ha="right", fontsize=7)
    if measured:
        ax_lat.set_yscale("log")
        offered = measured[0].latency_runs[0].offered_rate or 0
        ax_lat.set_title(f"latency, {offered:,.0f} {unit}s/s offered to each")
    else:
        ax_lat.set_title("latency: no fixed-load pass in this run")
    ax_lat.set_ylabel("µs, due to done: p50 (marker), p99 (dash), p99.9 (top)", fontsize=8)
    ax_lat.grid(True, alpha=0.3, axis="y")
    handles, labels = ax_cpu.get_legend_handles_labels()
    cpus = machine.get("cpus")
    figure.suptitle(f"bench {options.workload} — {machine.get('cpu_model') or 'unknown CPU'}, {cpus} CPUs — {date}")
    rows = -(-len(labels) // 6)  # the legend's rows, under the axes; the footer under them
    figure.text(0.01, -0.03 - 0.045 * rows,
                f"Linux {machine.get('kernel')}, {machine.get('python')}, reactor {machine.get('reactor')}, "
                f"load generator {machine.get('loadgen')}, concurrency {options.concurrency}; medians of "
                f"{options.repeat} run(s) of {options.duration:g} s, bars: ± half the runs' range",
                fontsize=8, ha="left", va="top")
    figure.tight_layout()
    figure.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=6)
    return figure

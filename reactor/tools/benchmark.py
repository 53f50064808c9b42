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
- Every configuration gets a warm-up, then ``repeat`` measured runs; the
  table shows the median and the spread (min..max as ± percent of the median).
- ``--idle N`` first opens N connections to a second listener in the same
  server process and leaves them idle, so each wake-up of select and poll
  walks N more fds while epoll does not. select cannot watch fds past
  FD_SETSIZE (1024): such configurations are reported "n/a (FD_SETSIZE)".
- The kernel's TcpExt ListenOverflows / ListenDrops are read before and
  after each run: a server that does not keep up makes the kernel drop
  handshakes, which clients see as a one-second retransmission.
- Peers (asyncio, uvloop, Tornado, Twisted, trio) serve the same close/echo
  protocol with their usual public API, under the same load, in the same
  run: ratios between them are honest, absolute numbers depend on the machine.
  The ``c`` peer (``_native/cserver.c``: one epoll loop, accept4 until
  EAGAIN, one recv and one send per round trip, no Python on the data path)
  is the physical floor: what the kernel charges per operation before any
  event loop adds its own. Its row is the number to subtract.
- ``--json`` and ``--plot`` paths are checked before anything runs
  (:func:`check_output_paths`): a typo costs a second, not a whole run.
- How long a run takes: each configuration costs about its warm-up plus
  ``repeat`` × ``duration`` plus a second of start, stop and idle
  connections. The default accept run (17 reactor rows and 2 peers, 3 × 1.5 s
  each) takes about 2 minutes; ``--quick`` (idle 0, one 0.5 s run each)
  about 10 seconds.
- ``--api`` says how reactor's rows are written: ``reactor`` (a reactor
  Protocol, ``python -m reactor serve``), ``aio`` (an asyncio Protocol on
  ``reactor.aio``) or ``aio-streams`` (``asyncio.start_server`` on
  ``reactor.aio``). The aio rows and the asyncio/uvloop peers (``asyncio``,
  ``asyncio-streams``, ``uvloop``, ``uvloop-streams``) run one script,
  ``reactor/tools/peers/asyncio_server.py``, so the same asyncio code is
  measured on each loop. Like reactor's rows, the aio rows take every backend, accept path
  and idle count (the script's ``--idle-listener``); peers run at the first
  idle count only.
"""

from __future__ import annotations

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

__all__ = ["BenchOptions", "Target", "ConfigResult", "RunResult", "run_bench", "PEERS", "format_table", "table_legend",
           "check_output_paths", "write_json", "write_plot", "SCHEMA_VERSION"]

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
#: the JSON document's layout; bumped when a field a reader relies on changes.
#: 1: the unversioned documents before it; 2: adds schema_version, the user and
#: system split of server CPU (server_user_s, server_sys_s, user_us_per_unit,
#: sys_us_per_unit) and the c peer
SCHEMA_VERSION = 2


@dataclass
class BenchOptions:
    """What to measure (the CLI's arguments)."""

    workload: str = "accept"  # "accept" or "echo"
    backends: list[str] = field(default_factory=lambda: ["select", "poll", "epoll"])
    natives: list[bool] = field(default_factory=lambda: [True, False])
    # 800: the most idle fds select can watch beside the load (FD_SETSIZE 1024)
    idle: list[int] = field(default_factory=lambda: [0, 800, 10000])
    peers: list[str] = field(default_factory=lambda: ["asyncio", "uvloop"])
    apis: list[str] = field(default_factory=lambda: ["reactor"])
    concurrency: int = 64
    duration: float = 1.5
    warmup: float = 0.3
    repeat: int = 3
    size: int = 64
    open_loop: bool = False
    rate: float | None = None
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


@dataclass
class ConfigResult:
    """Every run of one target at one idle count."""

    target: Target
    idle: int
    status: str = "ok"  # "ok", "n/a (FD_SETSIZE)", "skipped: ...", "failed: ..."
    runs: list[RunResult] = field(default_factory=list)

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
        values = [getattr(run, name) for run in self.runs if getattr(run, name) is not None]
        middle = statistics.median(values) if values else 0
        if len(values) < 2 or not middle:
            return None
        return (max(values) - min(values)) / 2 / middle

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
        }


_MEDIAN_FIELDS = ("rate", "cpu_us_per_unit", "user_us_per_unit", "sys_us_per_unit", "p50_us", "p99_us",
                  "connect_p50_us", "connect_p99_us", "accepted_per_s", "accepts_per_wakeup", "empty_wakeups",
                  "listen_overflows", "listen_drops", "loadgen_cpu_s")
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
    """Every (target, idle) pair to measure: for each idle count, each api ×
    backend × accept path; then the peers, at the first idle count only."""
    pairs = []
    for idle in options.idle:
        for api in options.apis:
            for backend in options.backends:
                for use_native in options.natives:
                    pairs.append((Target("reactor", backend=backend, native=use_native, api=api), idle))
    for peer in options.peers:
        for idle in options.idle[:1]:
            pairs.append((Target("peer", peer=peer), idle))
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


def measure(target: Target, idle: int, options: BenchOptions) -> ConfigResult:
    """Start the server, open the idle connections, warm up, run ``repeat`` times."""
    result = ConfigResult(target, idle)
    reason = _why_skip(target, idle, options)
    if reason:
        result.status = reason
        return result
    server_cpu, load_cpu = cpu_pair()
    protocol = "close" if options.workload == "accept" else "echo"
    server = None
    idle_socks: list[socket.socket] = []
    saved_affinity = os.sched_getaffinity(0)
    try:
        server = ServerProcess(target.command(protocol, idle > 0), server_cpu, target.env())
        if target.kind == "reactor":
            _check_engine(server.first_line, target)
        if idle:
            server.idle_port = int(server.next_line("idle listener on ").rsplit(":", 1)[1])
            idle_socks = _open_idle(options.host, server.idle_port, idle)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        _load(server.port, options, options.warmup)
        for _ in range(options.repeat):
            result.runs.append(_one_run(server, target, options))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result.status = f"failed: {exc}"
    finally:
        os.sched_setaffinity(0, saved_affinity)
        for sock in idle_socks:
            sock.close()
        if server is not None:
            server.stop()
    return result


def _check_engine(first_line: str, target: Target) -> None:
    """A reactor or aio server says ``backend=NAME native=on|off``: it must be what was asked."""
    said = dict(item.partition("=")[::2] for item in first_line.split()[3:] if "=" in item)
    asked = {"backend": target.backend, "native": "on" if target.native else "off"}
    if {key: said.get(key) for key in asked} != asked:
        raise RuntimeError(f"server says {' '.join(first_line.split()[3:]) or 'nothing'} "
                           f"after its address, asked for backend={asked['backend']} native={asked['native']}")


def _load(port: int, options: BenchOptions, duration: float) -> loadgen.LoadResult:
    if options.workload == "echo":
        mode = "echo"
    else:
        mode = "connect-close" if options.open_loop else "client-close"
    return loadgen.run_load(options.host, port, mode, options.concurrency, duration, size=options.size,
                            rate=options.rate)


def _one_run(server: ServerProcess, target: Target, options: BenchOptions) -> RunResult:
    is_reactor = target.kind == "reactor"
    stats_before = server.stats() if is_reactor else None
    overflows_before = kernel.listen_overflows()
    user_before, sys_before = server.cpu_times()
    load = _load(server.port, options, options.duration)
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
    return RunResult(
        units=load.completed, wall_s=load.wall_s, rate=load.per_second, server_cpu_s=server_cpu,
        server_user_s=server_user, server_sys_s=server_sys, cpu_us_per_unit=per_unit(server_cpu),
        user_us_per_unit=per_unit(server_user), sys_us_per_unit=per_unit(server_sys),
        p50_us=load.p50_us, p99_us=load.p99_us, connect_p50_us=load.connect_p50_us,
        connect_p99_us=load.connect_p99_us, accepted_per_s=accepted_per_s, accepts_per_wakeup=accepts_per_wakeup,
        empty_wakeups=empty, listen_overflows=overflows, listen_drops=drops, loadgen_cpu_s=load.cpu_s,
        loadgen_saturated=load.cpu_s > SATURATED * load.wall_s, errors=dict(load.errors),
    )


def run_bench(options: BenchOptions, progress: Callable[[str], None] = print) -> list[ConfigResult]:
    """Measure every configuration of ``options``; ``progress`` gets a line each."""
    kernel.raise_fd_limit()
    pairs = plan(options)
    results = []
    for index, (target, idle) in enumerate(pairs, 1):
        started = time.monotonic()
        result = measure(target, idle, options)
        results.append(result)
        rate = result.median("rate")
        cpu = result.median("cpu_us_per_unit")
        summary = (f"{rate:,.0f}/s, {cpu:.1f} µs CPU each" if rate is not None and cpu is not None
                   else _one_line(result.status))
        progress(f"[{index}/{len(pairs)}] {target.label}, idle {idle}: {summary} "
                 f"({time.monotonic() - started:.1f} s)")
    return results


# ------------------------------------------------------------------ output

def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _one_line(status: str) -> str:
    """A status for a table row: a failure's first line and its last (a
    traceback's exception), the whole of it stays in the JSON."""
    lines = [line.strip() for line in status.splitlines() if line.strip()]
    return " ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else status


def format_table(results: Sequence[ConfigResult], options: BenchOptions) -> str:
    """The results as a fixed-width table, with ratios to asyncio."""
    unit = "conn" if options.workload == "accept" else "req"
    baseline = next((r for r in results if r.target.kind == "peer" and r.target.peer == "asyncio"
                     and r.status == "ok"), None)
    base_cpu = baseline.median("cpu_us_per_unit") if baseline else None
    base_rate = baseline.median("rate") if baseline else None
    headers = ["server", "idle", f"{unit}/s", "±", f"CPU µs/{unit}", "±", "user µs", "sys µs", "CPU vs asyncio",
               "rate vs asyncio", "p50 µs", "p99 µs"]
    if options.workload == "accept":
        headers += ["acc/wake", "empty", "overflows"]
    rows: list[list[str]] = [headers]
    for result in results:
        if result.status != "ok":
            rows.append([result.target.label, str(result.idle), _one_line(result.status)])
            continue
        cpu, rate = result.median("cpu_us_per_unit"), result.median("rate")
        spread_rate, spread_cpu = result.spread("rate"), result.spread("cpu_us_per_unit")
        latency = ("connect_p50_us", "connect_p99_us") if options.workload == "accept" else ("p50_us", "p99_us")
        row = [
            result.target.label, str(result.idle), _fmt(rate),
            "-" if spread_rate is None else f"{spread_rate:.0%}", _fmt(cpu, ".1f"),
            "-" if spread_cpu is None else f"{spread_cpu:.0%}",
            _fmt(result.median("user_us_per_unit"), ".1f"), _fmt(result.median("sys_us_per_unit"), ".1f"),
            f"{base_cpu / cpu:.2f}x" if base_cpu and cpu else "-",
            f"{rate / base_rate:.2f}x" if base_rate and rate else "-",
            _fmt(result.median(latency[0])), _fmt(result.median(latency[1])),
        ]
        if options.workload == "accept":
            row += [_fmt(result.median("accepts_per_wakeup"), ".2f"), _fmt(result.median("empty_wakeups")),
                    _fmt(result.median("listen_overflows"))]
        rows.append(row)
    # Status rows ("n/a (FD_SETSIZE)") span the figure columns; they do not set widths.
    widths = [max(len(row[i]) for row in rows if len(row) == len(headers) or i < 2) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(rows):
        if len(row) < len(headers):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")
            continue
        cells = [f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}" for i, cell in enumerate(row)]
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("-" * len(lines[0]))
    notes = []
    for result in results:
        errors: dict[str, int] = {}
        for run in result.runs:
            for name, count in run.errors.items():
                errors[name] = errors.get(name, 0) + count
        if errors:
            listed = ", ".join(f"{name} {count}" for name, count in sorted(errors.items()))
            notes.append(f"client errors, {result.target.label} idle {result.idle}: {listed}"
                         + (" -- ECHO DATA DIFFERED" if "mismatch" in errors else ""))
    if any(run.loadgen_saturated for r in results for run in r.runs):
        notes.append("note: the load generator used over 90% of its CPU in some runs: there, conn/s measures "
                     "the client; compare CPU µs per connection.")
    engine = "C" if loadgen.c_engine_available() else "Python (no C compiler: rates are the client's limit)"
    notes.append(f"load generator: {engine}.")
    return "\n".join(lines + [""] + table_legend(options.workload) + notes)


def table_legend(workload: str) -> list[str]:
    """What each column of :func:`format_table` means, printed under it."""
    unit = "conn" if workload == "accept" else "req"
    what = "connections accepted and closed" if workload == "accept" else "round trips"
    latency = "connect latency" if workload == "accept" else "round-trip latency"
    legend = [
        f"columns (medians of the runs): {unit}/s: {what} per second, client side;",
        "  ±: half the runs' range, as % of the median",
        f"  CPU µs/{unit}: server CPU time per {unit} (/proc/PID/stat) = user µs (its own code) "
        "+ sys µs (the kernel's);",
        "    sampled at the timer tick, counted in 10 ms units, pooled over the runs: coarse on a short run",
        f"  CPU vs asyncio: asyncio's CPU per {unit} / this row's (> 1: cheaper); "
        "rate vs asyncio: this rate / asyncio's",
        f"  p50 µs, p99 µs: {latency} percentiles",
    ]
    if workload == "accept":
        legend.append("  acc/wake: accepts per wake-up; empty: wake-ups that accepted none; "
                      "overflows: kernel ListenOverflows")
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


def write_json(path: str, results: Sequence[ConfigResult], options: BenchOptions) -> None:
    """Every figure, the options and the machine, as JSON."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "workload": options.workload,
        "options": dataclasses.asdict(options),
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [result.as_dict() for result in results],
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
    """Server CPU per unit (first: the figure that compares servers) and rate
    against idle connections: one line per api × backend × accept path, each
    peer as points at the idle counts it was measured at (the first only), all
    with error bars from the runs' spread (± half their range). The legend sits outside
    the axes, the machine and the date in the title and the footer."""
    import matplotlib.pyplot as plt

    date = date or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    unit = "connection" if options.workload == "accept" else "request"
    figure, (ax_cpu, ax_rate) = plt.subplots(1, 2, figsize=(12, 4.8))
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
        for axis, name in ((ax_cpu, "cpu_us_per_unit"), (ax_rate, "rate")):
            values = [r.median(name) or 0.0 for r in points]
            errors = [(r.spread(name) or 0.0) * value for r, value in zip(points, values, strict=True)]
            axis.errorbar(idle, values, yerr=errors, capsize=3, linewidth=1.2, **style)
    idle_values = sorted({r.idle for r in results}) or [0]
    for axis in (ax_cpu, ax_rate):
        axis.set_xlabel("idle connections (select: none past FD_SETSIZE)")
        if max(idle_values) > 100:
            axis.set_xscale("symlog", linthresh=100)
            axis.set_xlim(left=-10, right=max(idle_values) * 1.5)
        else:
            axis.set_xlim(left=-1, right=max(max(idle_values) * 1.1, 1))
        axis.set_xticks(idle_values)
        axis.set_xticklabels([f"{value:,}" for value in idle_values])
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    ax_cpu.set_ylabel(f"server CPU µs per {unit} (lower is better)")
    ax_rate.set_ylabel(f"{unit}s / s (client side)")
    ax_cpu.set_title(f"server CPU per {unit}")
    ax_rate.set_title("throughput")
    ax_rate.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    cpus = machine.get("cpus")
    figure.suptitle(f"bench {options.workload} — {machine.get('cpu_model') or 'unknown CPU'}, {cpus} CPUs — {date}")
    figure.text(0.01, -0.02,
                f"Linux {machine.get('kernel')}, {machine.get('python')}, reactor {machine.get('reactor')}, "
                f"load generator {machine.get('loadgen')}, concurrency {options.concurrency}; medians of "
                f"{options.repeat} run(s) of {options.duration:g} s, bars: ± half the runs' range",
                fontsize=8, ha="left", va="top")
    figure.tight_layout()
    return figure

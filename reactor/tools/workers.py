"""``serve --workers N``: a supervisor and N worker processes on one port.

Why processes, each with its own listening socket: one Python process
saturates one core. With SO_REUSEPORT every worker binds and listens on the
same address itself, and the kernel gives each its own accept queue and
spreads incoming connections over them by a hash of the 4-tuple. (One
listening socket shared by forked workers makes them all wake for each
connection and leaves most of the work to whichever wins most races.)

The supervisor:
- reserves the port with a bound, never-listening SO_REUSEPORT socket (with
  ``--port 0`` that is how it learns the port every worker must use; a
  bound socket that does not listen receives no connections);
- starts each worker as ``python -m reactor serve ... --reuse-port`` with
  PR_SET_PDEATHSIG, so a worker outlives neither a crashed nor a SIGKILLed
  supervisor;
- prints its own first line once every worker listens;
- forwards SIGINT/SIGTERM (graceful stop) and SIGUSR1 (stats) to the workers,
  and prefixes their stats lines with their pid;
- restarts a worker that dies unexpectedly, at most ``MAX_RESTARTS`` times
  per ``RESTART_WINDOW`` seconds (a worker that cannot start would otherwise
  fork-bomb the machine), then gives up with exit 1;
- after a stop, waits for every worker (SIGKILL after the grace period plus
  a margin), adds up their summaries, and exits 0.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TextIO

from .._net.addresses import format_address
from .._net.listener import bind_tcp
from .._net.reactor import Reactor
from .serve import ServeConfig

__all__ = ["supervise", "MAX_RESTARTS", "RESTART_WINDOW"]

MAX_RESTARTS = 10
RESTART_WINDOW = 60.0
#: how long workers get to print their first line
START_TIMEOUT = 30.0
#: after SIGTERM, workers get the grace period plus this before SIGKILL
STOP_MARGIN = 5.0
_PR_SET_PDEATHSIG = 1
_SUMMED = ("accepted", "aborted", "exhausted", "shed", "rejected", "batches", "empty_wakeups",
           "closed_at_exit", "aborted_at_exit")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Worker:
    def __init__(self, index: int, proc: subprocess.Popen) -> None:
        self.index = index
        self.proc = proc
        self.pending = b""
        self.ready = False
        self.first_line = ""
        self.summary: dict[str, int] | None = None
        self.eof = False


class Supervisor:
    """Runs on its own reactor; see the module docs."""

    def __init__(self, reactor: Reactor, config: ServeConfig, count: int, worker_args: list[str],
                 out: TextIO) -> None:
        self.reactor = reactor
        self.config = config
        self.count = count
        self.worker_args = worker_args
        self.out = out
        self.workers: dict[int, _Worker] = {}
        self.finished: list[_Worker] = []
        self.restarts: collections.deque[float] = collections.deque()
        self.restart_total = 0
        self.stopping = False
        self.exit_code = 0
        self.announced = False
        self.start_deadline = time.monotonic() + START_TIMEOUT

    # ------------------------------------------------------------- workers

    def start_worker(self, index: int) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", *self.worker_args],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        assert proc.stdout is not None  # Popen(stdout=PIPE)
        os.set_blocking(proc.stdout.fileno(), False)
        worker = _Worker(index, proc)
        self.workers[proc.pid] = worker
        self.reactor.add_reader(proc.stdout, self._read_worker, worker)

    def _read_worker(self, worker: _Worker) -> None:
        stdout = worker.proc.stdout
        assert stdout is not None  # Popen(stdout=PIPE)
        try:
            data = os.read(stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            worker.eof = True
            self.reactor.remove_reader(stdout)
            stdout.close()
            self._check_exited()
            return
        worker.pending += data
        *lines, worker.pending = worker.pending.split(b"\n")
        for raw in lines:
            self._worker_line(worker, raw.decode("utf-8", "replace"))

    def _worker_line(self, worker: _Worker, line: str) -> None:
        if line.startswith("listening on "):
            worker.ready = True
            worker.first_line = line
            self._announce_when_ready()
        elif line.startswith("stopped: "):
            worker.summary = _parse_summary(line)
        else:
            print(f"worker {worker.proc.pid}: {line}", file=self.out, flush=True)

    def _announce_when_ready(self) -> None:
        if self.announced or not all(w.ready for w in self.workers.values()):
            return
        self.announced = True
        # The workers' first line, minus their own address format differences.
        first = next(iter(self.workers.values())).first_line
        tail = first.split(" backend=", 1)[1]
        address = format_address((self.config.host, self.config.port))
        print(f"listening on {address} backend={tail}", file=self.out, flush=True)
        pids = " ".join(str(pid) for pid in self.workers)
        print(f"workers: {self.count} pids={pids}", file=self.out, flush=True)

    def _check_exited(self) -> None:
        """Reap workers that exited (SIGCHLD, or their pipe closed)."""
        for pid, worker in list(self.workers.items()):
            if worker.proc.poll() is None or not worker.eof:
                continue
            del self.workers[pid]
            self.finished.append(worker)
            if not self.stopping:
                self._restart(worker)
        if self.stopping and not self.workers:
            self.reactor.stop()

    def _restart(self, worker: _Worker) -> None:
        code = worker.proc.returncode
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= MAX_RESTARTS:
            print(f"python -m reactor serve: error: worker {worker.proc.pid} died ({how}); "
                  f"{MAX_RESTARTS} restarts in {RESTART_WINDOW:.0f} s, giving up", file=sys.stderr)
            self.exit_code = 1
            self.stop()
            return
        self.restarts.append(now)
        self.restart_total += 1
        print(f"python -m reactor serve: worker {worker.proc.pid} died ({how}); restarting",
              file=sys.stderr, flush=True)
        self.start_worker(worker.index)

    # ----------------------------------------------------------- signals

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for worker in self.workers.values():
            _signal(worker.proc, signal.SIGTERM)
        self.reactor.call_later(self.config.grace + STOP_MARGIN, self._kill_stragglers)
        self._check_exited()

    def _kill_stragglers(self) -> None:
        for worker in self.workers.values():
            _signal(worker.proc, signal.SIGKILL)

    def forward(self, signum: int) -> None:
        for worker in self.workers.values():
            _signal(worker.proc, signum)

    def check_started(self) -> None:
        if not self.announced and not self.stopping:
            print(f"python -m reactor serve: error: workers did not start within {START_TIMEOUT:.0f} s",
                  file=sys.stderr)
            self.exit_code = 1
            self.stop()

    def summary(self) -> str:
        totals = dict.fromkeys(_SUMMED, 0)
        max_batch = 0
        for worker in self.finished:
            for key in _SUMMED:
                totals[key] += (worker.summary or {}).get(key, 0)
            max_batch = max(max_batch, (worker.summary or {}).get("max_batch", 0))
        fields = " ".join(f"{key}={value}" for key, value in totals.items())
        return (f"stopped: workers={self.count} {fields} max_batch={max_batch} "
                f"restarts={self.restart_total} pid={os.getpid()}")

    def kill_all(self) -> None:
        """Last resort (an exception in the supervisor): no orphan, ever."""
        for worker in self.workers.values():
            _signal(worker.proc, signal.SIGKILL)
            worker.proc.wait()


def _signal(proc: subprocess.Popen, signum: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass


def _parse_summary(line: str) -> dict[str, int]:
    fields = {}
    for item in line[len("stopped: "):].split():
        key, _, value = item.partition("=")
        if value.lstrip("-").isdigit():
            fields[key] = int(value)
    return fields


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding the port."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers needs SO_REUSEPORT, which this platform does not have")
    return bind_tcp(host, port, reuse_port=True)


def supervise(config: ServeConfig, count: int, worker_args: list[str], out: TextIO = sys.stdout) -> int:
    """Run ``count`` workers until SIGINT/SIGTERM; returns the exit code.

    ``worker_args`` are the serve arguments each worker gets; ``--port`` is
    replaced by the reserved port and ``--reuse-port`` added.
    """
    holder = reserve_port(config.host, config.port)
    try:
        config.port = holder.getsockname()[1]
        args = [*worker_args, "--port", str(config.port), "--reuse-port"]
        with Reactor() as reactor:
            supervisor = Supervisor(reactor, config, count, args, out)
            try:
                reactor.add_signal_handler(signal.SIGINT, supervisor.stop)
                reactor.add_signal_handler(signal.SIGTERM, supervisor.stop)
                reactor.add_signal_handler(signal.SIGUSR1, supervisor.forward, signal.SIGUSR1)
                reactor.add_signal_handler(signal.SIGCHLD, supervisor._check_exited)
                for index in range(count):
                    supervisor.start_worker(index)
                reactor.call_later(START_TIMEOUT, supervisor.check_started)
                reactor.run()
            except BaseException:
                supervisor.kill_all()
                raise
            print(supervisor.summary(), file=out, flush=True)
            return supervisor.exit_code
    finally:
        holder.close()

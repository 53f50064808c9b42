"""``serve --workers N``: a supervisor and N worker processes on one port.

Why processes, each with its own listening socket: one Python process
saturates one core. With SO_REUSEPORT every worker binds and listens on the
same address itself, and the kernel gives each its own accept queue and
spreads incoming connections over them by a hash of the 4-tuple. (One
listening socket shared by forked workers makes them all wake for each
connection and leaves most of the work to whichever wins most races.)

Some facts about SO_REUSEPORT on Linux, and what they mean for a reload:

- Every listening socket of a reuseport group has its *own* accept queue;
  the kernel picks the socket for each new connection (a hash of the
  4-tuple over the group's listening sockets) when the SYN arrives.
- Closing a listening socket resets every connection still in its queue
  (the client, which saw its handshake complete, reads ECONNRESET after
  having sent its request), and the SYN_RECV requests hashed to it die too,
  unless ``net.ipv4.tcp_migrate_req=1`` (Linux 5.14+, off by default; it is
  0 here) moves them to another socket of the group.
- A listening socket that is not watched (paused) keeps its place in the
  group: connections go on being hashed to it. So "stop watching, accept
  until EAGAIN, then close" always leaves a window between the last EAGAIN
  and the close() in which a new connection lands on a queue about to be
  reset; the busier the port, the likelier.
- A socket is closed when its *last* fd is: a socket held by two processes
  keeps its queue, and its place in the group, while either one has it.

So the listening sockets are not the workers' but the supervisor's: it binds
and listens one SO_REUSEPORT socket per worker slot and passes it to the
worker as ``serve --fd N`` (socket activation, the same path systemd's
sockets take). A reload starts a new worker on the *same* socket; both
accept from its queue until the old one has been told to stop; the old one
then closes only its own fd. No listening socket ever closes while the
supervisor lives, so no queued connection is reset and none is refused.
Measured on loopback (2 CPUs, 2 workers, 4 client threads each making one
HTTP request per connection, 3 SIGHUPs in about 4 s; the test in
tests/tools/test_workers.py): 14,214 to 15,535 connections per run, 5 runs,
0 refused, 0 reset, 0 unanswered, and the summary's accepted equal to what
the clients completed. The alternatives, measured the same way with two
SO_REUSEPORT sockets in one process, 3 swaps in 4 s, 3 runs each: a new
socket, then close the old one: 2, 3 and 9 resets (and 2, 0 and 2 client
time-outs of 5 s); a new socket, then accept on the old one until EAGAIN
and close it: 3, 1 and 0 resets (1, 2 and 0 time-outs). Racing the kernel
only makes the window smaller. A worker that dies, even by SIGKILL, leaves
its queue to its replacement the same way: those clients wait instead of
being reset (the connections it had accepted die with it).

The supervisor:
- binds and listens the N sockets (with ``--port 0``, the first one picks
  the port the others join);
- starts each worker as ``python -m reactor serve ... --fd N`` with
  PR_SET_PDEATHSIG, so a worker outlives neither a crashed nor a SIGKILLed
  supervisor;
- prints its own first line once every worker listens;
- forwards SIGINT/SIGTERM (graceful stop) and SIGUSR1 (stats) to the workers,
  and prefixes their stats lines with their pid; a second SIGINT/SIGTERM is
  forwarded too, and the workers then abort what is left at once;
- on SIGHUP starts a new generation of N workers, each on its slot's
  socket; once all of them have printed their first line (they accept), it
  sends SIGTERM to the old ones (graceful: they stop accepting and drain),
  and prints ``reloaded: generation=G pids=...``. A SIGHUP during a reload
  runs once the reload is over. A new worker that dies before it listens,
  or a generation not listening within ``START_TIMEOUT``, ends the reload:
  the new workers are stopped and the old ones go on serving (a broken
  deploy is not an outage);
- restarts a worker of the current generation that dies unexpectedly, at
  most ``MAX_RESTARTS`` times per ``RESTART_WINDOW`` seconds (a worker that
  cannot start would otherwise fork-bomb the machine), then gives up with
  exit 1;
- keeps each worker's counts: every worker prints a ``counts:`` line every
  ``REPORT_INTERVAL`` seconds (not shown), and the summary of a worker that
  died without its own ``stopped:`` line is its last ``counts:`` line, so a
  SIGKILLed worker loses at most its last ``REPORT_INTERVAL`` of counts;
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
from .._net.listener import bind_tcp, effective_backlog
from .._net.reactor import Reactor
from .serve import ServeConfig

__all__ = ["supervise", "MAX_RESTARTS", "RESTART_WINDOW"]

MAX_RESTARTS = 10
RESTART_WINDOW = 60.0
#: how long workers get to print their first line
START_TIMEOUT = 30.0
#: after SIGTERM, workers get the grace period plus this before SIGKILL
STOP_MARGIN = 5.0
#: how often each worker reports its counts to the supervisor: what a
#: SIGKILLed worker can lose at most (one line each, about 10 us of work)
REPORT_INTERVAL = 0.25
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
    def __init__(self, index: int, proc: subprocess.Popen, generation: int) -> None:
        self.index = index
        self.proc = proc
        self.generation = generation
        #: the last ``counts:`` line, for a worker that dies without a summary
        self.counts: dict[str, int] | None = None
        self.pending = b""
        self.ready = False
        self.first_line = ""
        self.summary: dict[str, int] | None = None
        self.eof = False


class Supervisor:
    """Runs on its own reactor; see the module docs."""

    def __init__(self, reactor: Reactor, config: ServeConfig, count: int, worker_args: list[str],
                 out: TextIO, sockets: list[socket.socket]) -> None:
        self.reactor = reactor
        self.config = config
        self.count = count
        self.worker_args = worker_args
        self.out = out
        #: one listening socket per worker slot, held for the supervisor's life
        self.sockets = sockets
        self.generation = 0
        self.reloading = False
        self.reload_pending = False
        self.reloads = 0
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
        fd = self.sockets[index].fileno()
        proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", *self.worker_args, "--fd", str(fd),
             "--report-interval", str(REPORT_INTERVAL)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, pass_fds=(fd,),
        )
        assert proc.stdout is not None  # Popen(stdout=PIPE)
        os.set_blocking(proc.stdout.fileno(), False)
        worker = _Worker(index, proc, self.generation)
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
            self._retire_when_ready()
        elif line.startswith("stopped: "):
            worker.summary = _parse_summary(line)
        elif line.startswith("counts: "):
            worker.counts = _parse_summary(line)
        else:
            print(f"worker {worker.proc.pid}: {line}", file=self.out, flush=True)

    def _current(self) -> list[_Worker]:
        return [w for w in self.workers.values() if w.generation == self.generation]

    def _announce_when_ready(self) -> None:
        if self.announced or not all(w.ready for w in self._current()):
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
            # An old generation's worker is not replaced: the new one serves its socket.
            if self.stopping or worker.generation != self.generation:
                continue
            if self.reloading and not worker.ready:
                self._abort_reload(f"new worker {pid} died ({_how(worker.proc.returncode)}) before it listened")
            else:
                self._restart(worker)
        if self.stopping and not self.workers:
            self.reactor.stop()

    def _restart(self, worker: _Worker) -> None:
        how = _how(worker.proc.returncode)
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

    # ------------------------------------------------------------ reload

    def reload(self) -> None:
        """SIGHUP: a new generation on the same sockets, then the old one stops."""
        if self.stopping:
            return
        if self.reloading or not self.announced:
            self.reload_pending = True  # once the current start or reload is over
            return
        self.reloading = True
        self.generation += 1
        for index in range(self.count):
            self.start_worker(index)
        self.reactor.call_later(START_TIMEOUT, self._reload_deadline, self.generation)

    def _reload_deadline(self, generation: int) -> None:
        if self.reloading and self.generation == generation and not self.stopping:
            self._abort_reload(f"new workers did not listen within {START_TIMEOUT:.0f} s")

    def _abort_reload(self, reason: str) -> None:
        """A new generation that cannot start (a broken deploy) is stopped;
        the old one, still serving, becomes the current one again."""
        failed = self._current()
        self.generation += 1
        for worker in self.workers.values():
            if worker.generation == self.generation - 2:
                worker.generation = self.generation
        for worker in failed:
            _signal(worker.proc, signal.SIGTERM)
        self.reloading = False
        self.reload_pending = False
        print(f"python -m reactor serve: error: reload failed: {reason}; the old workers keep serving",
              file=sys.stderr, flush=True)

    def _retire_when_ready(self) -> None:
        """Once every new worker accepts, the old ones stop gracefully."""
        if self.reloading and all(w.ready for w in self._current()):
            self.reloading = False
            self.reloads += 1
            for worker in self.workers.values():
                if worker.generation < self.generation:
                    _signal(worker.proc, signal.SIGTERM)
            pids = " ".join(str(w.proc.pid) for w in self._current())
            print(f"reloaded: generation={self.generation} pids={pids}", file=self.out, flush=True)
        if self.reload_pending and self.announced and not self.reloading:
            self.reload_pending = False
            self.reactor.call_soon(self.reload)

    # ----------------------------------------------------------- signals

    def on_stop_signal(self) -> None:
        """SIGINT/SIGTERM: a graceful stop; a second one makes the workers
        abort what is left at once."""
        if self.stopping:
            self.forward(signal.SIGTERM)
            return
        self.stop()

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
        # A worker killed before its summary still counted up to its last report.
        reports = [worker.summary or worker.counts or {} for worker in self.finished]
        # The optional counters, as in each worker's own summary: shown when
        # their feature is on, or when a worker counted some.
        config = self.config
        optional = (("proxy_errors", config.proxy_protocol), ("idle_closed", config.idle_timeout is not None),
                    ("tls_failed", config.ssl is not None), ("limited", config.max_connections is not None),
                    ("header_timeouts", config.protocol == "http" and config.header_timeout is not None))
        summed = _SUMMED + tuple(key for key, on in optional if on or any(key in counts for counts in reports))
        totals = dict.fromkeys(summed, 0)
        max_batch = 0
        for counts in reports:
            for key in summed:
                totals[key] += counts.get(key, 0)
            max_batch = max(max_batch, counts.get("max_batch", 0))
        fields = " ".join(f"{key}={value}" for key, value in totals.items())
        return (f"stopped: workers={self.count} {fields} max_batch={max_batch} "
                f"restarts={self.restart_total} reloads={self.reloads} pid={os.getpid()}")

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


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _parse_summary(line: str) -> dict[str, int]:
    fields = {}
    for item in line.partition(": ")[2].split():  # "stopped: ..." or "counts: ..."
        key, _, value = item.partition("=")
        if value.lstrip("-").isdigit():
            fields[key] = int(value)
    return fields


def listen_sockets(host: str, port: int, count: int, backlog: int | None) -> list[socket.socket]:
    """``count`` listening SO_REUSEPORT sockets on one address (``port`` 0:
    the first one picks it), one per worker slot."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers needs SO_REUSEPORT, which this platform does not have")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = bind_tcp(host, port, reuse_port=True)
            sockets.append(sock)
            port = sock.getsockname()[1]
            sock.listen(effective_backlog(backlog))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(config: ServeConfig, count: int, worker_args: list[str], out: TextIO = sys.stdout) -> int:
    """Run ``count`` workers until SIGINT/SIGTERM; returns the exit code.

    ``worker_args`` are the serve arguments each worker gets, without an
    address: each worker is given its slot's listening socket as ``--fd``
    (``--reuse-port`` marks it as a worker).
    """
    sockets = listen_sockets(config.host, config.port, count, config.backlog)
    try:
        config.port = sockets[0].getsockname()[1]
        args = [*worker_args, "--reuse-port"]
        with Reactor() as reactor:
            supervisor = Supervisor(reactor, config, count, args, out, sockets)
            try:
                reactor.add_signal_handler(signal.SIGINT, supervisor.on_stop_signal)
                reactor.add_signal_handler(signal.SIGTERM, supervisor.on_stop_signal)
                reactor.add_signal_handler(signal.SIGHUP, supervisor.reload)
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
        for sock in sockets:
            sock.close()

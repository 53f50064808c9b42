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
  unless ``net.ipv4.tcp_migrate_req=1`` (Linux 5.14+, per network
  namespace, off by default; it is 0 here, and writable as root: the test
  in tests/test_kernel.py sets it in a namespace it makes) moves them to
  another socket of the group.
- A listening socket that is not watched (paused) keeps its place in the
  group: connections go on being hashed to it. So "stop watching, accept
  until EAGAIN, then close" always leaves a window between the last EAGAIN
  and the close() in which a new connection lands on a queue about to be
  reset; the busier the port, the likelier.
- A socket is closed when its *last* fd is: a socket held by two processes
  keeps its queue, and its place in the group, while either one has it.

So the listening sockets are not the workers' but the supervisor's: it binds
and listens one SO_REUSEPORT socket per worker slot, and each worker it
forks inherits its slot's socket. A reload starts a new worker on the *same* socket; both
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

The supervisor's invariant, at every moment: every listening socket of the
port has a live worker accepting on it, or it is closed. A socket that
nobody accepts from is the worst outcome there is: the kernel goes on
hashing a share of new connections to it, and those clients wait for ever
(measured before this rule: 18-20 of 40 requests hung after an old worker
died during a reload that failed).

- Workers are slots: slot i has socket i. The supervisor binds and listens
  the N sockets (with ``--port 0``, the first one picks the port the others
  join), and forks each worker from itself: no exec, so the configuration
  -- arguments, the certificate and key, the code -- is what was loaded
  once, before any worker was forked. A certificate or a module broken on
  disk later cannot stop a restart; it can only make a reload fail, which
  is refused with the reason while the workers serve on.
- Each worker gets PR_SET_PDEATHSIG, so it outlives neither a crashed nor a
  SIGKILLed supervisor, closes every fd it inherited but its slot's socket
  and its stdout pipe (the supervisor's epoll and the other workers' pipes
  are not its business), and runs ``serve`` on the socket.
- A worker of the current generation that dies is replaced on its slot:
  at once the first time (the queue waits for the replacement, nobody is
  reset), then with an exponential backoff (``RESTART_BACKOFF`` doubling to
  ``RESTART_BACKOFF_MAX``) while its replacements die within
  ``STABLE_AFTER`` seconds, each death logged with its cause. While a slot
  waits out its backoff its socket is closed (the invariant: with
  ``net.ipv4.tcp_migrate_req=1`` its queue moves to the other sockets,
  otherwise those clients are reset rather than left hanging), and it is
  bound again when the slot's next worker starts. Healthy workers are never
  stopped because one slot cannot start.
- SIGHUP (a reload) re-reads what is on disk (the certificate and key): if
  that fails the reload is refused, with the reason. Otherwise a new
  generation is forked, one worker per slot on the slot's *same* socket;
  once all of them have printed their first line (they accept), the old
  ones get SIGTERM and drain (serve's graceful stop: what they have queued
  is taken by whoever accepts first, in-progress requests are finished,
  idle ones closed), and ``reloaded: generation=G pids=...`` is printed. A
  new worker that dies, or a generation not listening within
  ``START_TIMEOUT``, ends the reload: the new workers are stopped, the
  slots are refilled from the configuration that was serving (so a slot
  whose old worker died during the reload gets a worker too). A SIGHUP
  during a reload runs once the reload is over.
- SIGINT/SIGTERM: the supervisor closes its own copies of the sockets, so
  that each worker's drain (accept until EAGAIN, then close) is the last
  close of its socket and leaves nothing queued, forwards the signal, and
  waits (SIGKILL after the grace period plus ``STOP_MARGIN``); a second one
  is forwarded too, and the workers then abort what is left at once.
  SIGUSR1 (stats) is forwarded; the workers' lines are printed prefixed
  with their pid.
- Each worker prints a ``counts:`` line every ``REPORT_INTERVAL`` seconds
  (not shown): the summary of a worker that died without its own
  ``stopped:`` line is its last ``counts:`` line, so a SIGKILLed worker
  loses at most its last ``REPORT_INTERVAL`` of counts; the same lines feed
  ``--metrics`` (per slot, with a worker label).
- After a stop it adds up every worker's summary and exits 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from .. import kernel
from .._core.handles import TimerHandle
from .._net.addresses import format_address
from .._net.binding import bind_tcp, effective_backlog
from .._net.listener import Listener
from .._net.reactor import Reactor
from .serve import ServeConfig, serve

__all__ = ["supervise", "Supervisor", "worker_config", "WORKER_OWN", "RESTART_BACKOFF", "RESTART_BACKOFF_MAX",
           "STABLE_AFTER"]

#: the second quick death of a slot's worker waits this long before the next
#: start, doubling with each further one up to RESTART_BACKOFF_MAX (the first
#: restart is at once: the slot's queue waits for it)
RESTART_BACKOFF = 0.1
RESTART_BACKOFF_MAX = 10.0
#: a worker that served this long before it died was healthy: its slot's
#: backoff starts again from nothing
STABLE_AFTER = 5.0
#: how long workers get to print their first line
START_TIMEOUT = 30.0
#: after SIGTERM, workers get the grace period plus this before SIGKILL
STOP_MARGIN = 5.0
#: how often each worker reports its counts to the supervisor: what a
#: SIGKILLed worker can lose at most (one line each, about 10 us of work)
REPORT_INTERVAL = 0.25
#: exit code of a worker whose serve() raised (EX_SOFTWARE)
_WORKER_FAILED = 70
_PR_SET_PDEATHSIG = 1
_SUMMED = ("accepted", "aborted", "exhausted", "shed", "rejected", "batches", "empty_wakeups",
           "closed_at_exit", "aborted_at_exit", "drained_at_exit")


def _die_with_parent() -> None:
    """In the worker: SIGTERM when the supervisor dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Worker:
    def __init__(self, slot: int, pid: int, pipe: int, generation: int) -> None:
        self.slot = slot
        self.pid = pid
        self.pipe = pipe  # the read end of its stdout
        self.generation = generation
        self.started = time.monotonic()
        #: the last ``counts:`` line, for a worker that dies without a summary
        self.counts: dict[str, int] | None = None
        self.pending = b""
        self.ready = False
        self.first_line = ""
        self.summary: dict[str, int] | None = None
        self.eof = False
        self.returncode: int | None = None
        #: told to stop (an old generation, a failed reload, a stop): it no
        #: longer accepts, and its slot needs another worker
        self.retiring = False

    def report(self) -> dict[str, int]:
        """Its counters so far: the summary over the last counts line."""
        return {**(self.counts or {}), **(self.summary or {})}


class _Slot:
    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock: socket.socket | None = sock
        #: deaths in a row of workers that did not live STABLE_AFTER
        self.failures = 0
        self.timer: TimerHandle | None = None
        #: counters of the slot's finished workers, added up (metrics)
        self.finished: dict[str, int] = {}


class Supervisor:
    """Runs on its own reactor; see the module docs. ``reload_config()``
    reads the configuration from disk again (SIGHUP); it raises ValueError
    or OSError naming what is wrong."""

    def __init__(self, reactor: Reactor, config: ServeConfig, count: int, out: TextIO,
                 sockets: list[socket.socket],
                 reload_config: Callable[[ServeConfig], ServeConfig] | None = None) -> None:
        self.reactor = reactor
        #: what workers are forked from: loaded at start, replaced by a reload that succeeded
        self.config = config
        self.count = count
        self.out = out
        self.slots = [_Slot(index, sock) for index, sock in enumerate(sockets)]
        self.reload_config = reload_config
        self.generation = 0
        self.reloading = False
        self.reload_pending = False
        self._next_config: ServeConfig | None = None
        self.reloads = 0
        self.workers: dict[int, _Worker] = {}
        self.finished: list[_Worker] = []
        self.restart_total = 0
        self.stopping = False
        self.exit_code = 0
        self.announced = False
        #: the --metrics listener, if any
        self.metrics: Listener | None = None

    # ------------------------------------------------------------- workers

    def _fork(self, slot: _Slot, config: ServeConfig) -> _Worker:
        """A worker on ``slot``'s socket, forked from here (module docs);
        OSError if the fork or its pipe cannot be made."""
        assert slot.sock is not None
        fd = slot.sock.fileno()
        read_end, write_end = os.pipe()
        # Whatever we buffered must not be written again by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        self.out.flush()
        try:
            pid = os.fork()
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # the worker: never returns into the supervisor's frames
            code = _WORKER_FAILED
            try:
                code = _worker_main(config, fd, write_end, os.getppid())
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                finally:
                    os._exit(code)
        os.close(write_end)
        os.set_blocking(read_end, False)
        worker = _Worker(slot.index, pid, read_end, self.generation)
        self.workers[pid] = worker
        self.reactor.add_reader(read_end, self._read_worker, worker)
        return worker

    def _read_worker(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.pipe, 65536)
        except BlockingIOError:
            return
        if not data:
            worker.eof = True
            self.reactor.remove_reader(worker.pipe)
            os.close(worker.pipe)
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
            print(f"worker {worker.pid}: {line}", file=self.out, flush=True)

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
        if self.metrics is not None:
            from .metrics import metrics_line

            print(metrics_line(self.metrics), file=self.out, flush=True)

    def _check_exited(self) -> None:
        """Reap the workers that exited (SIGCHLD, or their pipe closed); a
        worker is gone once both happened (its last lines are read)."""
        for pid, worker in list(self.workers.items()):
            if worker.returncode is None:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    worker.returncode = os.waitstatus_to_exitcode(status)
            if worker.returncode is not None and worker.eof:
                del self.workers[pid]
                self._gone(worker)
        if self.stopping and not self.workers:
            self.reactor.stop()

    def _gone(self, worker: _Worker) -> None:
        self.finished.append(worker)
        slot = self.slots[worker.slot]
        for key, value in worker.report().items():
            slot.finished[key] = max(slot.finished.get(key, 0), value) if key == "max_batch" else \
                slot.finished.get(key, 0) + value
        if self.stopping or worker.retiring:
            return
        how = _how(worker.returncode)
        if self.reloading and worker.generation == self.generation:
            state = "after" if worker.ready else "before"
            self._abort_reload(f"new worker {worker.pid} died ({how}) {state} it listened")
            return
        lived = time.monotonic() - worker.started
        if worker.ready and lived >= STABLE_AFTER:
            slot.failures = 0
        slot.failures += 1
        delay = self._backoff(slot)
        if self._covered(slot):  # a reload's new worker is on the slot already
            then = "its slot is served by the new generation's worker"
        else:
            when = "at once" if delay == 0 else (
                f"in {delay:g} s ({slot.failures} quick deaths in a row; its socket is closed meanwhile)")
            then = f"restarting {when} from the configuration loaded {self._loaded()}"
        print(f"python -m reactor serve: worker {worker.pid} (slot {slot.index}) died ({how}) after {lived:.1f} s; "
              f"{then}", file=sys.stderr, flush=True)
        self._refill()

    def _loaded(self) -> str:
        return f"by reload {self.reloads}" if self.reloads else "at start"

    def _backoff(self, slot: _Slot) -> float:
        if slot.failures <= 1:
            return 0.0
        return min(RESTART_BACKOFF * 2 ** (slot.failures - 2), RESTART_BACKOFF_MAX)

    def _covered(self, slot: _Slot) -> bool:
        return any(w.slot == slot.index and not w.retiring for w in self.workers.values())

    def _refill(self) -> None:
        """The invariant: a slot with no worker gets one, at once or after
        its backoff with its socket closed meanwhile (module docs)."""
        if self.stopping:
            return
        for slot in self.slots:
            if slot.timer is not None or self._covered(slot):
                continue
            delay = self._backoff(slot)
            if delay == 0:
                self._restart(slot)
            else:
                self._close_slot(slot)
                slot.timer = self.reactor.call_later(delay, self._restart, slot)

    def _restart(self, slot: _Slot) -> None:
        slot.timer = None
        if self.stopping or self._covered(slot):
            return
        try:
            self._open_slot(slot)
            self._fork(slot, self.config)
        except OSError as exc:
            slot.failures += 1
            delay = max(self._backoff(slot), RESTART_BACKOFF)
            print(f"python -m reactor serve: error: cannot start a worker on slot {slot.index}: {exc}; "
                  f"trying again in {delay:g} s (its socket is closed meanwhile)", file=sys.stderr, flush=True)
            self._close_slot(slot)
            slot.timer = self.reactor.call_later(delay, self._restart, slot)
            return
        self.restart_total += 1

    def _open_slot(self, slot: _Slot) -> None:
        """Bind and listen the slot's socket again if its backoff closed it."""
        if slot.sock is None:
            sock = bind_tcp(self.config.host, self.config.port, reuse_port=True)
            try:
                sock.listen(effective_backlog(self.config.backlog))
            except BaseException:
                sock.close()
                raise
            slot.sock = sock

    def _close_slot(self, slot: _Slot) -> None:
        if slot.sock is not None:
            slot.sock.close()
            slot.sock = None

    # ------------------------------------------------------------ reload

    def reload(self) -> None:
        """SIGHUP: read the configuration again, then a new generation on
        the same sockets; the old one stops once it listens."""
        if self.stopping:
            return
        if self.reloading or not self.announced:
            self.reload_pending = True  # once the current start or reload is over
            return
        try:
            config = self.reload_config(self.config) if self.reload_config is not None else self.config
        except (OSError, ValueError) as exc:
            print(f"python -m reactor serve: error: reload refused: {exc}; the workers keep serving with the "
                  f"configuration loaded {self._loaded()}", file=sys.stderr, flush=True)
            return
        self.reloading = True
        self._next_config = config
        self.generation += 1
        for slot in self.slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            try:
                self._open_slot(slot)
                self._fork(slot, config)
            except OSError as exc:
                self._abort_reload(f"cannot start a worker on slot {slot.index}: {exc}")
                return
        self.reactor.call_later(START_TIMEOUT, self._reload_deadline, self.generation)

    def _reload_deadline(self, generation: int) -> None:
        if self.reloading and self.generation == generation and not self.stopping:
            self._abort_reload(f"new workers did not listen within {START_TIMEOUT:.0f} s")

    def _abort_reload(self, reason: str) -> None:
        """A new generation that cannot start (a broken deploy) is stopped;
        every slot left without a worker (its old one died meanwhile) is
        refilled from the configuration that was serving."""
        self.reloading = False
        self.reload_pending = False
        self._next_config = None
        for worker in self.workers.values():
            if worker.generation == self.generation and not worker.retiring:
                worker.retiring = True
                _signal(worker.pid, signal.SIGTERM)
        orphans = [slot.index for slot in self.slots if not self._covered(slot)]
        refill = f"; slot(s) {', '.join(map(str, orphans))} lost their worker meanwhile and get a new one" \
            if orphans else ""
        print(f"python -m reactor serve: error: reload failed: {reason}; the workers of the configuration "
              f"loaded {self._loaded()} keep serving{refill}", file=sys.stderr, flush=True)
        self._refill()

    def _retire_when_ready(self) -> None:
        """Once every new worker accepts, the old ones stop gracefully."""
        current = [w for w in self.workers.values() if w.generation == self.generation and not w.retiring]
        if self.reloading and len(current) == self.count and all(w.ready for w in current):
            self.reloading = False
            self.reloads += 1
            assert self._next_config is not None
            self.config, self._next_config = self._next_config, None
            for worker in self.workers.values():
                if worker.generation < self.generation and not worker.retiring:
                    worker.retiring = True
                    _signal(worker.pid, signal.SIGTERM)
            for slot in self.slots:
                slot.failures = 0
            pids = " ".join(str(w.pid) for w in current)
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
        for slot in self.slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            # Each worker's drain is then the last close of its socket (module docs).
            self._close_slot(slot)
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        self.reactor.call_later(self.config.grace + STOP_MARGIN, self._kill_stragglers)
        self._check_exited()

    def _kill_stragglers(self) -> None:
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGKILL)

    def forward(self, signum: int) -> None:
        for worker in self.workers.values():
            _signal(worker.pid, signum)

    def check_started(self) -> None:
        if not self.announced and not self.stopping:
            print(f"python -m reactor serve: error: workers did not start within {START_TIMEOUT:.0f} s",
                  file=sys.stderr)
            self.exit_code = 1
            self.stop()

    # ----------------------------------------------------------- figures

    def slot_counts(self) -> list[dict[str, int]]:
        """Each slot's counters: its finished workers' and its live ones'
        (``active``: the live ones' only), for the metrics."""
        totals = [dict(slot.finished, active=0) for slot in self.slots]
        for worker in self.workers.values():
            total = totals[worker.slot]
            for key, value in worker.report().items():
                if key == "max_batch":
                    total[key] = max(total.get(key, 0), value)
                else:
                    total[key] = total.get(key, 0) + value
        return totals

    def listen_queues(self) -> list[tuple[int, int] | None]:
        """Each slot socket's accept queue (current, maximum), None while closed."""
        return [kernel.listen_queue(slot.sock) if slot.sock is not None else None for slot in self.slots]

    def summary(self) -> str:
        # A worker killed before its summary still counted up to its last report.
        reports = [worker.report() for worker in self.finished]
        # The optional counters, as in each worker's own summary: shown when
        # their feature is on, or when a worker counted some.
        config = self.config
        optional = (("proxy_errors", config.proxy_protocol), ("idle_closed", config.idle_timeout is not None),
                    ("tls_failed", config.ssl is not None), ("limited", config.max_connections is not None),
                    ("header_timeouts", config.protocol == "http" and config.header_timeout is not None),
                    ("proxy_refused", config.proxy_protocol))
        summed = _SUMMED + tuple(key for key, on in optional if on or any(reports and key in c for c in reports))
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
            _signal(worker.pid, signal.SIGKILL)
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass


def _worker_main(config: ServeConfig, fd: int, stdout: int, supervisor: int) -> int:
    """The forked worker: its own signals and fds, then ``serve`` on its
    slot's socket. Runs in the child only."""
    _die_with_parent()
    if os.getppid() != supervisor:
        return 1  # the supervisor died before PR_SET_PDEATHSIG was set
    # The supervisor's handlers wrote to its wake-up fd, closed below; the
    # worker's own reactor installs its own for INT, TERM and USR1.
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)  # a stop before serve() listens: the worker just ends
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's: a worker is replaced, not reloaded
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a stats request forwarded before serve() handles it
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(stdout, 1)
    # Everything else inherited goes: the supervisor's epoll and wake-up
    # fds, the other slots' sockets and the other workers' pipes (an
    # inherited copy would keep a socket, or a pipe's EOF, alive).
    _close_fds_except({0, 1, 2, fd})
    return serve(worker_config(config, socket.socket(fileno=fd)), out=sys.stdout)


#: What a worker serves differently from the configuration it is forked
#: with (field -> value); everything else is the supervisor's, as loaded.
WORKER_OWN: dict[str, Any] = {
    "reuse_port": True,                   # its slot's socket is in an SO_REUSEPORT group
    "report_interval": REPORT_INTERVAL,   # counts lines for the supervisor's summary and metrics
    "metrics": None,                      # the supervisor serves them, summed, with a worker label
}


def worker_config(config: ServeConfig, sock: socket.socket) -> ServeConfig:
    """The configuration a worker serves: the supervisor's own (the worker
    is forked from it: every ``serve`` flag arrives as it was loaded, TLS
    context included), on its slot's listening ``sock``, with ``WORKER_OWN``."""
    return dataclasses.replace(config, sock=sock, **WORKER_OWN)


def _close_fds_except(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _how(code: int | None) -> str:
    if code is None:
        return "unknown status"
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


def supervise(config: ServeConfig, count: int, out: TextIO = sys.stdout,
              reload_config: Callable[[ServeConfig], ServeConfig] | None = None) -> int:
    """Run ``count`` workers until SIGINT/SIGTERM; returns the exit code.
    ``config`` is loaded (the TLS context included) and every worker is
    forked from it; ``reload_config(config)`` reads it again on SIGHUP."""
    from .stock import stock_protocol

    # Imported before any fork: a module broken on disk later cannot break a restart.
    stock_protocol(config.protocol)
    if config.trace or config.trace_json:
        from . import trace  # noqa: F401
    sockets = listen_sockets(config.host, config.port, count, config.backlog)
    try:
        config.port = sockets[0].getsockname()[1]
        with Reactor() as reactor:
            supervisor = Supervisor(reactor, config, count, out, sockets, reload_config)
            metrics = None
            try:
                reactor.add_signal_handler(signal.SIGINT, supervisor.on_stop_signal)
                reactor.add_signal_handler(signal.SIGTERM, supervisor.on_stop_signal)
                reactor.add_signal_handler(signal.SIGHUP, supervisor.reload)
                reactor.add_signal_handler(signal.SIGUSR1, supervisor.forward, signal.SIGUSR1)
                reactor.add_signal_handler(signal.SIGCHLD, supervisor._check_exited)
                if config.metrics is not None:
                    from .metrics import SupervisorMetrics, serve_metrics

                    metrics = supervisor.metrics = serve_metrics(reactor, config.metrics,
                                                                 SupervisorMetrics(supervisor))
                for slot in supervisor.slots:
                    supervisor._fork(slot, config)
                reactor.call_later(START_TIMEOUT, supervisor.check_started)
                reactor.run()
            except BaseException:
                supervisor.kill_all()
                raise
            finally:
                if metrics is not None:
                    metrics.close()
                for slot in supervisor.slots:
                    supervisor._close_slot(slot)  # one a backoff bound again, too
            print(supervisor.summary(), file=out, flush=True)
            return supervisor.exit_code
    finally:
        for sock in sockets:
            sock.close()

"""Throwaway PostgreSQL and Redis servers on loopback, for ``bench apps``.

Each is the distribution's own binary (Debian: ``apt-get install postgresql
redis-server``), started in a fresh temporary directory on 127.0.0.1 and a
free port, with no persistence (a benchmark's data is worth nothing), pinned
to one CPU, and stopped by its PID. Where a binary is absent, :func:`find`
says why, and the bench skips the row with that reason.

- PostgreSQL refuses to run as root. As root, ``initdb`` and ``postgres``
  run as the ``postgres`` user Debian's package makes (Popen's ``user=``:
  the child is then postgres itself, so the PID we stop is the server's),
  in a directory handed to that user; with no such user the row is skipped.
  Debian keeps the binaries in ``/usr/lib/postgresql/VERSION/bin``, off the
  PATH: both are searched. ``initdb -A trust`` with role ``bench``: only
  loopback can connect, for the life of the run. ``fsync=off``: the bench
  measures the client, not the disk. The server is ready when its log says
  ``ready to accept connections``.
- Redis: ``--save '' --appendonly no`` (no persistence), ready when its log
  says ``Ready to accept connections``.

The free port is found by binding port 0 and closing it: another process
could take it in between, which fails the start with a clear message rather
than measuring the wrong server.
"""

from __future__ import annotations

import glob
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Service", "find", "start", "SERVICES"]

#: service -> the binaries it needs
SERVICES = {"postgres": ("initdb", "postgres"), "redis": ("redis-server",)}
#: where Debian's PostgreSQL packages put their binaries (off the PATH)
POSTGRES_LIBDIRS = "/usr/lib/postgresql/*/bin"
#: the PostgreSQL role the bench connects as
ROLE = "bench"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: what each server's log says once it accepts connections
READY = {"postgres": "ready to accept connections", "redis": "Ready to accept connections"}


def _which(name: str, path: str | None) -> str | None:
    """``name`` on ``path`` (None: the PATH); for PostgreSQL's binaries also
    Debian's versioned directory (newest first) unless ``path`` is given."""
    found = shutil.which(name, path=path)
    if found or path is not None or name not in SERVICES["postgres"]:
        return found
    for directory in sorted(glob.glob(POSTGRES_LIBDIRS), reverse=True):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find(service: str, path: str | None = None) -> tuple[dict[str, str], str | None]:
    """The binaries of ``service`` by name, and why it cannot run (None: it can)."""
    binaries: dict[str, str] = {}
    for name in SERVICES[service]:
        found = _which(name, path)
        if found is None:
            where = "on the PATH or in " + POSTGRES_LIBDIRS if service == "postgres" and path is None else \
                f"on {path or 'the PATH'}"
            package = "postgresql" if service == "postgres" else "redis-server"
            return binaries, f"no {name} {where} (Debian: apt-get install {package})"
        binaries[name] = found
    if service == "postgres" and os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return binaries, "PostgreSQL will not run as root and there is no 'postgres' user to run it as"
    return binaries, None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A started server: its port, its process and its directory."""

    name: str
    port: int
    proc: subprocess.Popen[str]
    directory: str
    log_tail: list[str] = field(default_factory=list)
    #: the thread that reads the server's log until it ends
    reader: threading.Thread | None = None

    def stop(self) -> None:
        """Stop the server (PostgreSQL: SIGINT, its fast shutdown) and remove its directory."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT if self.name == "postgres" else signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT)
            # the log reaches its end once the server has exited; the reader
            # ends there, and only then is the pipe closed under it
            if self.reader is not None:
                self.reader.join(STOP_TIMEOUT)
            if self.proc.stdout is not None and (self.reader is None or not self.reader.is_alive()):
                self.proc.stdout.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


#: (uid, gid) to run a server as, or None: as ourselves
Owner = tuple[int, int] | None


def _as_postgres() -> Owner:
    """Who runs PostgreSQL: the ``postgres`` user when we are root, else we do."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def _launch(command: Sequence[str], cpu: int | None, owner: Owner) -> subprocess.Popen[str]:
    def pin() -> None:
        # in the child before exec, so that every process the server forks
        # later (PostgreSQL's backends) inherits the CPU
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=pin, user=owner and owner[0],
                            group=owner and owner[1], extra_groups=[] if owner else None)


def _wait_ready(service: Service, timeout: float) -> None:
    """Read the server's log until it says it is ready (or exits, or ``timeout``)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert service.proc.stdout is not None  # Popen(stdout=PIPE)
        for line in service.proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    service.reader = threading.Thread(target=pump, daemon=True)
    service.reader.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise RuntimeError(f"{service.name} was not ready within {timeout:.0f} s: "
                               + " | ".join(service.log_tail[-3:])) from None
        if line is None:
            raise RuntimeError(f"{service.name} exited: " + " | ".join(service.log_tail[-3:]))
        service.log_tail = (service.log_tail + [line])[-20:]
        if READY[service.name] in line:
            return


def _initdb(initdb: str, data: str, owner: Owner) -> None:
    done = subprocess.run([initdb, "-D", data, "-U", ROLE, "-A", "trust", "--no-sync", "-E", "UTF8"],
                          capture_output=True, text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL,
                          user=owner and owner[0], group=owner and owner[1], extra_groups=[] if owner else None)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()[-300:]}")


def start(name: str, binaries: dict[str, str], cpu: int | None) -> Service:
    """Start ``name`` (``postgres`` or ``redis``) on 127.0.0.1 and a free port;
    return once it accepts connections. The caller stops it."""
    directory = tempfile.mkdtemp(prefix=f"reactor-bench-{name}-")
    port = free_port()
    try:
        if name == "postgres":
            owner = _as_postgres()
            if owner:
                os.chown(directory, *owner)
            data = os.path.join(directory, "data")
            _initdb(binaries["initdb"], data, owner)
            command = [binaries["postgres"], "-D", data, "-k", directory, "-p", str(port),
                       "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"]
            proc = _launch(command, cpu, owner)
        else:
            command = [binaries["redis-server"], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", directory]
            proc = _launch(command, cpu, None)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    service = Service(name, port, proc, directory)
    try:
        _wait_ready(service, START_TIMEOUT)
    except BaseException:
        service.stop()
        raise
    return service

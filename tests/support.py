"""Helpers shared by several suites (a helper used by one suite lives in that
suite): the backends to run on, an fd counter, bounded ways to run a loop, a
recorder for the exception handler, a recording protocol and its factory,
blocking loopback clients that are always closed, and a background reader."""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import reactor
from reactor._net.sockopts import LINGER_RST as LINGER_RST  # re-exported for the tests

LOOP_BACKENDS = [name for name in ("select", "poll", "epoll") if name in reactor.available_backends()]



# ------------------------------------------------------------- running a loop

def open_fds() -> set[int]:
    """The fds this process has open right now."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the listdir's own fd, already closed
        fds.add(fd)
    return fds


def run_until(loop: reactor.Reactor, predicate: Callable[[], bool], timeout: float = 5.0,
              poll: float = 0.005) -> float:
    """Run ``loop`` until ``predicate()`` holds (checked every ``poll``
    seconds and whenever the loop stops); fail after ``timeout``. Returns the
    time it took."""
    start = time.monotonic()
    deadline = start + timeout

    def check() -> None:
        if predicate() or time.monotonic() >= deadline:
            loop.stop()
        else:
            loop.call_later(poll, check)

    loop.call_soon(check)
    while True:
        loop.run()
        if predicate():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        loop.call_soon(check)


class VirtualClock:
    """A clock for ``Reactor(clock=...)`` that moves only when told: backoff
    and deadline tests run in virtual time instead of sleeping.

    ``advance(seconds)`` moves it; ``step(loop)`` then runs one loop
    iteration without waiting (``stop()`` before ``run()`` makes the wait
    zero), so whatever became due at the new time runs now."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock does not go back"
        self.now += seconds

    def step(self, loop: Any) -> None:
        loop.stop()
        loop.run()


class ErrorLog:
    """An exception handler that collects what reaches it (the ``errors``
    fixture: a test that expects errors takes them, any others fail it)."""

    def __init__(self) -> None:
        self.contexts: list[dict] = []

    def __call__(self, loop: Any, context: dict) -> None:
        self.contexts.append(context)

    def take(self) -> list[dict]:
        taken, self.contexts = self.contexts, []
        return taken


# ------------------------------------------------------------------ protocols

class Recorder(reactor.Protocol):
    """Records every event; ``eof_result`` is what ``eof_received`` returns."""

    eof_result: Any = None

    def __init__(self) -> None:
        self.transport: Any = None
        self.made = 0
        self.data = bytearray()
        self.eofs = 0
        self.lost: list[Any] = []
        self.paused = 0
        self.resumed = 0
        self.events: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.made += 1
        self.events.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data

    def eof_received(self) -> Any:
        self.eofs += 1
        self.events.append("eof")
        return self.eof_result

    def connection_lost(self, exc: Any) -> None:
        self.events.append("lost")
        self.lost.append(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")
        self.paused += 1

    def resume_writing(self) -> None:
        self.events.append("resume")
        self.resumed += 1


def registered(loop: reactor.Reactor, fd: int) -> bool:
    """True if ``loop`` watches ``fd`` (for reading or writing)."""
    try:
        loop._selector.get_key(fd)
    except KeyError:
        return False
    return True


def record_moves(monkeypatch: pytest.MonkeyPatch, machine: type) -> list[tuple[str, str, str]]:
    """Every move any instance of ``machine`` takes through its ``_move``
    (its transition table), as (from, event, to)."""
    moves: list[tuple[str, str, str]] = []
    take = machine._move  # type: ignore[attr-defined]

    def recording(self: Any, event: Any) -> Any:
        before = self._state
        after = take(self, event)
        moves.append((str(before), str(event), str(self._state)))
        return after

    monkeypatch.setattr(machine, "_move", recording)
    return moves


class EchoRecorder(Recorder):
    """A Recorder that writes back what it receives."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data)


class Factory:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self, cls: Callable[[], Any] = Recorder) -> None:
        self.cls = cls
        self.protocols: list[Any] = []

    def __call__(self) -> Any:
        protocol = self.cls()
        self.protocols.append(protocol)
        return protocol

    @property
    def made(self) -> int:
        return sum(1 for p in self.protocols if getattr(p, "made", 1))

    @property
    def lost(self) -> int:
        return sum(len(p.lost) for p in self.protocols)


# -------------------------------------------------------------------- clients

class Clients:
    """Blocking loopback client sockets (each with a timeout), all closed at
    the end of the test so none leaks a ResourceWarning."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.socks: list[socket.socket] = []

    def connect(self, address: Any, family: int | None = None) -> socket.socket:
        if family is None:
            family = socket.AF_UNIX if isinstance(address, str) else (
                socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.socks.append(sock)
        sock.settimeout(self.timeout)
        sock.connect(address)
        return sock

    def adopt(self, sock: socket.socket) -> socket.socket:
        self.socks.append(sock)
        return sock

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes (the socket's timeout bounds each wait)."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)




def readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


class BackgroundReader:
    """Reads a socket to EOF (or an error) in a thread; ``done`` when over."""

    def __init__(self, sock: socket.socket, delay: float = 0.0, chunk: int = 1 << 16,
                 on_chunk: Callable[[bytes], None] | None = None) -> None:
        self.sock = sock
        self.delay = delay
        self.chunk = chunk
        self.on_chunk = on_chunk
        self.data = bytearray()
        self.count = 0
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.delay:
                time.sleep(self.delay)
            while True:
                data = self.sock.recv(self.chunk)
                if not data:
                    break
                self.count += len(data)
                if self.on_chunk is not None:
                    self.on_chunk(data)
                else:
                    self.data += data
        except BaseException as exc:  # reported to the test
            self.error = exc
        finally:
            self.done = True

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "reader thread did not finish"


def run_for(loop: reactor.Reactor, seconds: float) -> None:
    """Run the loop for ``seconds`` (for checks that something does NOT
    happen, where there is no event to wait for)."""
    loop.call_later(seconds, loop.stop)
    loop.run()




# ------------------------------------------------------ fake listening socket



# ------------------------------------------------------------- child processes


# ------------------------------------------------ a `serve` child process

FIRST_LINE = re.compile(
    r"^listening on (?P<host>\S+):(?P<port>\d+) backend=(?P<backend>\w+) native=(?P<native>on|off)$"
)


class Server:
    """A ``serve`` child process; stopped and reaped by ``stop()`` or the fixture."""

    def __init__(self, *args: str, argv: list[str] | None = None, pass_fds: tuple[int, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        """``python -m reactor serve ARGS``, or ``argv`` as given (a wrapper
        that sets up socket activation first), with ``pass_fds`` and ``env``."""
        self.proc = subprocess.Popen(
            argv if argv is not None else [sys.executable, "-m", "reactor", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=pass_fds, env=env,
        )
        self.stopping = False
        # A thread moves stdout lines to a queue, so every read has a deadline.
        self.lines: queue.Queue[str] = queue.Queue()
        self.rest: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.first_line = self.readline(timeout=20)
        self.match = FIRST_LINE.match(self.first_line)
        if self.match:
            self.host = self.match["host"].strip("[]")
            self.port = int(self.match["port"])

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def readline(self, timeout: float = 10) -> str:
        """The next stdout line; fails the test after ``timeout`` or at EOF."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"serve printed no line within {timeout} s")
        assert line is not None, f"serve exited early; stderr: {self._stderr()}"
        return line

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def send_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> tuple[int, str, str]:
        if self.proc.poll() is None and not self.stopping:
            self.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"serve did not exit within {timeout} s after signal {signum}")
        self._reader.join(10)
        out = []
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                out.append(line + "\n")
        return self.proc.returncode, "".join(out), self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


# ----------------------------------------------- freed without the cyclic GC

class CyclicGcOff:
    """``with CyclicGcOff():`` -- the cyclic garbage collector is off inside
    (collected once first, so older garbage does not count), and back on
    afterwards whatever happens. An object that dies inside only through
    reference counting was freed "at once"; one kept by a reference cycle
    stays until the collector runs, which here it never does."""

    def __enter__(self) -> CyclicGcOff:
        import gc

        gc.collect()
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        import gc

        if self._was_enabled:
            gc.enable()


def interrupt_twice_while_stalled(server: Server, client: socket.socket) -> tuple[int, str, str, float]:
    """Fill both directions of ``client``'s echo connection (a small receive
    buffer, then writes until the kernel takes no more) so the server cannot
    flush; SIGINT starts the graceful stop, which the grace period holds;
    a second SIGINT must end it at once. Returns ``(code, stdout, stderr,
    seconds from the second SIGINT to the exit)``."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(b"ping")
    assert client.recv(4) == b"ping"
    client.setblocking(False)
    payload = b"x" * 65536
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # fill both directions: the echo cannot flush
        try:
            client.send(payload)
        except BlockingIOError:
            if not select.select([], [client], [], 0.5)[1]:
                break
    server.send_signal(signal.SIGINT)
    # Nothing to wait for here: the check is that the process does NOT exit
    # within half a second of the first SIGINT (the grace period holds it).
    time.sleep(0.5)
    assert server.proc.poll() is None, "exited before the grace period was over"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    code, out, err = server.stop(timeout=20)
    return code, out, err, time.monotonic() - started


# ------------------------------------------------- half-sent HTTP requests

class HalfRequests:
    """``count`` HTTP clients of one server, each with half a request sent:
    half of them half a head, the other half a whole head and half its
    body. ``finish()`` sends the rest; ``answers()`` reads each to EOF."""

    HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    CLOSE_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n"
    BODY = b"0123456789"

    def __init__(self, port: int, count: int, keep_alive: bool = True) -> None:
        head = self.HEAD if keep_alive else self.CLOSE_HEAD
        self.socks: list[socket.socket] = []
        self.parts: list[tuple[bytes, bytes]] = []
        try:
            for index in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=20)
                self.socks.append(sock)
                whole = head + self.BODY
                cut = 20 if index % 2 == 0 else len(head) + 5  # in the head / in the body
                sock.sendall(whole[:cut])
                self.parts.append((whole[:cut], whole[cut:]))
        except BaseException:
            self.close()
            raise

    def finish(self) -> None:
        for sock, (_, rest) in zip(self.socks, self.parts, strict=True):
            sock.sendall(rest)

    def answers(self) -> list[bytes]:
        """Each connection's whole answer (to EOF), or the error's name."""
        out = []
        for sock in self.socks:
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError as exc:
                data += f"<{type(exc).__name__}>".encode()
            out.append(data)
        return out

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

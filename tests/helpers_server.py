"""Helpers shared by the server-side suites (listener, transport, protocols,
http, accept policy): a recording protocol, blocking loopback clients that
are always closed, a background reader, a scripted fake listening socket, and
a child-process runner whose every wait is bounded."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

import reactor

#: SO_LINGER {on, 0}: close() then sends RST instead of FIN
LINGER_RST = struct.pack("ii", 1, 0)


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


def recv_until_eof(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise AssertionError("more data than expected")


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


def move_fd_high(sock: socket.socket, floor: int) -> socket.socket:
    """A socket equal to ``sock`` on the lowest free fd >= ``floor`` (the
    original is closed), so that its fd does not take a low number."""
    import fcntl

    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor)
    family, type_ = sock.family, sock.type
    timeout = sock.gettimeout()
    sock.close()
    moved = socket.socket(family, type_, 0, fileno=fd)
    moved.settimeout(timeout)
    return moved


# ------------------------------------------------------ fake listening socket

class FakeListenSocket:
    """A listening socket whose ``_accept()`` replays a script, trio-style.

    ``fileno()`` is a real fd (one end of a socketpair) that is readable
    exactly while the script is not empty -- like a listening socket with a
    non-empty queue, level-triggered. Scripted connections are real
    socketpair ends (the other end is in ``peers``); scripted errors are
    ``OSError(errno.X)``. An empty script raises EAGAIN.
    """

    family = socket.AF_UNIX
    type = socket.SOCK_STREAM

    def __init__(self, on_call: Callable[[Any], None] | None = None) -> None:
        self._ready_r, self._ready_w = socket.socketpair()
        self._ready_r.setblocking(False)
        self._signalled = False
        self.script: deque[Any] = deque()
        self.calls: list[tuple[float, Any]] = []
        self.peers: list[socket.socket] = []
        self.on_call = on_call
        self.closed = False
        self.listened: int | None = None

    # the socket API the listener uses
    def fileno(self) -> int:
        return -1 if self.closed else self._ready_r.fileno()

    def getsockname(self) -> str:
        return "fake"

    def listen(self, backlog: int) -> None:
        self.listened = backlog

    def setblocking(self, flag: bool) -> None:
        pass

    def _accept(self) -> tuple[int, Any]:
        if self.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        item: Any = BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if self.script:
            item = self.script.popleft()
        self._sync()
        self.calls.append((time.monotonic(), item if isinstance(item, BaseException) else "conn"))
        if self.on_call is not None:
            self.on_call(item)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready_r.close()
        self._ready_w.close()
        for item in self.script:
            if not isinstance(item, BaseException):
                os.close(item[0])
        self.script.clear()

    # scripting
    def push_connection(self, address: Any = "peer") -> socket.socket:
        ours, peer = socket.socketpair()
        self.peers.append(peer)
        peer.settimeout(5.0)
        self.script.append((ours.detach(), address))
        self._sync()
        return peer

    def push_error(self, code: int) -> None:
        exc: OSError = (InterruptedError if code == errno.EINTR else OSError)(code, os.strerror(code))
        self.script.append(exc)
        self._sync()

    def outcomes(self) -> list[Any]:
        return [item if item == "conn" else errno.errorcode[item.errno] for _, item in self.calls]

    def _sync(self) -> None:
        if self.closed:
            return
        if self.script and not self._signalled:
            self._ready_w.send(b"x")
            self._signalled = True
        elif not self.script and self._signalled:
            self._ready_r.recv(1)
            self._signalled = False

    def close_all(self) -> None:
        self.close()
        for peer in self.peers:
            peer.close()


# ------------------------------------------------------------- child processes

class Child:
    """A Python child process speaking JSON lines on stdout, commands on
    stdin; every read is bounded; killed at the end if still running."""

    def __init__(self, script: str, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
        )
        self._buffer = b""

    def read_json(self, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"child sent no line within {timeout} s; stderr: {self.stderr_now()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited early: {self.stderr_now()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, text: str, timeout: float = 10.0) -> Any:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read_json(timeout)

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-3000:]

    def finish(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("child did not exit in time") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class LoopThread:
    """Runs a reactor in a background thread, so the test's own thread can be
    a blocking client (or wait for curl). Only the loop's thread touches the
    reactor while it runs; ``call`` runs a function there and returns its
    result."""

    def __init__(self, loop: reactor.Reactor) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(timeout), "the loop did not run the call"
        return box[0]

    def __exit__(self, *exc_info: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "loop thread did not stop"
